"""Network partitions (issue 7): the cluster on hosts of its own (network
namespaces, t/netns.py), one host cut off, made lossy or slow, under load:

- cut off a primary from the meta server and its peers (clients still reach
  it): it is declared failed; once the new map is in force it answers no
  read or write of the partitions it lost (a SERVER_ERROR naming the
  reason, never the old value); healed, it rejoins empty and recovers; no
  acknowledged write is lost;
- cut off the meta server: data keeps flowing, nobody is declared failed
  (the meta server must not fail the whole cluster over because it is
  itself isolated), and after healing the epoch is the same;
- 5 % packet loss, then a bandwidth cap, on one data server's link: no
  false failover with the default detector settings; the replication
  throughput under each is printed next to the undisturbed one.

Skipped, with the reason, where network namespaces cannot be made (not
root, no nft). Each test takes 10-40 s.
"""

import os
import time

import pytest

from cluster import ClusterError, cluster_support, failed_nodes, up_nodes
from conftest import IS_FTM
import netns
from loadgen import Client, LoadGen, STORED

pytestmark = [
    pytest.mark.skipif(not IS_FTM, reason="partition tests need ftmemcached"),
    pytest.mark.partition,
]

FAILOVER_TIMEOUT = float(os.environ.get("FTM_FAILOVER_TIMEOUT", "10"))
RECOVERY_TIMEOUT = float(os.environ.get("FTM_RECOVERY_TIMEOUT", "60"))
MEMORY = ["-m", "256"]


@pytest.fixture(scope="session", autouse=True)
def _stale_namespaces():
    if netns.support() is None:
        netns.cleanup_stale()
    yield
    if netns.support() is None:
        netns.cleanup_stale()


@pytest.fixture
def net(request):
    why = cluster_support() or netns.support()
    if why is not None:
        pytest.skip(why)
    n = netns.Netns(servers=3)
    try:
        yield n
    finally:
        n.close()


@pytest.fixture
def cluster(net, request):
    made = []

    def make(**kw):
        kw.setdefault("server_args", MEMORY)
        c = netns.NetCluster(net, **kw)
        made.append(c)
        request.node._ftm_servers = getattr(request.node, "_ftm_servers",
                                            []) + c.servers
        return c
    yield make
    try:
        for c in made:
            c.check_alive()
    finally:
        for c in made:
            c.close()


@pytest.fixture
def loads():
    started = []

    def run(lg):
        started.append(lg)
        return lg.start()
    yield run
    for lg in started:
        lg.__exit__(None, None, None)


def read_through(server, keys, seconds):
    """Reads `keys` through `server` for `seconds`: {"value": {key: value},
    "errors": [error line], "connection": count}."""
    out = {"value": {}, "errors": [], "connection": 0}
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for k in keys:
            try:
                with Client(server.port, host=server.host, timeout=5) as conn:
                    got, err = conn.get_multi([k])
            except OSError:
                out["connection"] += 1
                time.sleep(0.05)
                continue
            if err is not None:
                out["errors"].append(err)
            elif k in got:
                out["value"][k] = got[k]
            if time.monotonic() >= end:
                break
    return out


def test_cut_off_primary_is_replaced_and_serves_nothing_stale(cluster, loads):
    c = cluster(n=3)
    net = c.net
    victim = 1
    mine = c.server(victim)
    others = [s for s in c.servers if s.node_id != victim]
    keys = c.keys_of([b"cut:%d" % i for i in range(400)], victim)[:40]
    assert len(keys) >= 10, keys
    with Client(mine.port, host=mine.host) as conn:
        for k in keys:
            assert conn.set(k, b"old-" + k) == STORED
    lg = loads(LoadGen(c, keys=1000, threads=4, servers=others))
    time.sleep(0.5)
    before = c.status()
    t = net.cut("s%d" % victim, keep=("cl",))
    lg.event("cut node %d off (clients still reach it)" % victim, t)
    st = c.wait_failed(victim, before["epoch"], FAILOVER_TIMEOUT)
    print("node %d declared failed %.0f ms after the cut (epoch %d -> %d)" % (
        victim, (time.monotonic() - t) * 1000, before["epoch"], st["epoch"]))

    new = {k: b"new-" + k for k in keys}
    pending = dict(new)
    deadline = time.monotonic() + 10
    while pending and time.monotonic() < deadline:
        for k in list(pending):
            s = others[len(pending) % len(others)]
            with Client(s.port, host=s.host) as conn:
                if conn.set(k, pending[k]) == STORED:
                    del pending[k]
    assert not pending, "%d of the cut-off node's keys not stored through " \
        "the others in 10s\n%s" % (len(pending), c.logs())

    # The cut-off node still hears clients: reads and writes of its lost
    # keys get a SERVER_ERROR, never the old value.
    got = read_through(mine, keys[:10], 3.0)
    print("reads through the cut-off node: %d values, %d errors (%s), %d "
          "connection failures" % (len(got["value"]), len(got["errors"]),
                                   got["errors"][:1], got["connection"]))
    assert not got["value"], "the cut-off node %d answered reads of keys it " \
        "lost: %r\n%s" % (victim, got["value"], c.logs())
    assert got["errors"] and all(
        e.startswith(b"SERVER_ERROR") and b"lease" in e
        for e in got["errors"]), got["errors"][:5]
    with Client(mine.port, host=mine.host, timeout=10) as conn:
        r = conn.set(keys[0], b"via-cut-off")
    assert r.startswith(b"SERVER_ERROR"), \
        "a write through the cut-off node answered %r" % r

    t = net.heal("s%d" % victim)
    lg.event("healed node %d" % victim, t)
    st = c.wait_fully_replicated(RECOVERY_TIMEOUT, up=3)
    print("healed: fully replicated again %.1f s later, epoch %d" % (
        time.monotonic() - t, st["epoch"]))
    lg.stop()
    print(lg.report())
    for k in keys[:10]:
        rc, reps, out = c.get_replica(k)
        assert rc == 0 and all(isinstance(r[2], dict) and r[2]["value"] ==
                               new[k] for r in reps), out
    lg.verify(c).check()


def test_cut_off_meta_server_fails_nobody(cluster, loads):
    c = cluster(n=3)
    net = c.net
    lg = loads(LoadGen(c, keys=1000, threads=4))
    time.sleep(0.5)
    before = c.status()
    t = net.cut("meta")
    lg.event("cut the meta server off", t)
    ok0, err0 = lg.ok_count(), lg.error_count()
    time.sleep(3.0)
    ok1, err1 = lg.ok_count(), lg.error_count()
    gap, _, _ = lg.longest_gap(t, time.monotonic())
    t = net.heal("meta")
    lg.event("healed the meta server", t)
    try:
        after = c.wait_status(lambda st: len(up_nodes(st)) == 3, 30,
                              "the 3 data servers back in status")
    except ClusterError as e:
        raise AssertionError("%s\n%s" % (e, lg.report()))
    time.sleep(1.0)
    final = c.status()
    lg.stop()
    print(lg.report())
    print("while the meta server was cut off: %d ok, %d errors, longest "
          "time without a success %.3fs" % (ok1 - ok0, err1 - err0, gap))
    assert not failed_nodes(final) and \
        final["epoch"] == after["epoch"] == before["epoch"], \
        "a failover happened while or after the meta server was cut off: " \
        "epoch %d -> %d -> %d\n%s\n%s" % (before["epoch"], after["epoch"],
                                          final["epoch"], final["out"],
                                          c.logs())
    assert ok1 - ok0 > 100 and err1 == err0 and gap < 1.0, \
        "while the meta server was cut off: %d ok, %d errors, %.3fs " \
        "without a success\n%s\n%s" % (ok1 - ok0, err1 - err0, gap,
                                       lg.report(), c.logs())
    lg.verify(c).check()


def _write_rate(c, lg, seconds):
    """Acknowledged writes per second and MB/s of values over `seconds`."""
    ok0 = sum(w.ok for w in lg.workers)
    t0 = time.monotonic()
    time.sleep(seconds)
    n = sum(w.ok for w in lg.workers) - ok0
    dt = time.monotonic() - t0
    return n / dt


def test_loss_and_rate_cap_cause_no_failover(cluster, loads):
    c = cluster(n=3)
    net = c.net
    before = c.status()
    log0 = c.meta_log()
    # Writes only, 16 KiB values: every request is one replication.
    lg = loads(LoadGen(c, keys=500, threads=6, write_ratio=1.0,
                       value_size=16384))
    time.sleep(0.5)
    phases = [("undisturbed", None)]
    phases.append(("5% loss on s2", lambda: net.loss("s2", 5)))
    phases.append(("s2 capped at 20 Mbit/s", lambda: net.rate("s2", 20000)))
    rates = {}
    for name, fault in phases:
        if fault:
            fault()
            lg.event(name)
        rates[name] = _write_rate(c, lg, 4.0)
        net.heal("s2")
        time.sleep(0.3)
    lg.stop()
    final = c.status()
    print(lg.report())
    base = rates["undisturbed"]
    for name, r in rates.items():
        print("replication throughput, %s: %.0f writes/s, %.1f MB/s "
              "(%.0f%% of undisturbed)" % (name, r, r * 16384 / 1e6,
                                           100 * r / base if base else 0))
    suspected = c.meta_log()[len(log0):].count("suspected")
    assert not failed_nodes(final) and final["epoch"] == before["epoch"], \
        "false failover under loss or a rate cap: epoch %d -> %d\n%s\n%s" % (
            before["epoch"], final["epoch"], final["out"], c.logs())
    print("suspicions logged by the meta server: %d" % suspected)
    lg.verify(c).check()
