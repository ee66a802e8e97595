"""What the failover and detector tests share (t/test_failover.py,
t/test_detector.py): their time bounds, the cluster fixture with the kill
tests' detector floor, and helpers to kill a server and report the load's
longest stall."""

import os
import signal
import subprocess
import time

import pytest

from cluster import ClusterError, LocalCluster, cluster_support
from conftest import clusters

# A SIGKILLed server is suspected in ~25-40 ms with the default detector;
# this bounds detection plus the new map on a loaded host.
FAILOVER_TIMEOUT = float(os.environ.get("FTM_FAILOVER_TIMEOUT", "10"))
RECOVERY_TIMEOUT = float(os.environ.get("FTM_RECOVERY_TIMEOUT", "60"))
# The kill tests' detector floor (ms; None: the default 100). In CI the
# pytest suites share 2 cores with the unit tests (make -j2 check), and a
# surviving server's heartbeat gap over 105 ms there (seen: right after a
# recovery) is a false failover on top of the test's own kill, which loses
# the partitions whose only copy it held: a double failure, not the
# behaviour under test. The defaults are measured in bench/failover.py and
# t/test_detector.py keeps them.
FLOOR_MS = int(os.environ.get("FTM_FAILOVER_FLOOR_MS", "300")) or None
# Every server gets room for all the data: an eviction would look like loss.
MEMORY = ["-m", "1024"]


@pytest.fixture
def make_cluster(request):
    why = cluster_support()
    if why is not None:
        pytest.skip("cannot run a cluster: " + why)

    def build(floor_ms=FLOOR_MS, **kw):
        kw.setdefault("server_args", MEMORY)
        if floor_ms is not None:
            kw["meta_args"] = ["--detector-floor=%d" % floor_ms] + list(
                kw.get("meta_args", ()))
        return LocalCluster(**kw)

    # Every copy complete before the test's faults: a false failover while
    # a busy host formed the cluster leaves a server recovering, and a kill
    # then would be a second failure.
    yield from clusters(
        request, build, lambda c: c.wait_fully_replicated(RECOVERY_TIMEOUT))


def kill_and_wait_failed(c, lg, node, sig=signal.SIGKILL):
    """SIGKILL (or SIGSTOP) `node`, until status shows it failed at a
    higher epoch; returns (signal time, status)."""
    before = c.status()
    assert before["rows"][node]["primaries"] > 0, before["out"]
    if sig == signal.SIGSTOP:
        t = c.pause_server(node)
    else:
        t = c.kill_server(node, sig)
    lg.event("signal %d to node %d" % (sig, node), t)
    lg.mark(t)
    try:
        st = c.wait_failed(node, before["epoch"], FAILOVER_TIMEOUT)
    except ClusterError as e:
        raise AssertionError("%s\n%s" % (e, lg.report()))
    lg.event("status: node %d failed, epoch %d -> %d" % (
        node, before["epoch"], st["epoch"]))
    print("node %d declared failed %.0f ms after signal %d (epoch %d -> %d)"
          % (node, (time.monotonic() - t) * 1000, sig, before["epoch"],
             st["epoch"]))
    return t, st


def print_stall(lg, t_kill=None):
    lat, desc = lg.longest_request()
    gap, a, b = lg.longest_gap()
    print("longest request %.3fs (%s); longest time without a success "
          "%.3fs (+%.3fs to +%.3fs)" % (lat, desc, gap, a - lg.t_start,
                                        b - lg.t_start))
    print(lg.report())


def realtime_allowed():
    """Whether this process may use SCHED_FIFO (the heartbeat writer and
    the meta server's fabric progress ask for it, best effort)."""
    probe = ("import os; os.sched_setscheduler(0, os.SCHED_FIFO, "
             "os.sched_param(1))")
    return subprocess.run(["/usr/bin/python3", "-c", probe],
                          capture_output=True).returncode == 0
