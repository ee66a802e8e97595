"""Chaos run (issue 7): FTM_CHAOS_SECONDS (default 60) of random faults of
one data server at a time (SIGKILL, a SIGSTOP until replaced, a SIGSTOP
shorter than the failure detector's timeout) on a 3-server cluster under
load through every live server, recovery finished before each next fault
(t/chaos.py says exactly what is allowed). Zero acknowledged writes lost:
every read during the run, and a final read of every key through every
live server, returns the key's last acknowledged value or a value attempted
after it. Prints the counts (operations, kills, stops, acknowledged and
attempted-unacknowledged writes, lost, longest stall); bench/chaos.py runs
the same driver for 10 minutes.
"""

import os
import signal
import time

import pytest

from chaos import Chaos
from cluster import LocalCluster, cluster_support
from conftest import IS_FTM, TEST_TIMEOUT
from loadgen import LoadGen

pytestmark = pytest.mark.skipif(
    not IS_FTM, reason="the chaos run needs ftmemcached (server under test "
                       "is not ftmemcached)")

CHAOS_SECONDS = float(os.environ.get("FTM_CHAOS_SECONDS", "60"))
CHAOS_SEED = int(os.environ.get("FTM_CHAOS_SEED", "0")) or None
# Bulk data stored before the run, so each recovery copies a snapshot while
# the load's writes are held and replayed (and is verified at the end too).
CHAOS_MB = float(os.environ.get("FTM_CHAOS_MB", "20"))
FAILOVER_TIMEOUT = float(os.environ.get("FTM_FAILOVER_TIMEOUT", "10"))
# Every server gets room for all the data: an eviction would look like loss.
MEMORY = ["-m", "256"]
# The meta server's --detector-floor (ms). Its default, 100, is for hosts
# whose threads never stall that long; on 2 busy cores (make -j2 next to
# the suite) a data server's threads stall over 100 ms now and then, and
# each such stall is a failover the driver did not cause. The driver
# settles after those too, but one that strikes the server holding a
# partition's only complete copy while its new secondary still recovers
# loses that partition's writes, exactly as a second crash would (the
# cluster keeps 2 copies; see t/chaos.py). The man page's advice for such
# hosts: raise the floor. (Stalls of the meta server itself, every server
# silent at once, no longer fail anyone: replication/failure_monitor.h.)
DETECTOR_FLOOR = int(os.environ.get("FTM_CHAOS_DETECTOR_FLOOR", "500"))
# Set-up, the last fault's recovery and the final reads, on a busy host.
SLACK = 90


def test_chaos_loses_no_acknowledged_write():
    why = cluster_support()
    if why is not None:
        pytest.skip("cannot run a cluster: " + why)
    # This one test runs longer than the suite's per-test limit by design.
    signal.alarm(max(TEST_TIMEOUT, int(CHAOS_SECONDS + SLACK)))
    seed = CHAOS_SEED or int(time.time()) % 100000
    print("chaos seed %d (FTM_CHAOS_SEED=%d repeats the faults' order)"
          % (seed, seed))
    with LocalCluster(n=3, server_args=MEMORY, meta_args=[
            "--detector-floor=%d" % DETECTOR_FLOOR]) as c:
        lg = LoadGen(c, keys=2000, threads=6, seed=seed)
        if CHAOS_MB > 0:
            lg.preload(int(CHAOS_MB * 1e6), value_size=4000)
        ch = Chaos(c, lg, seed=seed, failover_timeout=FAILOVER_TIMEOUT)
        try:
            lg.start()
            ch.run(CHAOS_SECONDS)
        finally:
            lg.stop()
        v = lg.verify(c)
        print(ch.report(v))
        v.check("\n" + ch.report(v))
        kills = ch.counts["kill"] + ch.counts["long stop"]
        assert kills >= 2 and ch.counts["short stop"] + kills >= 3, \
            "too few faults in %.0fs to call it a chaos run:\n%s\n%s" % (
                CHAOS_SECONDS, ch.report(v), lg.report())
        acked, _ = lg.write_counts()
        assert acked > 1000, ch.report(v)
        c.check_alive()


class _OneServer:
    """The part of LocalCluster that LoadGen uses, for a plain server."""

    def __init__(self, s):
        s.node_id = 1
        self.servers = [s]

    def live_servers(self):
        return self.servers

    def logs(self):
        return self.servers[0].stderr()[-2000:]


def test_checker_catches_lost_writes(server):
    """The record and its checks can fail: keys deleted behind the load's
    back are misses during the run and lost in the final read; an older
    value of a key is stale (lost), a foreign one not allowed either."""
    from loadgen import Client, STORED
    one = _OneServer(server)
    lg = LoadGen(one, keys=40, threads=2, seed=3, servers=one.servers)
    lg.start()
    try:
        deadline = time.monotonic() + 10
        while lg.write_counts()[0] < 200 and time.monotonic() < deadline:
            time.sleep(0.02)
        victims = [k for k in lg.keys if lg.log[k].acked is not None][:5]
        assert len(victims) == 5, lg.report()
        with Client(server.port) as c:
            # Deleted again and again: some read of the load sees a miss.
            while not lg.bad_reads() and time.monotonic() < deadline:
                for k in victims:
                    c.send(b"delete %s\r\n" % k)
                    c.readline()
    finally:
        lg.stop()
    assert any(p.kind == "miss during load" for p in lg.bad_reads()), \
        lg.report()
    with Client(server.port) as c:
        c.send(b"delete %s\r\n" % victims[0])
        c.readline()
        assert c.set(victims[1], b"k999-9-9") == STORED
        # A value of this key's own form that is not the last acknowledged
        # one nor attempted after it: an older write come back.
        older = b"k%s-0-0" % victims[2].rsplit(b":", 1)[1]
        assert c.set(victims[2], older) == STORED
    v = lg.verify(one)
    kinds = {(p.key, p.kind) for p in v.problems}
    assert (victims[0], "lost") in kinds, v.summary()
    assert (victims[1], "unknown value") in kinds, v.summary()
    assert (victims[2], "stale") in kinds, v.summary()
    assert victims[0] in v.lost and victims[2] in v.lost
    with pytest.raises(AssertionError):
        v.check()
