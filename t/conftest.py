"""Fixtures that start memcached-compatible servers for the suites.

Environment:
  FTM_SERVER     binary under test (default: $FTM_BUILDDIR/ftmemcached)
  FTM_BUILDDIR   build directory holding ftmemcached (default: current dir)
  FTM_REFERENCE  stock memcached used for side-by-side tests
                 (default: /usr/bin/memcached)
  FTM_TEST_TIMEOUT  per-test wall-clock limit in seconds (default: 120)
  FTM_LONG       1: also run the tests marked `long` (a minute or more each)
"""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from mc import Conn  # noqa: E402


def _server_path():
    env = os.environ.get("FTM_SERVER")
    if env:
        return os.path.abspath(env)
    builddir = os.environ.get("FTM_BUILDDIR", os.getcwd())
    return os.path.abspath(os.path.join(builddir, "ftmemcached"))


SERVER_BIN = _server_path()
REFERENCE_BIN = os.environ.get("FTM_REFERENCE", "/usr/bin/memcached")
# Tests marked `long` run only when this is set (see pytest_configure).
LONG = os.environ.get("FTM_LONG") == "1"


def _version_line(binary):
    try:
        p = subprocess.run([binary, "-V"], capture_output=True, timeout=10)
        return (p.stdout + p.stderr).decode(errors="replace").strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def _is_ftmemcached(binary):
    if "ftmemcached" in os.path.basename(os.path.realpath(binary)):
        return True
    return "ftmemcached" in _version_line(binary).lower()


IS_FTM = os.path.exists(SERVER_BIN) and _is_ftmemcached(SERVER_BIN)

# Marks tests that check what ftmemcached promises beyond stock memcached
# (issue 2), e.g. exit status 64 on an unknown flag.
ftm_only = pytest.mark.skipif(
    not IS_FTM, reason="ftmemcached-specific expectation; server under test "
                       "is not ftmemcached")


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "slow: test takes several seconds (expiry, eviction)")
    config.addinivalue_line(
        "markers", "long: test takes a minute or more; skipped unless "
                   "FTM_LONG=1 (CI: FTM_LONG=1 t/run-pytest.sh -m long)")
    config.addinivalue_line(
        "markers", "partition: runs the cluster in network namespaces "
                   "(t/netns.py); skipped where they cannot be made")


def pytest_report_header(config):
    return ["server under test: %s (%s)" % (SERVER_BIN, _version_line(
        SERVER_BIN) or "missing"),
            "reference: %s" % REFERENCE_BIN]


def pytest_collection_modifyitems(config, items):
    if not os.path.exists(SERVER_BIN):
        raise pytest.UsageError(
            "server binary %s not found: build ftmemcached, or set "
            "FTM_BUILDDIR to the build directory or FTM_SERVER to a "
            "memcached-compatible binary" % SERVER_BIN)
    if not LONG:
        skip = pytest.mark.skip(reason="long test: set FTM_LONG=1 to run it")
        for item in items:
            if "long" in item.keywords:
                item.add_marker(skip)


# -- per-test wall-clock limit: no test can hang the suite ----------------
TEST_TIMEOUT = int(os.environ.get("FTM_TEST_TIMEOUT", "120"))


class TestTimeout(Exception):
    pass


def _alarm(signum, frame):
    raise TestTimeout("test exceeded %d s" % TEST_TIMEOUT)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(TEST_TIMEOUT)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


# -- ports ----------------------------------------------------------------
def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago (and whose UDP
    twin too)."""
    for _ in range(50):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            u.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            u.close()
        return port
    raise RuntimeError("no free port found")


# -- servers --------------------------------------------------------------
def _die_with_parent():
    """In the child before exec: SIGKILL it if pytest dies, so a killed test
    run leaves no server behind (Linux prctl PR_SET_PDEATHSIG)."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


class Server:
    """One server process on host:port (127.0.0.1 by default) or a UNIX
    socket. `prefix` goes before the binary on the command line (t/netns.py
    starts servers with `ip netns exec NAMESPACE`); the process must exec
    the binary, so that signals reach the server itself."""

    def __init__(self, binary, args=(), port=None, unix_path=None,
                 wait=True, default_args=True, host="127.0.0.1", prefix=()):
        self.binary = binary
        self.port = port
        self.host = host
        self.unix_path = unix_path
        self.errfile = tempfile.TemporaryFile()
        self.outfile = tempfile.TemporaryFile()
        cmd = list(prefix) + [binary]
        if default_args:
            if unix_path is None:
                if self.port is None:
                    self.port = free_port()
                cmd += ["-p", str(self.port), "-l", self.host]
                if "-U" not in args:
                    cmd += ["-U", "0"]
            else:
                cmd += ["-s", unix_path]
            if os.geteuid() == 0 and "-u" not in args:
                cmd += ["-u", "root"]
        cmd += list(args)
        self.cmd = cmd
        self.stopped = False
        self.serving = wait
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                     stdout=self.outfile, stderr=self.errfile,
                                     preexec_fn=_die_with_parent)
        if wait:
            self.wait_ready()

    def _try_connect(self):
        try:
            if self.unix_path:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.settimeout(1)
                s.connect(self.unix_path)
            else:
                s = socket.create_connection((self.host, self.port),
                                             timeout=1)
            s.close()
            return True
        except OSError:
            return False

    def wait_ready(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("server exited with %s before accepting: "
                                   "%s\nstderr: %s" % (self.proc.returncode,
                                                       " ".join(self.cmd),
                                                       self.stderr()))
            if self._try_connect():
                return
            time.sleep(0.02)
        raise RuntimeError("server did not accept within %ss: %s\nstderr: %s"
                           % (timeout, " ".join(self.cmd), self.stderr()))

    def stderr(self):
        self.errfile.seek(0)
        return self.errfile.read().decode(errors="replace")

    def stdout(self):
        self.outfile.seek(0)
        return self.outfile.read().decode(errors="replace")

    def conn(self, **kw):
        if self.unix_path:
            return Conn(path=self.unix_path, **kw)
        return Conn(self.port, host=self.host, **kw)

    def alive(self):
        return self.proc.poll() is None

    def stop(self, graceful=False):
        """Stop the server (SIGKILL unless graceful: memcached takes a
        second to honour SIGTERM); returns its exit status."""
        self.stopped = True
        if self.proc.poll() is None:
            if graceful:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(timeout=5)
        return self.proc.returncode


def start_server(binary, args=(), **kw):
    """Start a server, retrying on a port race."""
    last = None
    for _ in range(3):
        try:
            return Server(binary, args, **kw)
        except RuntimeError as e:
            last = e
            if "in use" not in str(e).lower() or kw.get("port"):
                raise
    raise last


class _Factory:
    def __init__(self, binary, request):
        self.binary = binary
        self.servers = []
        request.node._ftm_servers = getattr(request.node, "_ftm_servers", [])
        self.registry = request.node._ftm_servers

    def __call__(self, args=(), **kw):
        s = start_server(self.binary, list(args), **kw)
        self.servers.append(s)
        self.registry.append(s)
        return s

    def stop_all(self):
        """Stop every server; a server that died on its own while serving
        is an error (a crash is never acceptable)."""
        died = [s for s in self.servers
                if s.serving and not s.stopped and not s.alive()]
        for s in self.servers:
            if not s.stopped:
                s.stop()
        if died:
            raise AssertionError("server died during the test: " + "; ".join(
                "%s exited %s, stderr: %s" % (" ".join(s.cmd),
                                              s.proc.returncode,
                                              s.stderr()[-2000:])
                for s in died))


def clusters(request, build, ready=None):
    """The body of a fixture that makes clusters (t/cluster.py,
    t/netns.py): yields make(**kw), which builds one with build(**kw),
    registers its servers for the failure report and returns it after
    ready(cluster) if given. At teardown every server must still run (one
    that crashed fails the test), and every cluster is closed."""
    made = []

    def make(**kw):
        c = build(**kw)
        made.append(c)
        request.node._ftm_servers = getattr(request.node, "_ftm_servers",
                                            []) + c.servers
        if ready is not None:
            ready(c)
        return c
    yield make
    try:
        for c in made:
            c.check_alive()
    finally:
        for c in made:
            c.close()


@pytest.fixture
def server_factory(request):
    """Call with a list of extra flags to start the binary under test."""
    f = _Factory(SERVER_BIN, request)
    yield f
    f.stop_all()


@pytest.fixture
def reference_factory(request):
    """Same as server_factory for stock memcached."""
    if not os.path.exists(REFERENCE_BIN):
        pytest.skip("reference memcached %s not installed" % REFERENCE_BIN)
    f = _Factory(REFERENCE_BIN, request)
    yield f
    f.stop_all()


@pytest.fixture
def server(server_factory):
    """A fresh server under test with default flags."""
    return server_factory()


@pytest.fixture
def reference(reference_factory):
    return reference_factory()


@pytest.fixture
def mc(server):
    """A raw connection to a fresh server under test."""
    c = server.conn()
    yield c
    c.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for s in getattr(item, "_ftm_servers", []):
            err = s.stderr()
            rc = s.proc.poll()
            rep.sections.append((
                "server %s (exit %s)" % (" ".join(s.cmd), rc),
                err[-4000:] if err else "(no stderr)"))


@pytest.fixture
def loads():
    """LoadGens started by a test are stopped at teardown, whatever
    happened."""
    started = []

    def run(lg):
        started.append(lg)
        return lg.start()
    yield run
    for lg in started:
        lg.__exit__(None, None, None)
