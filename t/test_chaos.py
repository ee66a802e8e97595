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
    with LocalCluster(n=3, server_args=MEMORY) as c:
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
