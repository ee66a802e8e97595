"""Network partitions (issue 7): the cluster on hosts of its own (network
namespaces, t/netns.py), one host cut off, made lossy or slow, under load:

- cut off a primary from the meta server and its peers, or from the meta
  server only (its peers hear the meta server and do not vouch for it;
  clients still reach it): it is declared failed; once the new map is in force it answers no
  read or write of the partitions it lost (a SERVER_ERROR naming the
  reason, never the old value); healed, it rejoins empty and recovers; no
  acknowledged write is lost;
- cut off the meta server: data keeps flowing (the primaries' leases are
  renewed by their peers, none of whom hears the meta server either:
  replication/peer_lease.h), nobody is declared failed (the meta server
  must not fail the whole cluster over because it is itself isolated), and
  after healing the epoch is the same;
- a bandwidth cap, then 5 % packet loss, on one data server's link: no
  false failover with the default detector settings; the replication
  throughput under each is printed next to the undisturbed one.

Skipped, with the reason, where network namespaces cannot be made (not
root, no nft). Each test takes 10-40 s.
"""

import os
import time

import pytest

from cluster import (ClusterError, cluster_support, failed_nodes,
                     fully_replicated, up_nodes)
from conftest import IS_FTM, clusters
import netns
from loadgen import Client, LoadGen, store_through

pytestmark = [
    pytest.mark.skipif(not IS_FTM, reason="partition tests need ftmemcached"),
    pytest.mark.partition,
]

FAILOVER_TIMEOUT = float(os.environ.get("FTM_FAILOVER_TIMEOUT", "10"))
RECOVERY_TIMEOUT = float(os.environ.get("FTM_RECOVERY_TIMEOUT", "60"))
MEMORY = ["-m", "256"]
# The cut tests run with a wider detector floor than the default 100 ms: on
# this shared 2-core host a server that has just joined (ring set-up,
# recovery) or the meta server itself stalls long enough now and then for
# a false failover while the cluster forms, which would move the primaries
# the test has chosen. The loss and rate test keeps the defaults (issue 7).
CUT_FLOOR_MS = os.environ.get("FTM_PARTITION_FLOOR_MS", "300")


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

    def build(**kw):
        kw.setdefault("server_args", MEMORY)
        return netns.NetCluster(net, **kw)

    yield from clusters(request, build)


def settled(c, timeout=30):
    """Waits until every partition has its copies and the epoch has not
    moved for a second (joins settle); returns that status."""
    last = [None, 0.0]

    def still(st):
        if st["epoch"] != last[0]:
            last[:] = [st["epoch"], time.monotonic()]
        return time.monotonic() - last[1] >= 1.0
    return c.wait_status(lambda st: fully_replicated(st) and still(st) and
                         len(up_nodes(st)) == c.n, timeout,
                         "the cluster to settle (fully replicated, epoch "
                         "unchanged for 1s)")


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


# Cut off from the meta server only, the primary still reaches its peers:
# they hear the meta server, so they do not vouch for it
# (replication/peer_lease.h), and it stops serving as if cut off from all.
@pytest.mark.parametrize("peers_too", [True, False],
                         ids=["from-meta-and-peers", "from-meta-only"])
def test_cut_off_primary_is_replaced_and_serves_nothing_stale(cluster, loads,
                                                              peers_too):
    c = cluster(n=3, meta_args=["--detector-floor", CUT_FLOOR_MS])
    net = c.net
    st = settled(c)
    victim = max(st["rows"], key=lambda n: st["rows"][n]["primaries"])
    mine = c.server(victim)
    others = [s for s in c.servers if s.node_id != victim]
    keys = c.keys_of([b"cut:%d" % i for i in range(400)], victim)[:40]
    assert len(keys) >= 10, keys
    store_through(c, [mine], {k: b"old-" + k for k in keys})
    lg = loads(LoadGen(c, keys=1000, threads=4, servers=others))
    time.sleep(0.5)
    before = c.status()
    keep = ("cl",) if peers_too else ("cl",) + tuple(
        "s%d" % o.node_id for o in others)
    t = net.cut("s%d" % victim, keep=keep)
    lg.event("cut node %d off from %s (clients still reach it)" % (
        victim, "everyone" if peers_too else "the meta server"), t)
    st = c.wait_failed(victim, before["epoch"], FAILOVER_TIMEOUT)
    print("node %d declared failed %.0f ms after the cut (epoch %d -> %d)" % (
        victim, (time.monotonic() - t) * 1000, before["epoch"], st["epoch"]))

    new = {k: b"new-" + k for k in keys}
    store_through(c, others, new)

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
    if not peers_too:
        # Its peers heard the meta server: they refused to vouch.
        assert "hears the metadata server" in mine.stderr(), mine.stderr()[-3000:]
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
    lg.verify(c).check()
    for s in c.servers:
        with Client(s.port, host=s.host) as conn:
            got, err = conn.get_multi(keys)
        assert err is None and got == new, \
            "after healing, node %d reads the cut-off node's keys as %r " \
            "(expected the values written during the cut)\n%s" % (
                s.node_id, err or {k: v for k, v in got.items()
                                   if new.get(k) != v}, c.logs())


def test_cut_off_meta_server_fails_nobody(cluster, loads):
    c = cluster(n=3, meta_args=["--detector-floor", CUT_FLOOR_MS])
    net = c.net
    settled(c)
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
    lg.verify(c).check()
    assert ok1 - ok0 > 100 and err1 == err0 and gap < 1.0, \
        "data stopped while the meta server was cut off (%d ok, %d errors, " \
        "%.3fs without a success)\n%s\n%s" % (
            ok1 - ok0, err1 - err0, gap, lg.report(), c.logs())
    # The leases were the peers' doing (replication/peer_lease.h).
    renewed = [s.node_id for s in c.servers
               if "lease renewed by the peers" in s.stderr()]
    assert renewed, "no server logged a peer-renewed lease\n" + c.logs()


def _write_rate(lg, seconds):
    """Acknowledged writes per second over the next `seconds`."""
    ok0 = lg.ok_count()
    t0 = time.monotonic()
    time.sleep(seconds)
    return (lg.ok_count() - ok0) / (time.monotonic() - t0)


def _failover_since(c, before):
    st = c.status()
    if failed_nodes(st) or st["epoch"] != before["epoch"]:
        return "epoch %d -> %d, failed nodes %s" % (
            before["epoch"], st["epoch"], failed_nodes(st))
    return None


VALUE_SIZE = 16384


def test_rate_cap_and_loss_cause_no_failover(cluster, loads):
    c = cluster(n=3)
    net = c.net
    try:
        before = settled(c)
    except ClusterError as e:
        raise AssertionError("the cluster did not settle with the default "
                             "detector settings: %s\n%s" % (e, c.logs()))
    log0 = len(c.meta_log())
    # Writes only: every request is one replication of VALUE_SIZE bytes.
    lg = loads(LoadGen(c, keys=500, threads=6, write_ratio=1.0,
                       value_size=VALUE_SIZE))
    time.sleep(0.5)
    rates = {}

    def phase(name, fault):
        if fault:
            lg.event(name)
            fault()
        rates[name] = _write_rate(lg, 4.0)
        net.heal("s2")
        time.sleep(0.3)
        r = rates[name]
        base = rates.get("undisturbed", r)
        print("replication throughput, %s: %.0f writes/s, %.1f MB/s (%.0f%% "
              "of undisturbed)" % (name, r, r * VALUE_SIZE / 1e6,
                                   100 * r / base if base else 0))
        return _failover_since(c, before)

    phase("undisturbed", None)
    failovers = []
    for name, fault in (("s2 capped at 20 Mbit/s", lambda: net.rate("s2",
                                                                    20000)),
                        ("5% loss on s2", lambda: net.loss("s2", 5))):
        bad = phase(name, fault)
        if bad is not None:
            failovers.append("%s: %s" % (name, bad))
            before = c.status()     # the next phase on its own account
    lg.stop()
    print(lg.report())
    # A lost segment stalls a heartbeat for tcp's retransmission timer (200
    # ms at least), past the detector's timeout: suspicions are expected,
    # and the suspicion timeout must clear every one of them.
    during = c.meta_log()[log0:]
    print("meta server during the faults: %d suspicions, %d held, %d "
          "cleared by a heartbeat" % (
              during.count(" suspected: "),
              during.count("NOT declaring"),
              during.count("heartbeats again: not declared failed")))
    assert not failovers, "false failover under a rate cap or loss with " \
        "the default detector settings: %s\n%s" % ("; ".join(failovers),
                                                    c.logs())
    lg.verify(c).check()
