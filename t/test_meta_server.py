"""ftmemcached-meta and `ftmemcached-ctl status` (issue 5): flags, status
output, and a meta server restart that keeps the map and its epoch.

Runs the binaries from $FTM_BUILDDIR over the tcp fabric provider on
127.0.0.1. Stand-in data servers are t/unit_cluster re-executed with
FTM_MEMBER_HELPER set (see t/unit/meta_server_test.cc): they join through
the real membership client. Every wait is bounded.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

BUILDDIR = os.path.abspath(os.environ.get("FTM_BUILDDIR", os.getcwd()))
META = os.path.join(BUILDDIR, "ftmemcached-meta")
CTL = os.path.join(BUILDDIR, "ftmemcached-ctl")
HELPER = os.path.join(BUILDDIR, "t", "unit_cluster")

pytestmark = pytest.mark.skipif(
    not (os.access(META, os.X_OK) and os.access(CTL, os.X_OK)),
    reason="ftmemcached-meta/ftmemcached-ctl not built in %s" % BUILDDIR)

EX_USAGE = 64


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ctl(port, *args, timeout_ms=3000):
    p = subprocess.run([CTL, "--fabric", "tcp", "--meta",
                        "127.0.0.1:%d" % port, "--timeout", str(timeout_ms)]
                       + list(args), capture_output=True, text=True,
                       timeout=timeout_ms / 1000 + 10)
    return p.returncode, p.stdout, p.stderr


ROW = re.compile(r"^(\d+)\s+(\w+)\s+(up|down|unknown)\S*\s*\S*\s+(\S+)\s+(\S+)"
                 r"\s+(\d+)\s+(\d+)\s+(.*)$")


def parse_status(out):
    head = re.search(r"epoch (\d+)\s+partitions (\d+)\s+copies (\d+)\s+"
                     r"servers (\d+)", out)
    assert head, out
    rows = {}
    for line in out.splitlines():
        m = ROW.match(line)
        if m:
            rows[int(m.group(1))] = dict(
                state=m.group(2), conn=m.group(3), memcached=m.group(4),
                fabric=m.group(5), primaries=int(m.group(6)),
                secondaries=int(m.group(7)), replication=m.group(8).strip())
    return dict(epoch=int(head.group(1)), partitions=int(head.group(2)),
                copies=int(head.group(3)), servers=int(head.group(4)),
                rows=rows)


def wait_for(pred, timeout, what):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(0.05)
    pytest.fail("timed out after %.0fs waiting for %s (last: %r)"
                % (timeout, what, last))


class Cluster:
    """A meta server on a fixed port and state dir, plus member helpers."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="ftm-meta-py-")
        self.state = os.path.join(self.dir, "state")
        self.port = free_port()
        self.meta = None
        self.members = []

    def start_meta(self, *extra):
        log = open(os.path.join(self.dir, "meta.log"), "a")
        self.meta = subprocess.Popen(
            [META, "--fabric", "tcp", "--listen", "127.0.0.1:%d" % self.port,
             "--state-dir", self.state] + list(extra),
            stdout=log, stderr=subprocess.STDOUT)
        log.close()
        wait_for(lambda: self.meta.poll() is not None or
                 ctl(self.port, "status", timeout_ms=1000)[0] == 0,
                 15, "ftmemcached-meta to answer status")
        assert self.meta.poll() is None, self.meta_log()

    def stop_meta(self, sig=signal.SIGTERM):
        self.meta.send_signal(sig)
        rc = self.meta.wait(timeout=10)
        self.meta = None
        return rc

    def add_member(self, n):
        env = dict(os.environ, FTM_MEMBER_HELPER="127.0.0.1:%d" % self.port,
                   FTM_MEMBER_MC="127.0.0.1:%d" % (21210 + n))
        err = open(os.path.join(self.dir, "member%d.log" % n), "w")
        self.members.append(subprocess.Popen(
            [HELPER], env=env, stdout=subprocess.DEVNULL, stderr=err))
        err.close()

    def status(self):
        rc, out, err = ctl(self.port, "status")
        assert rc == 0, err
        return parse_status(out)

    def meta_log(self):
        with open(os.path.join(self.dir, "meta.log")) as f:
            return f.read()

    def close(self):
        for p in self.members + ([self.meta] if self.meta else []):
            if p.poll() is None:
                p.kill()
            p.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def cluster():
    c = Cluster()
    yield c
    c.close()


def test_usage_errors_exit_64_naming_the_flag(tmp_path):
    for args, flag in ((["--replicas", "4"], "--replicas"),
                       (["--partitions", "0"], "--partitions"),
                       (["--listen", "nohost"], "--listen"),
                       (["--fabric", "ib"], "--fabric"),
                       (["--bogus"], "--bogus")):
        p = subprocess.run([META, "--state-dir", str(tmp_path)] + args,
                           capture_output=True, text=True, timeout=10)
        assert p.returncode == EX_USAGE, (args, p.stderr)
        first = p.stderr.splitlines()[0]
        assert first.startswith("ftmemcached-meta: ") and flag in first, first
        assert "Usage:" in p.stderr
    p = subprocess.run([META, "-V"], capture_output=True, text=True,
                       timeout=10)
    assert p.returncode == 0 and p.stdout.startswith("ftmemcached-meta ")
    p = subprocess.run([META, "-h"], capture_output=True, text=True,
                       timeout=10)
    assert p.returncode == 0 and "--state-dir" in p.stdout
    for args in ([], ["frobnicate"], ["--meta", "x", "status"]):
        p = subprocess.run([CTL] + args, capture_output=True, text=True,
                           timeout=10)
        assert p.returncode == EX_USAGE, (args, p.stderr)


def test_ctl_reports_an_unreachable_meta_server():
    rc, out, err = ctl(free_port(), "status", timeout_ms=1000)
    assert rc not in (0, EX_USAGE)
    assert "cannot reach meta server" in err


def test_status_of_a_new_cluster(cluster):
    cluster.start_meta("--partitions", "256", "--replicas", "3")
    st = cluster.status()
    assert (st["epoch"], st["partitions"], st["copies"], st["servers"]) == \
        (0, 256, 3, 0)
    rc, out, _ = ctl(cluster.port, "status")
    assert "256 without a primary" in out
    assert "0 recovering" in out and "recovery: none under way" in out


@pytest.mark.skipif(not os.access(HELPER, os.X_OK),
                    reason="t/unit_cluster (member helper) not built")
@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL],
                         ids=["sigterm", "sigkill"])
def test_restart_keeps_map_and_epoch(cluster, how):
    cluster.start_meta()
    for n in range(1, 4):
        cluster.add_member(n)
    st = wait_for(lambda: (lambda s: s if s["servers"] == 3 and all(
        r["conn"] == "up" for r in s["rows"].values()) else None)(
            cluster.status()), 20, "3 servers joined")
    assert st["epoch"] == 3, st
    assert st["partitions"] == 1024 and st["copies"] == 2
    rows = st["rows"]
    assert sorted(rows) == [1, 2, 3]
    assert sorted(r["memcached"] for r in rows.values()) == \
        ["127.0.0.1:%d" % (21210 + n) for n in (1, 2, 3)]
    for r in rows.values():
        assert r["state"] == "up" and r["replication"] == "n/a"
        assert 341 <= r["primaries"] <= 342
        assert 341 <= r["secondaries"] <= 342

    cluster.stop_meta(how)
    rc, _, err = ctl(cluster.port, "status", timeout_ms=1000)
    assert rc != 0

    cluster.start_meta()
    again = cluster.status()
    # Straight from disk, before anyone reconnected.
    assert again["epoch"] == 3, (again, cluster.meta_log())
    assert {n: (r["memcached"], r["fabric"], r["primaries"], r["secondaries"])
            for n, r in again["rows"].items()} == \
        {n: (r["memcached"], r["fabric"], r["primaries"], r["secondaries"])
         for n, r in rows.items()}
    # The members come back with their node ids; nothing changed, so the
    # epoch stays.
    after = wait_for(lambda: (lambda s: s if all(
        r["conn"] == "up" for r in s["rows"].values()) else None)(
            cluster.status()), 20, "members to reconnect")
    assert after["epoch"] == 3 and after["servers"] == 3, after
    assert all(p.poll() is None for p in cluster.members)
    assert "reconnected" in cluster.meta_log()


def test_partition_count_is_fixed_for_the_cluster(cluster):
    cluster.start_meta("--partitions", "128")
    cluster.stop_meta()
    p = subprocess.run([META, "--fabric", "tcp", "--listen",
                        "127.0.0.1:%d" % cluster.port, "--state-dir",
                        cluster.state, "--partitions", "256"],
                       capture_output=True, text=True, timeout=15)
    assert p.returncode == EX_USAGE, p.stderr
    assert "--partitions 256 conflicts with the 128 partitions" in p.stderr
    cluster.start_meta()  # no flag: the state dir's count
    assert cluster.status()["partitions"] == 128
