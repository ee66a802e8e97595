"""A local ftmemcached cluster for the pytest suites (issue 5): one
ftmemcached-meta and N ftmemcached data servers joined to it with --meta,
all on free 127.0.0.1 ports over the tcp fabric provider.

    with LocalCluster(n=3) as c:     # or the `cluster` fixture in test_cluster
        c.servers[0].conn()          # a mc.Conn to data server 1
        c.ctl("digest")              # (rc, stdout, stderr) of ftmemcached-ctl
        c.status()                   # parsed `ftmemcached-ctl status`

Every wait is bounded and fails with the processes' logs attached; teardown
kills everything it started (data servers die with pytest, via
PR_SET_PDEATHSIG, even if teardown never runs).
"""

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time

from conftest import SERVER_BIN, free_port, start_server, _die_with_parent

BUILDDIR = os.path.abspath(os.environ.get("FTM_BUILDDIR", os.getcwd()))
META_BIN = os.path.join(BUILDDIR, "ftmemcached-meta")
CTL_BIN = os.path.join(BUILDDIR, "ftmemcached-ctl")

# How long a cluster may take to form (3 joins, 3 maps, ring set-up).
FORM_TIMEOUT = float(os.environ.get("FTM_CLUSTER_FORM_TIMEOUT", "30"))


class ClusterError(AssertionError):
    pass


def server_help():
    try:
        p = subprocess.run([SERVER_BIN, "-h"], capture_output=True,
                           text=True, timeout=10)
        return p.stdout + p.stderr
    except (OSError, subprocess.TimeoutExpired):
        return ""


def cluster_support():
    """None when the built binaries can run a cluster, else why not."""
    for b in (META_BIN, CTL_BIN):
        if not os.access(b, os.X_OK):
            return "%s not built" % b
    if "--meta" not in server_help():
        return "%s has no --meta flag (cluster mode not wired yet)" % SERVER_BIN
    return None


def ring_size_flag():
    """The data server's flag that sets the replication ring size, if any."""
    m = re.search(r"(--[a-z-]*ring[a-z-]*)", server_help())
    return m.group(1) if m else None


_ROW = re.compile(r"^(\d+)\s+(\w+)\s+(up|down|unknown)\S*\s*\S*\s+(\S+)\s+"
                  r"(\S+)\s+(\d+)\s+(\d+)\s+(.*)$")


def parse_status(out):
    head = re.search(r"epoch (\d+)\s+partitions (\d+)\s+copies (\d+)\s+"
                     r"servers (\d+)", out)
    if not head:
        raise ClusterError("unexpected status output:\n" + out)
    rows = {}
    for line in out.splitlines():
        m = _ROW.match(line)
        if m:
            rows[int(m.group(1))] = dict(
                state=m.group(2), conn=m.group(3), memcached=m.group(4),
                fabric=m.group(5), primaries=int(m.group(6)),
                secondaries=int(m.group(7)), replication=m.group(8).strip())
    return dict(epoch=int(head.group(1)), partitions=int(head.group(2)),
                copies=int(head.group(3)), servers=int(head.group(4)),
                rows=rows)


_DIGEST_ROW = re.compile(r"^(\d+)\s+(identical|differing|unknown|unassigned)"
                         r"((?:\s+\d+:\S+)*)\s*$")
_DIGEST_SUMMARY = re.compile(r"^partitions: (\d+), identical: (\d+), "
                             r"differing: (\d+)(.*)$", re.M)


def parse_digest(out):
    """{"summary": (partitions, identical, differing, rest), "rows": {p:
    (result, [(node, count or None, hash or None), ...])}}"""
    rows = {}
    for line in out.splitlines():
        m = _DIGEST_ROW.match(line)
        if not m:
            continue
        reps = []
        for col in m.group(3).split():
            f = col.split(":")
            if len(f) == 3:
                reps.append((int(f[0]), int(f[1]), f[2]))
            else:
                reps.append((int(f[0]), None, None))
        rows[int(m.group(1))] = (m.group(2), reps)
    s = _DIGEST_SUMMARY.search(out)
    summary = (int(s.group(1)), int(s.group(2)), int(s.group(3)),
               s.group(4).strip()) if s else None
    return dict(summary=summary, rows=rows)


_REPLICA_ROW = re.compile(r"^node (\d+) (primary|secondary) (\S+) (.*)$")
_REPLICA_HIT = re.compile(r"^hit flags (\d+) cas (\d+) exptime (-?\d+) "
                          r"bytes (\d+) value (\".*\")$")


def parse_get_replica(out):
    """[(node, role, "miss" | "error: ..." | dict(flags, cas, exptime,
    value))] in the order printed (primary first)."""
    import ast
    reps = []
    for line in out.splitlines():
        m = _REPLICA_ROW.match(line)
        if not m:
            continue
        rest = m.group(4)
        h = _REPLICA_HIT.match(rest)
        if h:
            # The ctl escapes like a C string; Python's bytes literal reads it.
            value = ast.literal_eval("b" + h.group(5))
            rest = dict(flags=int(h.group(1)), cas=int(h.group(2)),
                        exptime=int(h.group(3)), value=value)
        reps.append((int(m.group(1)), m.group(2), rest))
    return reps


class LocalCluster:
    """A meta server and `n` data servers. `server_args` go to every data
    server, `meta_args` to the meta server."""

    def __init__(self, n=3, copies=2, server_args=(), meta_args=(),
                 start=True):
        self.n = n
        self.copies = copies
        self.server_args = list(server_args)
        self.meta_args = list(meta_args)
        self.dir = tempfile.mkdtemp(prefix="ftm-cluster-")
        self.state_dir = os.path.join(self.dir, "meta-state")
        self.meta_port = free_port()
        self.meta = None
        self.meta_log_path = os.path.join(self.dir, "meta.log")
        self.servers = []   # conftest.Server, index i = node id i + 1
        self.died = []
        if start:
            try:
                self.start()
            except BaseException:
                self.close()
                raise

    # -- processes -------------------------------------------------------
    @property
    def meta_addr(self):
        return "127.0.0.1:%d" % self.meta_port

    def start(self):
        self.start_meta()
        for i in range(self.n):
            self.start_server(i + 1)
        self.wait_formed()

    def start_meta(self):
        log = open(self.meta_log_path, "a")
        cmd = [META_BIN, "--fabric", "tcp", "--listen", self.meta_addr,
               "--state-dir", self.state_dir, "--replicas",
               str(self.copies)] + self.meta_args
        self.meta = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                     stdout=log, stderr=subprocess.STDOUT,
                                     preexec_fn=_die_with_parent)
        log.close()
        self.wait_for(lambda: self.meta.poll() is not None or
                      self.ctl("status", timeout_ms=1000)[0] == 0,
                      15, "ftmemcached-meta to answer status")
        if self.meta.poll() is not None:
            raise ClusterError("ftmemcached-meta exited %s\n%s" % (
                self.meta.returncode, self.logs()))

    def stop_meta(self, sig=signal.SIGTERM, timeout=10):
        self.meta.send_signal(sig)
        try:
            rc = self.meta.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.meta.kill()
            self.meta.wait(timeout=5)
            raise ClusterError("ftmemcached-meta ignored signal %d for %ss"
                               % (sig, timeout))
        self.meta = None
        return rc

    def start_server(self, node_id, extra=()):
        args = ["--meta", self.meta_addr, "--node-id", str(node_id),
                "--fabric", "tcp", "--fabric-listen", "127.0.0.1"]
        s = start_server(SERVER_BIN, args + self.server_args + list(extra))
        s.node_id = node_id
        if node_id - 1 < len(self.servers):
            self.servers[node_id - 1] = s
        else:
            self.servers.append(s)
        return s

    @property
    def ports(self):
        return [s.port for s in self.servers]

    # -- waiting ---------------------------------------------------------
    def wait_for(self, pred, timeout, what):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                last = pred()
            except ClusterError as e:
                last = e
            else:
                if last:
                    return last
            time.sleep(0.05)
        raise ClusterError("timed out after %.0fs waiting for %s (last: %r)"
                           "\n%s" % (timeout, what, last, self.logs()))

    def formed(self, st):
        rows = st["rows"]
        return (st["servers"] == self.n and len(rows) == self.n and
                all(r["state"] == "up" and r["conn"] == "up"
                    for r in rows.values()) and
                all(r["primaries"] > 0 for r in rows.values()))

    def wait_formed(self, timeout=FORM_TIMEOUT):
        """Until status shows every server up and holding partitions, and
        every server answers a write for keys of every primary."""
        st = self.wait_for(lambda: (lambda s: s if self.formed(s) else None)(
            self.status()), timeout, "%d servers up in status" % self.n)
        probes = [b"__probe_%d" % i for i in range(32)]

        def all_serve():
            for s in self.servers:
                c = s.conn()
                try:
                    for k in probes:
                        r = c.set(k, b"p")
                        if r != b"STORED\r\n":
                            return "server %d: set %r -> %r" % (
                                s.node_id, k, r)
                finally:
                    c.close()
            return True

        def probe():
            r = all_serve()
            if r is not True:
                raise ClusterError(r)
            return True
        self.wait_for(probe, timeout, "every server to store probe keys")
        c = self.servers[0].conn()
        try:
            for k in probes:
                c.send(b"delete " + k + b"\r\n")
                c.readline()
        finally:
            c.close()
        return st

    def check_alive(self):
        for s in self.servers:
            if not s.stopped and not s.alive() and s not in self.died:
                self.died.append(s)
        if self.died:
            raise ClusterError("data server died: " + "; ".join(
                "node %d exited %s, stderr: %s" % (
                    s.node_id, s.proc.returncode, s.stderr()[-3000:])
                for s in self.died))

    # -- tools -----------------------------------------------------------
    def ctl(self, *args, timeout_ms=5000):
        p = subprocess.run([CTL_BIN, "--fabric", "tcp", "--meta",
                            self.meta_addr, "--timeout", str(timeout_ms)] +
                           list(args), capture_output=True, text=True,
                           timeout=timeout_ms / 1000.0 * 8 + 10)
        return p.returncode, p.stdout, p.stderr

    def status(self):
        rc, out, err = self.ctl("status", timeout_ms=2000)
        if rc != 0:
            raise ClusterError("ftmemcached-ctl status exited %d: %s"
                               % (rc, err))
        return parse_status(out)

    def digest(self):
        rc, out, err = self.ctl("digest")
        d = parse_digest(out)
        d.update(rc=rc, out=out, err=err)
        return d

    def get_replica(self, key):
        if isinstance(key, bytes):
            key = key.decode()
        rc, out, err = self.ctl("get-replica", "--", key)
        return rc, parse_get_replica(out), out + err

    def meta_log(self):
        try:
            with open(self.meta_log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def logs(self):
        parts = ["--- meta server log:\n" + self.meta_log()[-4000:]]
        for s in self.servers:
            parts.append("--- node %d (%s, exit %s) stderr:\n%s" % (
                s.node_id, " ".join(s.cmd), s.proc.poll(),
                s.stderr()[-4000:]))
        return "\n".join(parts)

    # -- teardown --------------------------------------------------------
    def close(self):
        for s in self.servers:
            if not s.stopped:
                try:
                    s.stop()
                except Exception:
                    pass
        if self.meta is not None and self.meta.poll() is None:
            self.meta.kill()
            try:
                self.meta.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
