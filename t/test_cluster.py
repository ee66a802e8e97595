"""The replicated cluster (issue 5): a meta server and 3 data servers on
loopback (t/cluster.py), checked against a standalone ftmemcached and with
`ftmemcached-ctl digest` / `get-replica`.

- every command family (text, meta, binary) through every server answers
  as one standalone server does: the seeded random streams of
  test_differential and test_binary, each command sent through the next
  server in turn, replies compared with a standalone server's; and a
  pylibmc (binary) script through each server;
- random writes through random servers: every partition's digest is the
  same on its primary and secondary, and sampled keys have the same value,
  flags and cas on both;
- memccapable (text -a, and binary) against cluster servers;
- concurrent increments through all servers: the final value equals the
  number of acknowledged increments;
- a meta server restart (SIGTERM, same --state-dir): same map and epoch,
  clients served throughout;
- a replication ring smaller than a burst: writers wait, nothing is lost.

Binaries come from $FTM_BUILDDIR (ftmemcached, ftmemcached-meta,
ftmemcached-ctl); the tcp fabric provider on 127.0.0.1. Every wait is
bounded; servers that die fail the test with their stderr attached.
"""

import os
import random
import signal
import struct
import threading
import time

import pytest

from cluster import (ClusterError, LocalCluster, cluster_support,
                     ring_size_flag)
from conftest import IS_FTM
from mc import Conn, ServerClosed
import test_binary as binproto
import test_differential as textproto
from test_memccapable import run_memccapable

pytestmark = pytest.mark.skipif(
    not IS_FTM, reason="cluster tests need ftmemcached (server under test "
                       "is not ftmemcached)")

STORED = b"STORED\r\n"
STREAM_COMMANDS = int(os.environ.get("FTM_CLUSTER_COMMANDS", "1500"))


def _need_cluster():
    why = cluster_support()
    if why is not None:
        pytest.fail("cannot run a cluster: " + why)


@pytest.fixture
def cluster(request):
    _need_cluster()
    c = LocalCluster(n=3, copies=2)
    # conftest attaches these servers' stderr to a failure report
    request.node._ftm_servers = getattr(request.node, "_ftm_servers", []) + \
        c.servers
    yield c
    try:
        c.check_alive()
    finally:
        c.close()


def _cluster_with(request, **kw):
    _need_cluster()
    c = LocalCluster(**kw)
    request.node._ftm_servers = getattr(request.node, "_ftm_servers", []) + \
        c.servers
    return c


# -- every command family through every server ------------------------------
@pytest.mark.parametrize("seed", [101, 102])
def test_text_and_meta_stream_through_every_server(cluster, server_factory,
                                                   seed):
    """test_differential's random stream (valid and invalid text and meta
    commands, noreply, multi-key gets, cas, flush_all): command i goes
    through cluster server i % 3; the replies must match a standalone
    server's, byte for byte after the same masking (cas, t, l)."""
    standalone = server_factory()
    gen = textproto.Gen(seed)
    conns = [s.conn() for s in cluster.servers]
    ref = standalone.conn()
    cas_cluster, cas_ref = {}, {}
    history, mismatches = [], []
    try:
        for i in range(STREAM_COMMANDS):
            template = gen.command()
            k = i % len(conns)
            pc = textproto.build(template, cas_cluster)
            pr = textproto.build(template, cas_ref)
            try:
                rc = conns[k].roundtrip(pc)
            except (OSError, ServerClosed):
                rc = b"<connection closed; buffered %r>" % conns[k].buf[:300]
                conns[k].close()
                conns[k] = cluster.servers[k].conn()
            try:
                rr = ref.roundtrip(pr)
            except (OSError, ServerClosed):
                rr = b"<connection closed; buffered %r>" % ref.buf[:300]
                ref.close()
                ref = standalone.conn()
            textproto.learn_cas(rc, cas_cluster)
            textproto.learn_cas(rr, cas_ref)
            history.append(pr)
            nk = textproto.is_num_key_cmd(pr)
            if textproto.normalise(rc, nk) != textproto.normalise(rr, nk):
                mismatches.append(
                    "command #%d via node %d: %r\n  cluster:    %r\n"
                    "  standalone: %r\n  preceding: %r" % (
                        i, k + 1, pc[:300], rc[:500], rr[:500],
                        [h[:100] for h in history[-6:-1]]))
                if len(mismatches) >= 8:
                    break
    finally:
        for c in conns + [ref]:
            c.close()
    assert not mismatches, "%d mismatching replies:\n%s" % (
        len(mismatches), "\n".join(mismatches))
    # Whatever the stream did (flush_all included), the copies agree.
    _wait_digest_identical(cluster)


def _exchange_paced(port, frames, trailer, gap=0.005):
    """Like test_binary.exchange, but the frames arrive one by one, so the
    server answers each before it reads the next."""
    import socket
    s = socket.create_connection(("127.0.0.1", port), timeout=3.0)
    try:
        try:
            for f in frames:
                s.sendall(f)
                time.sleep(gap)
            s.sendall(trailer)
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # closed on a bad frame: read what it answered before
        data = b""
        while True:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                return data + b"<TIMEOUT>"
            except ConnectionResetError:
                return data + b"<RESET>"
            if not chunk:
                return data
            data += chunk
    finally:
        s.close()


def test_binary_frames_through_every_server(cluster, server_factory):
    """test_binary's random frames (valid and broken, quiet and pipelined):
    case i goes through cluster server i % 3; the responses must equal a
    standalone server's (cas values masked).

    Two standalone servers take every case: one gets a case's frames in
    one write, the other one frame at a time. They differ only where a
    frame makes the server close the connection: memcached then drops the
    replies it has not written yet (a suffix of the replies), so what a
    client sees depends on how the bytes arrived. A cluster server writes
    a forwarded request's reply when the primary's answer comes back, as
    if the bytes had arrived in two parts there. So: the cluster must send
    at least what the one-write standalone sent (everything memcached
    sends however the bytes arrive) and at most what the paced one sent,
    in the same order: the first is a prefix of its replies, and its
    replies are a prefix of the second."""
    together = server_factory(["-I", "1m"])
    paced = server_factory(["-I", "1m"])
    rng = random.Random(4242)
    cas_c, cas_t, cas_p = {}, {}, {}
    mismatches = []
    for i in range(STREAM_COMMANDS):
        specs = [binproto._random_frame(rng)
                 for _ in range(rng.choice([1, 1, 2, 3]))]
        specs[0]["kw"].pop("magic", None)
        trailer = binproto.frame(binproto.NOOP, opaque=0x5eed0000 + i) + \
            bytes(8192)
        port = cluster.servers[i % 3].port
        a = binproto.parse(binproto.exchange(port, b"".join(
            binproto._encode(s, cas_c) for s in specs) + trailer))
        b = binproto.parse(binproto.exchange(together.port, b"".join(
            binproto._encode(s, cas_t) for s in specs) + trailer))
        b2 = binproto.parse(_exchange_paced(paced.port, [
            binproto._encode(s, cas_p) for s in specs], trailer))
        key = specs[-1]["key"]
        a = binproto._normalise(a, cas_c, key)
        b = binproto._normalise(b, cas_t, key)
        b2 = binproto._normalise(b2, cas_p, key)
        if not (a[:len(b)] == b and b2[:len(a)] == a):
            mismatches.append((i, i % 3 + 1, specs, b, b2, a))
            if len(mismatches) >= 5:
                break
    assert not mismatches, "\n\n".join(
        "case %d via node %d: %r\n standalone:        %r\n standalone, "
        "paced: %r\n cluster:           %r" % m for m in mismatches)


def _pylibmc_script(c, p):
    """A representative binary-protocol session through pylibmc; returns
    what each call gave (exceptions by class name), keys without prefix."""
    import pylibmc
    out = []

    def rec(f, *a, **kw):
        try:
            r = f(*a, **kw)
        except pylibmc.Error as e:
            r = "raised " + type(e).__name__
        if isinstance(r, dict):
            r = sorted((k[len(p):], v) for k, v in r.items())
        elif isinstance(r, list):
            r = sorted(k[len(p):] if isinstance(k, str) else k for k in r)
        out.append(r)
        return r

    rec(c.set, p + "a", "1")
    rec(c.set, p + "b", b"two", time=1000)
    rec(c.set_multi, {p + "c": "3", p + "d": 4, p + "e": b"\x00\xff"})
    rec(c.get_multi, [p + x for x in ("a", "b", "c", "d", "e", "nope")])
    rec(c.get, p + "nope")
    rec(c.add, p + "a", "x")
    rec(c.add, p + "f", "5")
    rec(c.replace, p + "f", "6")
    rec(c.replace, p + "missing", "6")
    rec(c.append, p + "f", "7")
    rec(c.prepend, p + "f", "0")
    rec(c.append, p + "missing", "7")
    rec(c.get, p + "f")
    r = c.gets(p + "f")
    out.append((r[0], bool(r[1])))
    rec(c.cas, p + "f", "8", r[1])
    rec(c.cas, p + "f", "9", r[1])
    rec(c.get, p + "f")
    rec(c.incr, p + "n")
    rec(c.set, p + "n", "10")
    rec(c.incr, p + "n")
    rec(c.incr, p + "n", 5)
    rec(c.decr, p + "n", 100)
    rec(c.set, p + "w", "18446744073709551615")
    rec(c.incr, p + "w", 2)   # wraps around at 2**64
    rec(c.get, p + "w")
    rec(c.touch, p + "b", 100)
    rec(c.touch, p + "nope", 10)
    rec(c.delete, p + "a")
    rec(c.delete, p + "a")
    rec(c.delete_multi, [p + "c", p + "d", p + "nope"])
    rec(c.get_multi, [p + x for x in ("a", "b", "c", "d", "e", "f", "n")])
    big = bytes(random.Random(7).randrange(256) for _ in range(300000))
    rec(c.set, p + "big", big)
    out.append(c.get(p + "big") == big)
    rec(c.set, p + "huge", b"x" * (2 << 20))
    return out


def test_pylibmc_binary_session_through_every_server(cluster, server_factory):
    pylibmc = pytest.importorskip("pylibmc")
    standalone = server_factory()

    def client(port):
        return pylibmc.Client(["127.0.0.1:%d" % port], binary=True,
                              behaviors={"cas": True, "tcp_nodelay": True})
    for n, s in enumerate(cluster.servers, 1):
        prefix = "pl%d:" % n
        c, r = client(s.port), client(standalone.port)
        try:
            got = _pylibmc_script(c, prefix)
            want = _pylibmc_script(r, prefix)
        finally:
            c.disconnect_all()
            r.disconnect_all()
        assert got == want, "through node %d:\n cluster:    %r\n " \
            "standalone: %r" % (n, got, want)


# -- replicas ------------------------------------------------------------------
def _wait_digest_identical(cluster, timeout=20):
    """The applier runs behind the ack (delivery into the secondary's
    memory), so allow it a bounded moment to apply what landed."""
    deadline = time.monotonic() + timeout
    while True:
        d = cluster.digest()
        if d["rc"] == 0 and d["summary"] and d["summary"][2] == 0 and \
                d["summary"][0] == d["summary"][1]:
            return d
        if time.monotonic() >= deadline:
            differing = [(p, r) for p, r in sorted(d["rows"].items())
                         if r[0] != "identical"][:10]
            pytest.fail("digest not identical after %ss: rc %d, summary %r,"
                        " first differing (partition, (result, [(node, "
                        "items, hash), ...])): %r\nstderr: %s" % (
                            timeout, d["rc"], d["summary"], differing,
                            d["err"][-2000:]))
        time.sleep(0.2)


class Model:
    """The client's record of acknowledged writes: key -> (value, flags)."""

    def __init__(self):
        self.items = {}
        self.log = []

    def check(self, what, got, want):
        if got != want:
            raise AssertionError("%s: got %r, expected %r (model: %r)\n"
                                 "last ops: %r" % (what, got, want,
                                                   self.items.get(what),
                                                   self.log[-5:]))


def test_random_writes_leave_replicas_identical(cluster):
    rng = random.Random(2024)
    conns = [s.conn() for s in cluster.servers]
    keys = [b"rw:%d" % i for i in range(700)]
    m = Model()
    for i in range(3000):
        k = rng.randrange(3)
        c = conns[k]
        key = rng.choice(keys)
        op = rng.random()
        have = m.items.get(key)
        m.log.append((i, k + 1, key, op))
        if op < 0.35:
            v = b"v%d-" % i + b"x" * rng.randrange(0, 300)
            f = rng.randrange(0, 2 ** 32)
            m.check(key, c.set(key, v, flags=f), STORED)
            m.items[key] = (v, f)
        elif op < 0.45:
            v = b"m%d" % i
            f = rng.randrange(0, 1000)
            r = c.meta(b"ms %s %d F%d T0" % (key, len(v), f), v)
            m.check(key, r, b"HD\r\n")
            m.items[key] = (v, f)
        elif op < 0.52:
            v = b"n%d" % i
            c.set(key, v, noreply=True)
            # mn on the same connection: the set is done when MN comes
            m.check(key, c.roundtrip(b""), b"")
            m.items[key] = (v, 0)
        elif op < 0.60:
            r = c.store("add", key, b"a%d" % i, flags=3)
            if have:
                m.check(key, r, b"NOT_STORED\r\n")
            else:
                m.check(key, r, STORED)
                m.items[key] = (b"a%d" % i, 3)
        elif op < 0.68:
            suffix = b"+%d" % i
            r = c.store("append", key, suffix)
            if have:
                m.check(key, r, STORED)
                m.items[key] = (have[0] + suffix, have[1])
            else:
                m.check(key, r, b"NOT_STORED\r\n")
        elif op < 0.76:
            r = c.cmd(b"delete " + key)
            m.check(key, r, b"DELETED\r\n" if have else b"NOT_FOUND\r\n")
            m.items.pop(key, None)
        elif op < 0.84:
            if have is None or not have[0].isdigit():
                m.check(key, c.set(key, b"%d" % i, flags=9), STORED)
                have = m.items[key] = (b"%d" % i, 9)
            r = c.cmd(b"incr %s 7" % key)
            want = int(have[0]) + 7
            m.check(key, r, b"%d\r\n" % want)
            m.items[key] = (b"%d" % want, have[1])
        elif op < 0.90:
            r = c.cmd(b"touch %s 0" % key)
            m.check(key, r, b"TOUCHED\r\n" if have else b"NOT_FOUND\r\n")
        elif op < 0.95:
            if have:
                r = c.gets(key)
                r2 = c.store("cas", key, b"c%d" % i, flags=have[1],
                             cas=r[1])
                m.check(key, r2, STORED)
                m.items[key] = (b"c%d" % i, have[1])
        else:
            # quiet: HD is suppressed, NF is not (memcached 1.6.18)
            r = c.roundtrip(b"md %s q\r\n" % key)
            m.check(key, r, b"" if have else b"NF\r\n")
            m.items.pop(key, None)
    # Every key reads back its acknowledged value through every server.
    for key in keys:
        want = m.items.get(key)
        for n, c in enumerate(conns, 1):
            r = c.get_multi([key])
            got = (r[key][1], r[key][0]) if key in r else None
            assert got == want, "%r via node %d: %r, expected %r" % (
                key, n, got, want)
    for c in conns:
        c.close()

    d = _wait_digest_identical(cluster)
    assert d["summary"][:3] == (1024, 1024, 0), d["summary"]
    # The primaries hold exactly the live keys.
    total = sum(reps[0][1] for _, reps in d["rows"].values())
    assert total == len(m.items), (total, len(m.items))
    for p, (result, reps) in d["rows"].items():
        assert len(reps) == 2 and reps[0][0] != reps[1][0], (p, reps)

    sample = random.Random(9).sample(sorted(m.items), 40)
    gone = [k for k in keys if k not in m.items][:5]
    with Conn(cluster.servers[0].port) as c:
        for key in sample:
            rc, reps, out = cluster.get_replica(key)
            assert rc == 0, out
            assert [r[1] for r in reps] == ["primary", "secondary"], out
            copies = [r[2] for r in reps]
            assert all(isinstance(x, dict) for x in copies), out
            assert copies[0] == copies[1], out
            value, flags = m.items[key]
            assert copies[0]["value"] == value and \
                copies[0]["flags"] == flags, out
            assert "replicas: identical" in out, out
            assert c.gets(key)[1] == copies[0]["cas"], out
        for key in gone:
            rc, reps, out = cluster.get_replica(key)
            assert rc == 0 and [r[2] for r in reps] == ["miss", "miss"], out


def test_get_replica_shows_exptime_and_binary_values(cluster):
    value = bytes(range(256))
    with Conn(cluster.servers[1].port) as c:
        assert c.set(b"gr:bin", value, flags=77, exptime=5000) == STORED
        now = int(time.time())
    rc, reps, out = cluster.get_replica("gr:bin")
    assert rc == 0 and len(reps) == 2, out
    for node, role, x in reps:
        assert isinstance(x, dict), out
        assert x["value"] == value and x["flags"] == 77, out
        assert now + 4990 <= x["exptime"] <= now + 5010, out
    assert reps[0][2] == reps[1][2], out


def test_flush_all_reaches_every_replica(cluster):
    """flush_all through one server empties every copy, primaries and
    secondaries alike, including items stored in the same second (memcached
    splits that second by cas order), and items stored right after it stay,
    on every copy."""
    rng = random.Random(77)
    conns = [s.conn() for s in cluster.servers]
    try:
        for rnd in range(3):
            old = [b"fl:%d:old:%d" % (rnd, i) for i in range(300)]
            new = [b"fl:%d:new:%d" % (rnd, i) for i in range(100)]
            for k in old:
                assert rng.choice(conns).set(k, b"o") == STORED
            assert conns[rnd].cmd(b"flush_all") == b"OK\r\n"
            for k in new:
                assert rng.choice(conns).set(k, b"n") == STORED
            for c in conns:
                got = c.get_multi(old + new)
                assert sorted(got) == sorted(new), (len(got), sorted(
                    set(got) - set(new))[:5])
            d = _wait_digest_identical(cluster)
            total = sum(reps[0][1] for _, reps in d["rows"].values())
            assert total == len(new)
            for k in new:
                conns[0].cmd(b"delete " + k)
    finally:
        for c in conns:
            c.close()


# -- memccapable -----------------------------------------------------------------
def test_memccapable_ascii_through_every_server(cluster):
    import shutil
    if not shutil.which("memccapable"):
        pytest.skip("memccapable (libmemcached-tools) not installed")
    for n, s in enumerate(cluster.servers, 1):
        rc, res, out = run_memccapable(s.port)
        failed = {k: v for k, v in res.items() if v != "pass"}
        assert res and not failed and rc == 0, "node %d:\n%s" % (n, out)
        assert len(res) >= 25, out


def test_memccapable_text_and_binary(cluster):
    if binproto.MEMCCAPABLE is None:
        pytest.skip("memccapable not installed")
    rc, out = binproto._memccapable(cluster.servers[2].port)
    assert "binary" in out
    assert rc == 0 and "All tests passed" in out, out


# -- concurrency -----------------------------------------------------------------
def test_concurrent_increments_from_every_server(cluster):
    key = b"ctr"
    with Conn(cluster.servers[0].port) as c:
        assert c.set(key, b"0") == STORED
    acks, errors = [], []
    lock = threading.Lock()

    def worker(port, n, meta):
        mine, bad = [], []
        try:
            with Conn(port) as c:
                for _ in range(n):
                    if meta:
                        r = c.meta(b"ma %s v" % key)
                        if isinstance(r, tuple) and r[1].isdigit():
                            mine.append(int(r[1]))
                        else:
                            bad.append(r)
                    else:
                        r = c.cmd(b"incr %s 1" % key)
                        if r.rstrip(b"\r\n").isdigit():
                            mine.append(int(r))
                        else:
                            bad.append(r)
        except Exception as e:  # a broken connection is an unacked incr
            bad.append(repr(e))
        with lock:
            acks.extend(mine)
            errors.extend(bad)

    threads = [threading.Thread(target=worker, args=(
        cluster.servers[i % 3].port, 150, i % 2 == 1)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=90)
    assert not any(t.is_alive() for t in threads), "workers hung"
    assert not errors, errors[:5]
    # Each acknowledged increment saw a distinct value: they were atomic.
    assert sorted(acks) == list(range(1, len(acks) + 1))
    for s in cluster.servers:
        with Conn(s.port) as c:
            assert c.get(key) == b"%d" % len(acks)
    rc, reps, out = cluster.get_replica(key)
    assert rc == 0 and len(reps) == 2, out
    assert all(isinstance(r[2], dict) and r[2]["value"] == b"%d" % len(acks)
               for r in reps), out


# -- meta server restart ---------------------------------------------------------
def test_meta_server_restart_keeps_map_and_serving(cluster):
    before = cluster.status()
    stop = threading.Event()
    progress = [0]
    errors = []

    def client():
        conns = [s.conn() for s in cluster.servers]
        i = 0
        try:
            while not stop.is_set() and len(errors) < 5:
                key = b"mr:%d" % (i % 300)
                v = b"v%d" % i
                r = conns[i % 3].set(key, v)
                if r != STORED:
                    errors.append((i, "set", r))
                g = conns[(i + 1) % 3].get(key)
                if g != v:
                    errors.append((i, "get", g, v))
                i += 1
                progress[0] = i
        except Exception as e:
            errors.append((i, repr(e)))
        finally:
            for c in conns:
                c.close()

    t = threading.Thread(target=client)
    t.start()
    try:
        time.sleep(0.5)
        assert cluster.stop_meta(signal.SIGTERM) is not None
        at_stop = progress[0]
        time.sleep(2.0)  # the data servers are on their own
        during = progress[0] - at_stop
        rc, _, _ = cluster.ctl("status", timeout_ms=1000)
        assert rc != 0, "the meta server still answers"
        cluster.start_meta()
        again = cluster.status()   # straight from disk
        assert again["epoch"] == before["epoch"], (before, again)

        def same(st):
            return {n: (r["memcached"], r["fabric"], r["primaries"],
                        r["secondaries"]) for n, r in st["rows"].items()}
        assert same(again) == same(before)
        after = cluster.wait_for(
            lambda: (lambda s: s if all(r["conn"] == "up" for r in
                                        s["rows"].values()) else None)(
                cluster.status()), 30, "data servers to reconnect")
        assert after["epoch"] == before["epoch"], after
        assert same(after) == same(before)
        mark = progress[0]
        time.sleep(0.5)
        assert progress[0] > mark, "no progress after the restart"
    finally:
        stop.set()
        t.join(timeout=30)
    assert not t.is_alive(), "client hung"
    assert not errors, errors
    assert during > 20, "only %d set/get pairs while the meta server was " \
        "down" % during


# -- back-pressure -----------------------------------------------------------------
def test_small_replication_ring_writers_wait_nothing_lost(request):
    flag = ring_size_flag()
    if flag is None:
        _need_cluster()
        pytest.fail("ftmemcached -h shows no replication ring size flag "
                    "(e.g. --replication-ring-size): cannot make a ring "
                    "smaller than a burst")
    ring = 64 * 1024
    # -I 2k keeps the node's own ring minimum (a few items) small too.
    c = _cluster_with(request, n=3, copies=2,
                      server_args=[flag, str(ring), "-I", "2k"])
    try:
        conns_per_server, sets_per_conn, size = 4, 400, 1000
        burst = 3 * conns_per_server * sets_per_conn * size
        assert burst > 20 * ring
        errors = []
        lock = threading.Lock()

        def writer(port, w):
            # Pipelined: the whole burst is on the wire before any reply.
            try:
                with Conn(port, timeout=60) as conn:
                    payload = b"".join(
                        b"set bp:%d:%d 0 0 %d\r\n" % (w, j, size) +
                        (b"%d:%d:" % (w, j)).ljust(size, b"b") + b"\r\n"
                        for j in range(sets_per_conn))
                    conn.send(payload)
                    for j in range(sets_per_conn):
                        r = conn.readline()
                        if r != STORED:
                            with lock:
                                errors.append((w, j, r))
            except Exception as e:
                with lock:
                    errors.append((w, repr(e)))

        threads = [threading.Thread(target=writer, args=(
            c.servers[w % 3].port, w)) for w in range(3 * conns_per_server)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not any(t.is_alive() for t in threads), "writers hung"
        assert not errors, errors[:5]
        for s in c.servers:
            assert s.alive()
        with Conn(c.servers[1].port) as conn:
            for w in range(3 * conns_per_server):
                keys = [b"bp:%d:%d" % (w, j) for j in range(sets_per_conn)]
                got = conn.get_multi(keys)
                assert len(got) == len(keys), (w, len(got))
                for j, k in enumerate(keys):
                    assert got[k][1] == (b"%d:%d:" % (w, j)).ljust(size, b"b")
        d = _wait_digest_identical(c)
        total = sum(reps[0][1] for _, reps in d["rows"].values())
        assert total == 3 * conns_per_server * sets_per_conn
    finally:
        try:
            c.check_alive()
        finally:
            c.close()


# -- ftmemcached-ctl usage -------------------------------------------------------
def test_ctl_inspection_usage_errors():
    import subprocess
    from cluster import CTL_BIN
    from conftest import free_port
    if not os.access(CTL_BIN, os.X_OK):
        pytest.fail("%s not built" % CTL_BIN)
    for args in (["get-replica"], ["get-replica", "a", "b"], ["digest", "x"],
                 ["get-replica", "k" * 251]):
        p = subprocess.run([CTL_BIN] + args, capture_output=True, text=True,
                           timeout=10)
        assert p.returncode == 64, (args, p.stderr)
        assert p.stderr.startswith("ftmemcached-ctl: "), p.stderr
    for args in (["get-replica", "k"], ["digest"]):
        p = subprocess.run([CTL_BIN, "--fabric", "tcp", "--timeout", "1000",
                            "--meta", "127.0.0.1:%d" % free_port()] + args,
                           capture_output=True, text=True, timeout=30)
        assert p.returncode == 69, (args, p.stderr)
        assert "cannot reach meta server" in p.stderr


def test_get_replica_of_a_key_that_looks_like_an_option(cluster):
    with Conn(cluster.servers[0].port) as c:
        assert c.set(b"-dash", b"d") == STORED
    rc, reps, out = cluster.get_replica("-dash")   # passed after "--"
    assert rc == 0 and [r[2]["value"] for r in reps] == [b"d", b"d"], out


# -- --fabric-progress ------------------------------------------------------------
def test_fabric_progress_flag_errors():
    import subprocess
    from cluster import SERVER_BIN
    from conftest import free_port
    meta = ["--meta", "127.0.0.1:%d" % free_port()]
    p = subprocess.run([SERVER_BIN, "-u", "root", "--fabric-progress=spin"] + meta,
                       capture_output=True, text=True, timeout=10)
    assert p.returncode == 64, p.stderr
    assert "--fabric-progress" in p.stderr and "expected auto, poll or block" in p.stderr
    p = subprocess.run([SERVER_BIN, "-u", "root", "--fabric-progress=block"],
                       capture_output=True, text=True, timeout=10)
    assert p.returncode == 64, p.stderr
    assert "--fabric-progress needs --meta" in p.stderr


@pytest.mark.parametrize("mode,waits", [(None, "waits=block"),
                                        ("poll", "waits=poll"),
                                        ("block", "waits=block")])
def test_fabric_progress_modes_serve_and_replicate(mode, waits):
    """auto sleeps on tcp (the default here); poll spins as before; each
    serves and replicates alike, and says which in its start-up line."""
    why = cluster_support()
    if why:
        pytest.skip(why)
    args = () if mode is None else ("--fabric-progress=" + mode,)
    with LocalCluster(n=3, server_args=args) as c:
        for i, s in enumerate(c.servers):
            with Conn(s.port) as conn:
                for k in range(20):
                    assert conn.set(b"fp-%d-%d" % (i, k), b"v%d" % k) == STORED
        with Conn(c.servers[2].port) as conn:
            for i in range(3):
                for k in range(20):
                    assert conn.get(b"fp-%d-%d" % (i, k)) == b"v%d" % k
        rc, out, err = c.ctl("digest")
        assert rc == 0 and "differing: 0" in out, out + err
        for s in c.servers:
            assert waits in s.stderr(), c.logs()


# -- heartbeats and the failure detector (issue 6, first part) -----------------------
def heartbeat_verdicts(c):
    """{node: (false_suspicions, verdict)} from `ftmemcached-ctl status`."""
    import re
    rc, out, err = c.ctl("status")
    assert rc == 0, out + err
    rows = {}
    section = out.split("heartbeats:\n", 1)
    assert len(section) == 2, out
    for line in section[1].splitlines()[1:]:
        m = re.match(r"^(\d+)\s+[\d.]+ms\s+[\d.]+ms\s+[\d.]+\s+(\d+)\s+(.*)$", line)
        if m:
            rows[int(m.group(1))] = (int(m.group(2)), m.group(3))
    return rows


def wait_verdict(c, node, pred, timeout=10):
    deadline = time.monotonic() + timeout
    rows = {}
    while time.monotonic() < deadline:
        rows = heartbeat_verdicts(c)
        if node in rows and pred(*rows[node]):
            return rows[node]
        time.sleep(0.05)
    raise AssertionError("node %d: verdict never matched; last %r\n%s" % (node, rows, c.logs()))


def _state_of(c, node):
    return c.status()["rows"][node]["state"]


def _wait_state(c, node, state, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _state_of(c, node) == state:
            return
        time.sleep(0.05)
    raise AssertionError("node %d never %s\n%s" % (node, state, c.logs()))


def test_heartbeats_fail_over_stopped_and_killed_servers():
    """Data servers write heartbeats into the meta server's array; a stopped
    one is suspected and declared failed (the reason in the log), and when
    it resumes it finds itself fenced and rejoins empty, as a new server with
    secondaries only; a killed one is declared failed too (issue 6)."""
    why = cluster_support()
    if why:
        pytest.skip(why)
    with LocalCluster(n=3) as c:
        for s in c.servers:
            wait_verdict(c, s.node_id, lambda f, v: v == "alive")
        victim = c.servers[2]
        epoch = c.status()["epoch"]
        victim.proc.send_signal(signal.SIGSTOP)
        try:
            t0 = time.monotonic()
            _wait_state(c, victim.node_id, "failed")
            print("stopped server declared failed after %.0f ms"
                  % ((time.monotonic() - t0) * 1000))
            assert c.status()["epoch"] > epoch
            assert ("node %d declared failed: no heartbeat" % victim.node_id
                    in c.meta_log()), c.meta_log()
        finally:
            victim.proc.send_signal(signal.SIGCONT)
        _wait_state(c, victim.node_id, "up")
        assert ("node %d rejoined empty as a new server" % victim.node_id
                in c.meta_log()), c.meta_log()
        row = c.status()["rows"][victim.node_id]
        assert row["primaries"] == 0 and row["secondaries"] > 0, row

        killed = c.servers[1]
        killed.proc.kill()
        killed.proc.wait()
        killed.stopped = True   # teardown: nothing left to stop
        _wait_state(c, killed.node_id, "failed")
