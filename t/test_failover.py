"""Failover (issue 6): servers killed (SIGKILL), stopped (SIGSTOP) and the
meta server killed, under load through every data server (t/loadgen.py);
afterwards every key is read through every live server and compared with
the client's record: no acknowledged write may be lost.

- SIGKILL a primary: status shows it failed at a higher epoch, its keys are
  written again, nothing acknowledged is lost;
- SIGKILL a server that holds secondaries only (joined after the
  bootstrap): no primary moves, its copies are made again on the
  survivors, nothing acknowledged is lost;
- SIGKILL the meta server: requests keep succeeding, and after its restart
  (same --state-dir) the epoch is the same: no failover happened;
- SIGKILL a server, wait until every partition has its copies again, SIGKILL
  a second one: nothing lost (needs recovery);
- SIGSTOP a primary until it is declared failed, write new values through
  the others, SIGCONT it: it never answers a read of its lost keys with the
  old value, and never acknowledges a write to them as their primary;
- SIGSTOP a server of an idle cluster until it is declared failed, SIGCONT
  it: it joins again under its id and recovers its copies (the primaries
  open new rings to it though their old writers saw no error);
- SIGKILL a server and, while its copies are being recovered, the server
  receiving the most new copies or one of the sources: nothing lost in the
  partitions that kept a live copy from before the failures;

The failure detector's own accuracy and speed under stress are in
t/test_detector.py.

Each wait is bounded (FTM_FAILOVER_TIMEOUT for a failure to show in status,
FTM_RECOVERY_TIMEOUT for recovery) and says what it waited for; a failure
message carries the load's report (errors by text and server, the longest
stall) and the cluster's logs. The status wording these tests rely on
(state "failed", the recovery words) is in t/cluster.py.
"""

import base64
import os
import re
import shlex
import signal
import subprocess
import time

import pytest

from cluster import (ClusterError, failed_nodes, fully_replicated,
                     recovery_in_progress, up_nodes)
from conftest import IS_FTM, SERVER_BIN
from failover_common import (FAILOVER_TIMEOUT, MEMORY, RECOVERY_TIMEOUT,
                             kill_and_wait_failed, print_stall)
from failover_common import make_cluster  # noqa: F401 (a fixture)
from loadgen import Client, LoadGen, STORED, store_through
from mc import Conn

pytestmark = pytest.mark.skipif(
    not IS_FTM, reason="failover tests need ftmemcached (server under test "
                       "is not ftmemcached)")

# Data loaded before the kill-during-recovery test, so recovery takes a while.
RECOVERY_MB = float(os.environ.get("FTM_RECOVERY_MB", "12"))

def test_sigkill_primary_under_load_loses_nothing(make_cluster, loads):
    c = make_cluster(n=3)
    victim = 2
    lg = loads(LoadGen(c, keys=2000, threads=6))
    owned = c.keys_of(lg.keys, victim)
    assert owned, "node %d is primary of none of %d keys" % (
        victim, len(lg.keys))
    time.sleep(1.0)
    t_kill, _ = kill_and_wait_failed(c, lg, victim)
    lg.retarget()           # clients of the dead server go elsewhere
    time.sleep(1.0)
    lg.stop()
    print_stall(lg)
    lg.verify(c).check()
    again = lg.first_ok_after(owned)
    assert again, "no write to any of the %d keys node %d was primary of " \
        "was acknowledged after its failover\n%s\n%s" % (
            len(owned), victim, lg.report(), c.logs())
    first = min(done for _, done in again.values())
    print("first acknowledged write to a key of node %d: %.0f ms after "
          "SIGKILL; %d of %d of its keys written since" % (
              victim, (first - t_kill) * 1000, len(again), len(owned)))


def test_sigkill_secondary_only_server_loses_nothing(make_cluster, loads):
    """A server that joined after the bootstrap holds secondaries only.
    SIGKILL it under load: no primary moves (the survivors keep exactly the
    primaries they had), its copies are made again on the survivors, and
    every acknowledged write is readable."""
    c = make_cluster(n=3)
    fourth = c.add_server(MEMORY)
    st0 = c.wait_status(
        lambda st: fourth.node_id in st["rows"] and
        st["rows"][fourth.node_id]["secondaries"] > 0 and
        len(up_nodes(st)) == 4 and fully_replicated(st), RECOVERY_TIMEOUT,
        "node %d up with secondaries, every copy complete" % fourth.node_id)
    assert st0["rows"][fourth.node_id]["primaries"] == 0, st0["out"]
    survivors = [s for s in c.servers if s is not fourth]
    lg = loads(LoadGen(c, keys=2000, threads=4, servers=survivors))
    lost_copies = c.keys_of(lg.keys, fourth.node_id, role="secondary")
    assert lost_copies, "node %d is secondary of none of %d keys" % (
        fourth.node_id, len(lg.keys))
    time.sleep(1.0)
    t = c.kill_server(fourth.node_id)
    lg.event("SIGKILL to node %d (secondaries only)" % fourth.node_id, t)
    try:
        st1 = c.wait_failed(fourth.node_id, st0["epoch"], FAILOVER_TIMEOUT)
        st2 = c.wait_fully_replicated(RECOVERY_TIMEOUT, up=3)
    except ClusterError as e:
        raise AssertionError("%s\n%s" % (e, lg.report()))
    print("node %d declared failed %.0f ms after SIGKILL (epoch %d -> %d); "
          "copies complete again %.1f s after it" % (
              fourth.node_id, (time.monotonic() - t) * 1000, st0["epoch"],
              st1["epoch"], time.monotonic() - t))
    time.sleep(0.5)
    lg.stop()
    print_stall(lg)
    for s in survivors:
        assert st2["rows"][s.node_id]["primaries"] == \
            st0["rows"][s.node_id]["primaries"], \
            "a primary moved though only a secondary died:\n%s\n%s" % (
                st0["out"], st2["out"])
    lg.verify(c).check()


def test_sigkill_meta_server_data_keeps_flowing(make_cluster, loads):
    c = make_cluster(n=3)
    lg = loads(LoadGen(c, keys=2000, threads=6))
    time.sleep(0.5)
    before = c.status()
    t = lg.event("SIGKILL meta server")
    c.stop_meta(signal.SIGKILL)
    ok0, err0 = lg.ok_count(), lg.error_count()
    time.sleep(2.0)
    ok1, err1 = lg.ok_count(), lg.error_count()
    gap, _, _ = lg.longest_gap(t, time.monotonic())
    lg.event("restart meta server")
    c.start_meta()
    after = c.wait_status(
        lambda st: len(up_nodes(st)) == 3, 30,
        "the 3 data servers to reconnect to the restarted meta server")
    time.sleep(0.5)    # give a wrong suspicion after the restart its chance
    final = c.status()
    lg.stop()
    print_stall(lg)
    assert ok1 - ok0 > 100 and err1 == err0 and gap < 1.0, \
        "while the meta server was down: %d ok, %d errors, %.3fs without " \
        "a success\n%s\n%s" % (ok1 - ok0, err1 - err0, gap, lg.report(),
                               c.logs())
    assert after["epoch"] == final["epoch"] == before["epoch"] and \
        not failed_nodes(final), \
        "a failover happened around the meta server's restart: epoch " \
        "%d -> %d -> %d\n%s\n%s" % (before["epoch"], after["epoch"],
                                    final["epoch"], final["out"], c.logs())
    lg.verify(c).check()


def test_second_kill_after_recovery_loses_nothing(make_cluster, loads):
    c = make_cluster(n=3)
    lg = loads(LoadGen(c, keys=2000, threads=6))
    time.sleep(0.5)
    kill_and_wait_failed(c, lg, 1)
    lg.retarget()
    try:
        st = c.wait_fully_replicated(RECOVERY_TIMEOUT, up=2)
    except ClusterError as e:
        raise AssertionError("%s\n%s" % (e, lg.report()))
    lg.event("status: fully replicated on nodes %s" % up_nodes(st))
    kill_and_wait_failed(c, lg, 2)
    lg.retarget()
    time.sleep(1.0)
    lg.stop()
    print_stall(lg)
    lg.verify(c).check()


def value_reply(r):
    """An mg reply that must be a hit: (head line, value)."""
    assert isinstance(r, tuple), "expected a VA reply, got %r" % r
    return r


def test_meta_stale_and_win_state_survive_failover(make_cluster):
    """mg's stale (X) and win (W, then Z) answers and a base64 ("b") key are
    item state, replicated with the item: after its primary is killed, the
    promoted secondary answers exactly as the primary did."""
    c = make_cluster(n=3)
    # The victim: the server with the most primaries (a false failover while
    # a loaded host formed the cluster may have left one with none).
    rows = {n: r for n, r in c.status()["rows"].items() if r["state"] == "up"}
    victim = max(rows, key=lambda n: rows[n]["primaries"])
    writer, reader = [n for n in sorted(rows) if n != victim][:2]
    keys = ["ms:%d" % i for i in range(300)]
    owned = c.keys_of(keys, victim)
    assert len(owned) >= 3, "node %d is primary of too few keys" % victim
    won, fresh, binkey = owned[:3]
    b64 = base64.b64encode(binkey.encode()).decode()
    with Conn(c.server(writer).port) as m:
        assert m.meta("ms %s 2" % won, "v1") == b"HD\r\n"
        assert m.meta("md %s I" % won) == b"HD\r\n"
        line, _ = value_reply(m.meta("mg %s v" % won))  # this client wins
        assert b" W" in line and b" X" in line, line
        assert m.meta("ms %s 2" % fresh, "v2") == b"HD\r\n"
        assert m.meta("md %s I" % fresh) == b"HD\r\n"
        assert m.meta("ms %s 2 b" % b64, "v3") == b"HD\r\n"
    # Both copies complete before the kill (a false failover while the
    # cluster formed may have left a secondary still recovering).
    c.wait_fully_replicated(RECOVERY_TIMEOUT)
    before = c.status()
    c.kill_server(victim)
    c.wait_failed(victim, before["epoch"], FAILOVER_TIMEOUT)
    with Conn(c.server(reader).port) as m:
        line, data = value_reply(m.meta("mg %s v" % won))
        assert data == b"v1" and b" X" in line and b" Z" in line, line
        assert b" W" not in line, "the win was handed out twice: %r" % line
        line, data = value_reply(m.meta("mg %s v" % fresh))
        assert data == b"v2" and b" W" in line and b" X" in line, line
        line, data = value_reply(m.meta("mg %s b k v" % b64))
        assert data == b"v3" and (" k%s" % b64).encode() in line, line


def test_sigstop_primary_never_serves_its_lost_keys(make_cluster, loads):
    c = make_cluster(n=3)
    victim = 1
    others = [s for s in c.servers if s.node_id != victim]
    keys = c.keys_of([b"stop:%d" % i for i in range(600)], victim)[:100]
    assert len(keys) >= 20, keys
    mine = c.server(victim)
    with Client(mine.port) as conn:
        for k in keys:
            assert conn.set(k, b"old-" + k) == STORED
    lg = loads(LoadGen(c, keys=2000, threads=4, servers=others))
    time.sleep(0.5)
    kill_and_wait_failed(c, lg, victim, signal.SIGSTOP)
    # New values through the others; each within the failover wait.
    new = {k: b"new-" + k for k in keys}
    store_through(c, others, new, seconds=10)
    c.resume_server(victim)
    lg.event("SIGCONT node %d" % victim)
    answers = {"new": 0, "server_error": 0, "connection": 0}
    wrong = []
    end = time.monotonic() + 1.0
    conn = None
    while time.monotonic() < end and len(wrong) < 10:
        for k in keys:
            try:
                if conn is None:
                    conn = Client(mine.port, timeout=5)
                got, err = conn.get_multi([k])
            except OSError:
                answers["connection"] += 1
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(0.01)
                continue
            if err is not None:
                if not err.startswith(b"SERVER_ERROR"):
                    wrong.append((k, err))
                answers["server_error"] += 1
                conn.close()
                conn = None
            elif got.get(k) == new[k]:
                answers["new"] += 1
            else:
                wrong.append((k, got.get(k)))
    if conn is not None:
        conn.close()
    print("reads through the resumed node %d: %r" % (victim, answers))
    assert not wrong, "the resumed node %d answered its lost keys with " \
        "(key, answer): %r (expected %r or SERVER_ERROR); answers %r\n%s" % (
            victim, wrong, b"new-<key>", answers, c.logs())
    assert answers["new"] + answers["server_error"] > 0, \
        "the resumed node %d answered no read in 1s: %r\n%s" % (
            victim, answers, c.logs())

    # A write through it: forwarded to the new primary, or refused; never
    # taken by itself as the primary.
    results = []
    with Client(mine.port) as conn:
        for k in keys[:20]:
            v = b"via-stopped-" + k
            try:
                r = conn.set(k, v)
            except OSError as e:
                r = repr(e).encode()
            results.append((k, v, r))
    for k, v, r in results:
        assert r == STORED or r.startswith(b"SERVER_ERROR") or \
            r.startswith(b"Connection") or b"Error" in r, (k, r)
        ok = {v} if r == STORED else {v, new[k]}
        for s in others:
            with Client(s.port) as oc:
                got, err = oc.get_multi([k])
            assert err is None and got.get(k) in ok, \
                "write of %r through the resumed node %d answered %r; node %d "\
                "reads %r (expected one of %r)\n%s" % (
                    k, victim, r, s.node_id, err or got.get(k), ok, c.logs())
        rc, reps, out = c.get_replica(k)
        assert rc == 0 and reps and reps[0][0] != victim and \
            isinstance(reps[0][2], dict) and reps[0][2]["value"] in ok, \
            "key %r after a write through the resumed node %d (answer %r):" \
            "\n%s\n%s" % (k, victim, r, out, c.logs())
    lg.stop()
    print_stall(lg)
    lg.verify(c).check()


def test_idle_falsely_failed_server_rejoins_and_recovers(make_cluster):
    """A server declared failed while no write flows (a false failover as a
    busy host forms the cluster; here SIGSTOP) comes back as a new server
    under the same node id. The primaries' writers to its old incarnation
    saw no error (nothing was written), yet its rings are gone: they must
    open new rings, or its recovery waits for ever ("no replication ring
    from it"). Seen in CI as a cluster that never finished forming."""
    c = make_cluster(n=3)
    victim = 3
    before = c.status()
    t = c.pause_server(victim)
    st = c.wait_failed(victim, before["epoch"], FAILOVER_TIMEOUT)
    print("node %d declared failed %.0f ms after SIGSTOP (epoch %d -> %d)" % (
        victim, (time.monotonic() - t) * 1000, before["epoch"], st["epoch"]))
    c.resume_server(victim)
    try:
        st = c.wait_fully_replicated(RECOVERY_TIMEOUT, up=3)
    except ClusterError as e:
        raise AssertionError("%s\n%s" % (e, c.logs()))
    assert st["rows"][victim]["state"] == "up", st["out"]
    # Its new copies are real: a write through another server reaches it.
    placement = c.placement()
    keys = c.keys_of([b"back:%d" % i for i in range(400)], victim,
                     role="secondary", placement=placement)[:20]
    assert keys, placement
    with Client(c.server(1).port) as conn:
        for k in keys:
            assert conn.set(k, b"v-" + k) == STORED
    for k in keys:
        rc, reps, out = c.get_replica(k)
        copies = {node: item for node, _, item in reps}
        assert rc == 0 and isinstance(copies.get(victim), dict) and \
            copies[victim]["value"] == b"v-" + k, "%r:\n%s" % (k, out)


def test_spare_takes_the_lost_copies(make_cluster, loads):
    c = make_cluster(n=3)
    spare = c.add_server(["--spare"])
    st0 = c.wait_status(
        lambda st: st["rows"].get(spare.node_id, {}).get("state") == "spare"
        and st["rows"][spare.node_id]["conn"] == "up", FAILOVER_TIMEOUT,
        "node %d listed as a connected spare" % spare.node_id)
    row = st0["rows"][spare.node_id]
    assert row["primaries"] == row["secondaries"] == 0, st0["out"]
    lg = loads(LoadGen(c, keys=2000, threads=4,
                       servers=[s for s in c.servers if s is not spare]))
    time.sleep(0.5)
    victim = 2
    _, st1 = kill_and_wait_failed(c, lg, victim)
    lg.retarget()
    row = st1["rows"][spare.node_id]
    assert row["state"] == "up" and row["primaries"] == 0 and \
        row["secondaries"] > 0, "the spare did not take the lost copies:\n" \
        + st1["out"] + c.meta_log()[-3000:]
    # The survivors gained no copy: the spare makes every one the failure
    # left to be made.
    for n in (1, 3):
        assert st1["rows"][n]["secondaries"] <= st0["rows"][n]["secondaries"], \
            "node %d gained secondaries though a spare was there:\n%s" % (
                n, st1["out"])
    try:
        c.wait_fully_replicated(RECOVERY_TIMEOUT, up=3)
    except ClusterError as e:
        raise AssertionError("%s\n%s" % (e, lg.report()))
    # The spare's copies are real: a second failure loses nothing.
    kill_and_wait_failed(c, lg, 1)
    lg.retarget()
    time.sleep(1.0)
    lg.stop()
    print_stall(lg)
    lg.verify(c).check()


def test_spawn_cmd_starts_a_replacement(make_cluster, loads, tmp_path):
    pidfile = tmp_path / "replacement.pid"
    root = ["-u", "root"] if os.geteuid() == 0 else []
    # The failed server's node id and port (free since it died); the
    # command returns at once, the server runs on in the background.
    template = " ".join(
        [shlex.quote(SERVER_BIN), "--meta", "%m", "--node-id", "%n",
         "-p", "%p", "-l", "127.0.0.1", "-U", "0", "--fabric", "tcp",
         "--fabric-listen", "127.0.0.1"] + MEMORY + root +
        [">", shlex.quote(str(tmp_path / "replacement-%n.log")), "2>&1",
         "&", "echo", "$!", ">", shlex.quote(str(pidfile))])
    c = make_cluster(n=3, meta_args=["--spawn-cmd", template])
    try:
        lg = loads(LoadGen(c, keys=2000, threads=4))
        time.sleep(0.5)
        victim = 2
        # The replacement may rejoin under node 2's id before status is
        # polled: wait for the map to have moved on, not for "failed".
        st1 = c.status()
        t = c.kill_server(victim)
        lg.event("SIGKILL node %d" % victim, t)
        lg.retarget()
        try:
            st = c.wait_status(
                lambda st: st["epoch"] >= st1["epoch"] + 2 and
                st["rows"].get(victim, {}).get("state") == "up" and
                st["rows"][victim]["conn"] == "up" and
                st["rows"][victim]["secondaries"] > 0 and
                fully_replicated(st), RECOVERY_TIMEOUT,
                "the replacement for node %d up, holding recovered copies"
                % victim)
        except ClusterError as e:
            raise AssertionError("%s\n%s\n%s" % (
                e, _read(tmp_path / ("replacement-%d.log" % victim)),
                lg.report()))
        log = c.meta_log()
        assert st["epoch"] >= st1["epoch"] + 2, st["out"]
        for want in (r"node %d declared failed" % victim,
                     r"replacement for node %d: pid \d+ exited 0" % victim,
                     r"node %d rejoined empty as a new server" % victim):
            assert re.search(want, log), "%r not in the meta log:\n%s" % (
                want, log[-3000:])
        lg.stop()
        print_stall(lg)
        lg.verify(c).check()
    finally:
        _kill_pidfile(pidfile)


def _read(path):
    try:
        return path.read_text(errors="replace")[-3000:]
    except OSError:
        return ""


def _kill_pidfile(path):
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


def test_replacement_flag_errors(tmp_path):
    """Bad values get a clear usage error naming the flag, never a start."""
    from cluster import META_BIN
    from conftest import free_port
    meta = ["--meta", "127.0.0.1:%d" % free_port()]
    for args, want in (
            (["--recovery-rate-mb=fast"] + meta, "--recovery-rate-mb"),
            (["--recovery-rate-mb=-1"] + meta, "--recovery-rate-mb"),
            (["--spare"], "--spare needs --meta"),
            (["--recovery-rate-mb=5"], "--recovery-rate-mb needs --meta")):
        p = subprocess.run([SERVER_BIN, "-u", "root"] + args,
                           capture_output=True, text=True, timeout=10)
        assert p.returncode == 64 and want in p.stderr, (args, p.stderr)
    for tmpl, want in (("start %x", "unknown placeholder %x"),
                       ("start %", "a lone %")):
        p = subprocess.run([META_BIN, "--state-dir", str(tmp_path / "s"),
                            "--spawn-cmd", tmpl], capture_output=True,
                           text=True, timeout=10)
        assert p.returncode == 64 and want in p.stderr, (tmpl, p.stderr)


# Kill during recovery: a small data set, and recovery held open by the
# data servers' --recovery-rate-mb (the throttle an operator uses so that
# recovery does not starve the data path).
RATE_MB = os.environ.get("FTM_RECOVERY_RATE_MB", "1")


# These ran only with FTM_LONG=1 until the meta server held sole-copy
# holders (--sole-copy-hold-ms): on a loaded 2-core host a second server
# was declared failed by its heartbeat timeout while the throttled recovery
# ran (CI: "node 2 declared failed: no heartbeat for 106 ms"), and the
# partitions whose only complete copy it held were lost.
@pytest.mark.parametrize("second,copies", [("target", 2), ("source", 2),
                                           ("source", 3)])
def test_kill_during_recovery_keeps_partitions_with_a_live_copy(
        make_cluster, loads, second, copies):
    c = make_cluster(n=4, copies=copies,
                     server_args=MEMORY + ["--recovery-rate-mb", RATE_MB])
    lg = LoadGen(c, keys=2000, threads=4)
    t0 = time.monotonic()
    bulk = lg.preload(int(RECOVERY_MB * 1e6), value_size=4000)
    print("preloaded %d items, %.0f MB, in %.1fs" % (
        len(bulk), RECOVERY_MB, time.monotonic() - t0))
    placement = c.placement()
    st0 = c.status()
    loads(lg)
    time.sleep(0.5)
    first = 1
    kill_and_wait_failed(c, lg, first)
    lg.retarget()
    try:
        st1 = c.wait_recovering(FAILOVER_TIMEOUT)
    except ClusterError as e:
        raise AssertionError("%s\n%s" % (e, lg.report()))
    # The server receiving the most new copies, and the one that gained the
    # most primaries (promoted secondaries: the sources of those copies).
    live = [n for n in up_nodes(st1) if n != first]
    gained = {n: st1["rows"][n]["secondaries"] - st0["rows"][n][
        "secondaries"] for n in live}
    promoted = {n: st1["rows"][n]["primaries"] - st0["rows"][n][
        "primaries"] for n in live}
    target = max(live, key=lambda n: gained[n])
    if second == "target":
        victim = target
    else:
        victim = max([n for n in live if n != target] or live,
                     key=lambda n: promoted[n])
    st_before = c.status()
    still = recovery_in_progress(st_before)
    t = c.kill_server(victim)
    lg.event("SIGKILL node %d (%s) during recovery" % (victim, second), t)
    # The throttle holds: each recovering server's average rate (status's
    # replication column) stays within the limit.
    rates = [float(m.group(1)) for r in st_before["rows"].values()
             for m in [re.search(r"([\d.]+) MB/s", r["replication"])] if m]
    print("recovery rates in status (MB/s): %r" % rates)
    assert all(r <= float(RATE_MB) * 1.5 for r in rates), \
        "recovery faster than --recovery-rate-mb %s: %r\n%s" % (
            RATE_MB, rates, st_before["out"])
    print("second kill: node %d (%s; new secondaries %r, new primaries "
          "%r); recovery in progress just before: %s" % (
              victim, second, gained, promoted, still))
    assert still, "recovery had finished before the second kill: lower " \
        "FTM_RECOVERY_RATE_MB (now %s) or load more data (FTM_RECOVERY_MB, " \
        "now %.0f)\n%s" % (RATE_MB, RECOVERY_MB, c.logs())
    lg.retarget()
    c.wait_status(lambda st: st["rows"].get(victim, {}).get("state") ==
                  "failed", FAILOVER_TIMEOUT,
                  "node %d in state failed" % victim)
    time.sleep(1.0)
    lg.stop()
    print_stall(lg)
    survivors = {s.node_id for s in c.live_servers()}
    parts = c.key_partitions(list(lg.log), len(placement))
    safe = [k for k in lg.log if set(placement[parts[k]]) & survivors]
    at_risk = len(lg.log) - len(safe)
    print("%d keys in partitions that kept a copy from before the "
          "failures, %d at risk" % (len(safe), at_risk))
    if copies == 3:
        # Two of three copies died: every partition kept one.
        assert at_risk == 0, "%d keys lost every copy with 3 copies" % at_risk
    lg.verify(c, keys=safe, timeout=RECOVERY_TIMEOUT / 2).check(
        "(checked only partitions with a copy from before the failures on "
        "nodes %s)" % sorted(survivors))
    if copies == 3:
        # The recoveries the second kill broke restart from another copy
        # and finish (two servers left: two copies, "degraded" for 3).
        try:
            c.wait_status(
                lambda st: len(up_nodes(st)) == 2 and
                st["summary"]["unassigned"] == 0 and
                not recovery_in_progress(st), RECOVERY_TIMEOUT,
                "the broken recoveries to restart and finish on 2 servers")
        except ClusterError as e:
            raise AssertionError(str(e))
