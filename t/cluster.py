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
_SUMMARY = re.compile(r"^partitions: (\d+) fully replicated, "
                      r"(?:(\d+) recovering[^,]*, )?(\d+) degraded"
                      r".*?, (\d+) without a primary", re.M)
_HEARTBEAT_ROW = re.compile(r"^(\d+)\s+([\d.]+)ms\s+([\d.]+)ms\s+([\d.]+)\s+"
                            r"(\d+)\s+(.*)$")

# How status says that a copy is still being made after a failure (issue 6:
# a partition's new secondary recovering its data from the primary). The
# wording is the meta server's to choose; it lives here only, so the tests
# follow it in one place. It is looked for in a server row's state and
# replication columns and in any line of its own that starts with
# "recovery" (e.g. "recovery: 120 of 683 partitions copied").
RECOVERING = re.compile(r"\b(recovering|recovery in progress|catching up|"
                        r"copying|degraded)\b", re.I)
# A "recovery..." line that says nothing is under way.
RECOVERY_IDLE = re.compile(r"\b(none|idle|done|finished|complete|n/a)\b",
                           re.I)


def parse_status(out):
    """`ftmemcached-ctl status` as a dict: epoch, partitions, copies,
    servers; rows {node: state, conn, memcached, fabric, primaries,
    secondaries, replication}; summary {fully, degraded, unassigned} (None
    if absent); heartbeats {node: age_ms, timeout_ms, suspicion, false,
    verdict} (empty if the section is absent); recovery, the lines that
    start with "recovery"; out, the text itself."""
    head = re.search(r"epoch (\d+)\s+partitions (\d+)\s+copies (\d+)\s+"
                     r"servers (\d+)", out)
    if not head:
        raise ClusterError("unexpected status output:\n" + out)
    main, _, hb = out.partition("\nheartbeats:\n")
    rows = {}
    for line in main.splitlines():
        m = _ROW.match(line)
        if m:
            rows[int(m.group(1))] = dict(
                state=m.group(2), conn=m.group(3), memcached=m.group(4),
                fabric=m.group(5), primaries=int(m.group(6)),
                secondaries=int(m.group(7)), replication=m.group(8).strip())
    heartbeats = {}
    for line in hb.splitlines():
        m = _HEARTBEAT_ROW.match(line)
        if m:
            heartbeats[int(m.group(1))] = dict(
                age_ms=float(m.group(2)), timeout_ms=float(m.group(3)),
                suspicion=float(m.group(4)), false=int(m.group(5)),
                verdict=m.group(6).strip())
    s = _SUMMARY.search(main)
    summary = dict(fully=int(s.group(1)), recovering=int(s.group(2) or 0),
                   degraded=int(s.group(3)),
                   unassigned=int(s.group(4))) if s else None
    recovery = [l for l in main.splitlines()
                if l.lower().startswith("recover")]
    return dict(epoch=int(head.group(1)), partitions=int(head.group(2)),
                copies=int(head.group(3)), servers=int(head.group(4)),
                rows=rows, summary=summary, heartbeats=heartbeats,
                recovery=recovery, out=out)


def recovery_in_progress(st):
    """Whether status shows a copy being made (see RECOVERING)."""
    for r in st["rows"].values():
        if r["state"] == "failed":
            continue
        if RECOVERING.search(r["state"]) or RECOVERING.search(
                r["replication"]):
            return True
    return any(RECOVERING.search(l) or not RECOVERY_IDLE.search(l)
               for l in st["recovery"])


def fully_replicated(st):
    """Every partition has its copies and no recovery is under way."""
    s = st["summary"]
    return (s is not None and s["degraded"] == 0 and s["unassigned"] == 0
            and s["fully"] == st["partitions"] and
            not recovery_in_progress(st))


def failed_nodes(st):
    return sorted(n for n, r in st["rows"].items() if r["state"] == "failed")


def up_nodes(st):
    return sorted(n for n, r in st["rows"].items()
                  if r["state"] == "up" and r["conn"] == "up")


_xxh3 = None


def partition_of(key, partitions):
    """A key's partition, XXH3_64bits(key) % partitions, as the servers
    compute it (replication/partition_map.h), through Debian's libxxhash;
    None when that library cannot be loaded."""
    global _xxh3
    if _xxh3 is None:
        import ctypes
        import ctypes.util
        try:
            lib = ctypes.CDLL(ctypes.util.find_library("xxhash") or
                              "libxxhash.so.0")
            f = lib.XXH3_64bits
            f.restype = ctypes.c_uint64
            f.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
            _xxh3 = f
        except (OSError, AttributeError):
            _xxh3 = False
    if not _xxh3:
        return None
    if isinstance(key, str):
        key = key.encode()
    return _xxh3(key, len(key)) % partitions


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


def _proc_state(pid):
    """The state letter of /proc/PID/stat (R, S, T, ...), None if gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


class LocalCluster:
    """A meta server and `n` data servers. `server_args` go to every data
    server, `meta_args` to the meta server. `secret_file`: passed as
    --cluster-secret-file to the meta server, every data server and every
    ftmemcached-ctl run (None: an open cluster)."""

    def __init__(self, n=3, copies=2, server_args=(), meta_args=(),
                 start=True, secret_file=None):
        self.n = n
        self.secret_args = (["--cluster-secret-file", secret_file]
                            if secret_file else [])
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
        # The n servers started together form the cluster: they share the
        # primaries; servers added later take secondaries only.
        boot = [] if any(a.startswith("--bootstrap-servers")
                         for a in self.meta_args) else [
            "--bootstrap-servers=%d" % self.n]
        cmd = self.command_prefix("meta") + [
            META_BIN, "--fabric", "tcp", "--listen", self.meta_addr,
            "--state-dir", self.state_dir, "--replicas",
            str(self.copies)] + boot + self.secret_args + list(self.meta_args)
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

    # Where the processes run: a subclass (t/netns.py) puts each on a host
    # of its own; here all of them share 127.0.0.1.
    def command_prefix(self, host):
        """What goes before a binary to run it on `host` ("meta", "s1"...)."""
        return []

    def server_host(self, node_id):
        """The address data server `node_id` listens on (clients, fabric)."""
        return "127.0.0.1"

    def server_port(self, node_id):
        """Its memcached port (None: a free one)."""
        return None

    def start_server(self, node_id, extra=()):
        host = self.server_host(node_id)
        args = ["--meta", self.meta_addr, "--node-id", str(node_id),
                "--fabric", "tcp", "--fabric-listen", host] + self.secret_args
        s = start_server(SERVER_BIN, args + self.server_args + list(extra),
                         host=host, port=self.server_port(node_id),
                         prefix=self.command_prefix("s%d" % node_id))
        s.node_id = node_id
        if node_id - 1 < len(self.servers):
            self.servers[node_id - 1] = s
        else:
            self.servers.append(s)
        return s

    def server(self, node_id):
        return self.servers[node_id - 1]

    def live_servers(self):
        """Data servers running and not stopped by a signal (SIGSTOP)."""
        return [s for s in self.servers if not s.stopped and s.alive()
                and not getattr(s, "paused", False)]

    def kill_server(self, node_id, sig=signal.SIGKILL):
        """Send `sig` to a data server and reap it; returns the
        time.monotonic() just before the signal. It is then no longer
        expected to be alive (check_alive, teardown)."""
        s = self.server(node_id)
        s.stopped = True
        t = time.monotonic()
        s.proc.send_signal(sig)
        try:
            s.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            s.proc.kill()
            s.proc.wait(timeout=5)
            raise ClusterError("node %d ignored signal %d for 10s"
                               % (node_id, sig))
        return t

    def pause_server(self, node_id):
        """SIGSTOP a data server, once the kernel shows it stopped; returns
        the time.monotonic() just before the signal."""
        s = self.server(node_id)
        s.paused = True
        t = time.monotonic()
        s.proc.send_signal(signal.SIGSTOP)
        self.wait_for(lambda: _proc_state(s.proc.pid) in ("T", "t", None),
                      5, "node %d to stop after SIGSTOP" % node_id)
        return t

    def resume_server(self, node_id):
        s = self.server(node_id)
        s.proc.send_signal(signal.SIGCONT)
        s.paused = False

    def add_server(self, extra=()):
        """Start one more data server, with the next node id; it joins the
        running cluster (no waiting here: see wait_status)."""
        return self.start_server(len(self.servers) + 1, extra)

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

    def wait_status(self, pred, timeout, what):
        """Poll `ftmemcached-ctl status` until pred(parsed status) holds;
        returns that status. A status the meta server cannot give (it is
        down, restarting) counts as not yet."""
        last = [None]

        def probe():
            try:
                st = self.status()
            except (ClusterError, subprocess.TimeoutExpired) as e:
                raise ClusterError("status: %s" % str(e)[:300])
            last[0] = st
            return st if pred(st) else None
        try:
            return self.wait_for(probe, timeout, what)
        except ClusterError as e:
            if last[0] is None:
                raise
            head, _, rest = str(e).partition("\n")
            raise ClusterError("%s\nlast status:\n%s%s" % (
                head, last[0]["out"], rest)) from None

    def wait_failed(self, node_id, above_epoch, timeout):
        """Until status shows `node_id` failed at an epoch above
        `above_epoch`."""
        return self.wait_status(
            lambda st: st["epoch"] > above_epoch and
            st["rows"].get(node_id, {}).get("state") == "failed", timeout,
            "node %d in state failed at an epoch above %d"
            % (node_id, above_epoch))

    def wait_fully_replicated(self, timeout, up=None):
        """Until status shows every partition with all its copies, no
        recovery under way and (if given) exactly `up` servers up."""
        return self.wait_status(
            lambda st: fully_replicated(st) and
            (up is None or len(up_nodes(st)) == up), timeout,
            "every partition fully replicated, recovery finished%s" % (
                "" if up is None else ", %d servers up" % up))

    def wait_recovering(self, timeout):
        """Until status shows a recovery under way (RECOVERING)."""
        return self.wait_status(recovery_in_progress, timeout,
                                "status to show a recovery in progress")

    def placement(self):
        """{partition: [node, ...]} primary first, from `ftmemcached-ctl
        digest` (which names each partition's replicas even when one cannot
        answer)."""
        d = self.digest()
        if not d["rows"]:
            raise ClusterError("digest gave no partitions: rc %d\n%s%s"
                               % (d["rc"], d["out"][-2000:], d["err"]))
        return {p: [n for n, _, _ in reps]
                for p, (_, reps) in d["rows"].items()}

    def key_partitions(self, keys, partitions):
        """{key: partition}: computed (partition_of), checked against
        get-replica for a few keys; get-replica for every key when libxxhash
        cannot be loaded (slow: one ctl run per key)."""
        out = {}
        if partition_of(b"x", partitions) is not None:
            out = {k: partition_of(k, partitions) for k in keys}
            for k in list(keys)[:3]:
                got = self._ctl_partition(k)
                if got != out[k]:
                    raise ClusterError("key %r: computed partition %r, "
                                       "get-replica says %r" % (k, out[k],
                                                                got))
            return out
        return {k: self._ctl_partition(k) for k in keys}

    def keys_of(self, keys, node_id, role="primary", placement=None):
        """The keys whose partition has `node_id` as primary (role
        "primary"), as a secondary ("secondary") or either ("replica"), in
        `placement` (default: the current one)."""
        pl = placement if placement is not None else self.placement()
        parts = self.key_partitions(keys, len(pl))

        def held(p):
            reps = pl.get(p, [])
            if role == "primary":
                return reps[:1] == [node_id]
            if role == "secondary":
                return node_id in reps[1:]
            return node_id in reps
        return [k for k in keys if held(parts[k])]

    def _ctl_partition(self, key):
        if isinstance(key, bytes):
            key = key.decode()
        rc, out, err = self.ctl("get-replica", "--", key)
        m = re.search(r"partition (\d+)", out)
        if not m:
            raise ClusterError("get-replica %r: no partition in %r" % (
                key, out + err))
        return int(m.group(1))

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
                           self.secret_args + list(args), capture_output=True, text=True,
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
