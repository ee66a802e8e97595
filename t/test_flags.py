"""Server command-line flags.

Tests marked ftm_only check what issue 2 asks of ftmemcached beyond stock
memcached 1.6.18 (e.g. exit status 64 and a message naming an unknown flag);
they are skipped when the server under test is not ftmemcached.
"""

import os
import re
import socket
import subprocess
import tempfile
import time

import pytest

from conftest import SERVER_BIN, ftm_only, free_port
from mc import Conn, ServerClosed, wait_for


def run_bin(args, timeout=10):
    return subprocess.run([SERVER_BIN] + args, capture_output=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def test_port_flag(server_factory):
    port = free_port()
    s = server_factory(port=port)
    with Conn(port) as c:
        assert c.set("k", "v") == b"STORED\r\n"
        assert c.get("k") == b"v"
        assert c.stats("settings")["tcpport"] == str(port)


def test_listen_address_only(server_factory):
    s = server_factory()
    # bound to 127.0.0.1 only: another loopback address is refused
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.2", s.port), timeout=2).close()
    with Conn(s.port) as c:
        assert c.cmd("version").startswith(b"VERSION ")


def test_unix_socket(server_factory):
    d = tempfile.mkdtemp(prefix="ftm-t-")
    path = os.path.join(d, "mc.sock")
    s = server_factory(unix_path=path)
    assert os.path.exists(path)
    # default access mask 0700
    assert os.stat(path).st_mode & 0o777 == 0o700
    with s.conn() as c:
        assert c.set("k", "v") == b"STORED\r\n"
        assert c.get("k") == b"v"
        assert c.meta("mg k v") == (b"VA 1\r\n", b"v")
        assert c.stats("settings")["domain_socket"] == path


def test_unix_socket_mask(server_factory):
    d = tempfile.mkdtemp(prefix="ftm-t-")
    path = os.path.join(d, "mc.sock")
    s = server_factory(["-a", "0660"], unix_path=path)
    assert os.stat(path).st_mode & 0o777 == 0o660
    with s.conn() as c:
        assert c.cmd("version").startswith(b"VERSION ")


def test_max_connections_exceeded(server_factory):
    s = server_factory(["-c", "30"])
    conns = []
    rejected = None
    try:
        for i in range(40):
            c = s.conn()
            conns.append(c)
            c.send(b"version\r\n")
            try:
                line = c.readline()
            except (ServerClosed, ConnectionResetError):
                line = b""
            if not line.startswith(b"VERSION "):
                rejected = (i, line, c)
                break
        assert rejected is not None, "no connection refused with -c 30"
        i, line, c = rejected
        assert i <= 30
        assert line == b"ERROR Too many open connections\r\n"
        assert c.is_closed()
        conns.pop().close()
        # closing connections makes room again
        for c in conns[:5]:
            c.close()
        del conns[:5]

        def fresh_ok():
            try:
                with s.conn() as f:
                    return f.cmd("version").startswith(b"VERSION ")
            except (OSError, ServerClosed):
                return False
        assert wait_for(fresh_ok, timeout=5)
        st = conns[0].stats()
        assert int(st["rejected_connections"]) >= 1
        assert st["max_connections"] == "30"
    finally:
        for c in conns:
            c.close()


def test_memory_limit_evicts(server_factory):
    s = server_factory(["-m", "8"])
    with s.conn() as c:
        val = b"v" * 10000
        n = 4000          # ~40 MB through an 8 MiB cache
        for i in range(n):
            c.set("key%d" % i, val, noreply=True)
        assert c.cmd("version").startswith(b"VERSION ")
        st = c.stats()
        assert int(st["evictions"]) > 0
        assert int(st["curr_items"]) < n
        assert int(st["bytes"]) <= 8 * 1024 * 1024
        assert int(st["curr_items"]) + int(st["evictions"]) == n
        # the most recent writes survive, the oldest are gone
        assert c.get("key%d" % (n - 1)) == val
        assert c.get("key0") is None


def test_memory_limit_evicts_lru_not_recently_read(server_factory):
    s = server_factory(["-m", "8"])
    with s.conn() as c:
        val = b"v" * 10000
        assert c.set("hot", val) == b"STORED\r\n"
        for i in range(4000):
            c.set("key%d" % i, val, noreply=True)
            if i % 50 == 0:
                assert c.get("hot") == val, i
        assert c.get("hot") == val


def test_no_evict_out_of_memory(server_factory):
    s = server_factory(["-m", "8", "-M"])
    with s.conn() as c:
        val = b"v" * 10000
        res = {}
        for i in range(4000):
            r = c.set("key%d" % i, val)
            res[r] = res.get(r, 0) + 1
        assert res.get(b"STORED\r\n", 0) > 0
        assert res.get(b"SERVER_ERROR out of memory storing object\r\n", 0) > 0
        assert set(res) == {b"STORED\r\n",
                            b"SERVER_ERROR out of memory storing object\r\n"}
        st = c.stats()
        assert st["evictions"] == "0"
        # nothing stored was evicted; the first key is still there
        assert c.get("key0") == val
        assert c.get("key3999") is None
        assert c.cmd("delete key0") == b"DELETED\r\n"
        assert c.cmd("version").startswith(b"VERSION ")


def test_item_size_flag(server_factory):
    s = server_factory(["-I", "2m"])
    with s.conn() as c:
        v = b"z" * (1536 * 1024)
        assert c.set("k", v) == b"STORED\r\n"
        assert c.get("k") == v
        assert c.set("k2", b"z" * (2 * 1024 * 1024 + 10)) == (
            b"SERVER_ERROR object too large for cache\r\n")
        assert c.stats("settings")["item_size_max"] == str(2 * 1024 * 1024)


def test_item_size_flag_small(server_factory):
    s = server_factory(["-I", "512k"])
    with s.conn() as c:
        assert c.set("k", b"z" * (400 * 1024)) == b"STORED\r\n"
        assert c.set("k2", b"z" * (600 * 1024)) == (
            b"SERVER_ERROR object too large for cache\r\n")


def test_cas_disabled(server_factory):
    s = server_factory(["-C"])
    with s.conn() as c:
        assert c.set("a", "v") == b"STORED\r\n"
        assert c.roundtrip(b"gets a\r\n") == b"VALUE a 0 1 0\r\nv\r\nEND\r\n"
        assert c.store("cas", "a", "w", cas=0) == b"EXISTS\r\n"
        assert c.store("cas", "b", "w", cas=5) == b"NOT_FOUND\r\n"
        assert c.meta("mg a c v") == (b"VA 1 c0\r\n", b"v")
        assert c.stats("settings")["cas_enabled"] == "no"


def test_threads_flag(server_factory):
    s = server_factory(["-t", "2"])
    with s.conn() as c:
        assert c.stats()["threads"] == "2"
    s8 = server_factory(["-t", "8"])
    conns = [s8.conn() for _ in range(16)]
    try:
        for i, c in enumerate(conns):
            assert c.set("k%d" % i, str(i)) == b"STORED\r\n"
        for i, c in enumerate(conns):
            assert c.get("k%d" % ((i + 1) % 16)) == str((i + 1) % 16).encode()
        assert conns[0].stats()["threads"] == "8"
    finally:
        for c in conns:
            c.close()


def test_version_flag():
    p = run_bin(["-V"])
    assert p.returncode == 0
    out = (p.stdout + p.stderr).decode()
    assert re.search(r"\d+\.\d+", out), out


def test_help_flag():
    p = run_bin(["-h"])
    assert p.returncode == 0
    out = p.stdout.decode()
    for flag in ("-p", "-U", "-s", "-l", "-c", "-m", "-I", "-t", "-M", "-C",
                 "-v", "-d", "-u", "-V"):
        assert re.search(r"(^|\s)%s[, ]" % re.escape(flag), out, re.M), flag


def test_unknown_flag_fails():
    p = run_bin(["-p", str(free_port()), "-U", "0", "-l", "127.0.0.1", "-9"]
                + (["-u", "root"] if os.geteuid() == 0 else []))
    assert p.returncode != 0


@ftm_only
def test_unknown_flag_exit_64_names_flag():
    p = run_bin(["-9"])
    assert p.returncode == 64
    err = p.stderr.decode()
    assert "9" in err.splitlines()[0], err
    p = run_bin(["--no-such-flag"])
    assert p.returncode == 64
    assert "no-such-flag" in p.stderr.decode().splitlines()[0]


@ftm_only
@pytest.mark.parametrize("args", [["-p", "abc"], ["-m", "abc"], ["-t", "x"],
                                  ["-c"]])
def test_malformed_flag_exit_64(args):
    p = run_bin(args + ["-U", "0", "-l", "127.0.0.1"]
                + (["-u", "root"] if os.geteuid() == 0 else []), timeout=5)
    assert p.returncode == 64, (args, p.stderr)
    assert p.stderr.strip(), "no error message"


@ftm_only
def test_udp_refused_in_cluster_mode():
    """UDP requests are not routed to their primary: -U with --meta must be a
    usage error, not a server that answers keys it does not own."""
    p = run_bin(["-p", "22998", "-U", "22999", "--meta", "127.0.0.1:1", "-l", "127.0.0.1"]
                + (["-u", "root"] if os.geteuid() == 0 else []), timeout=5)
    assert p.returncode == 64, p.stderr
    assert b"-U" in p.stderr.splitlines()[0], p.stderr


def test_bad_port_fails():
    p = run_bin(["-p", "99999", "-U", "0", "-l", "127.0.0.1"]
                + (["-u", "root"] if os.geteuid() == 0 else []))
    assert p.returncode != 0


def test_daemonize_with_pidfile():
    d = tempfile.mkdtemp(prefix="ftm-t-")
    pidfile = os.path.join(d, "pid")
    port = free_port()
    args = ["-d", "-P", pidfile, "-p", str(port), "-U", "0", "-l",
            "127.0.0.1"] + (["-u", "root"] if os.geteuid() == 0 else [])
    p = run_bin(args)
    assert p.returncode == 0, p.stderr
    assert wait_for(lambda: os.path.exists(pidfile) and
                    open(pidfile).read().strip(), timeout=5)
    pid = int(open(pidfile).read().strip())
    try:
        assert pid > 0
        os.kill(pid, 0)
        with Conn(port) as c:
            assert c.set("k", "v") == b"STORED\r\n"
            assert int(c.stats()["pid"]) == pid
    finally:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass


def test_verbose_logs_to_stderr(server_factory):
    s = server_factory(["-vv"])
    with s.conn() as c:
        assert c.set("k", "v") == b"STORED\r\n"
        assert c.get("k") == b"v"
    assert wait_for(lambda: s.stderr().strip() != "", timeout=3)


def test_sigterm_exits_cleanly(server_factory):
    s = server_factory()
    with s.conn() as c:
        assert c.set("k", "v") == b"STORED\r\n"
    rc = s.stop(graceful=True)
    assert rc in (0, -15), rc


def test_pidfile_foreground(server_factory):
    d = tempfile.mkdtemp(prefix="ftm-t-")
    pidfile = os.path.join(d, "pid")
    s = server_factory(["-P", pidfile])
    assert wait_for(lambda: os.path.exists(pidfile) and
                    open(pidfile).read().strip(), timeout=5)
    assert int(open(pidfile).read().strip()) == s.proc.pid


def test_reqs_per_event_flag(server_factory):
    s = server_factory(["-R", "5"])
    with s.conn() as c:
        assert c.stats("settings")["reqs_per_event"] == "5"
        # a pipeline longer than -R is still answered completely, in order
        c.send(b"".join(b"incr n 1\r\n" if i else b"set n 0 0 1\r\n0\r\n"
                        for i in range(50)))
        assert c.readline() == b"STORED\r\n"
        for i in range(1, 50):
            assert c.readline() == b"%d\r\n" % i


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_root_requires_u():
    """memcached refuses to run as root without -u (exit 64)."""
    try:
        p = run_bin(["-p", str(free_port()), "-U", "0", "-l", "127.0.0.1"],
                    timeout=3)
    except subprocess.TimeoutExpired:
        pytest.fail("server ran as root without -u (memcached exits 64)")
    assert p.returncode == 64
    assert p.stderr.strip()


def _rss_mib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    raise AssertionError("no VmRSS")


def test_memory_limit_bounds_process_memory(server_factory):
    """-m bounds item memory: ~130 MB of mixed-size values through -m 16
    leave `bytes` within 16 MiB and the process's RSS within 16 MiB plus
    fixed overhead."""
    import random
    s = server_factory(["-m", "16"])
    base = _rss_mib(s.proc.pid)
    r = random.Random(1)
    with s.conn() as c:
        for i in range(20000):
            c.set("k%d" % i, b"x" * r.choice([100, 1000, 5000, 20000]),
                  noreply=True)
        assert c.cmd("version").startswith(b"VERSION ")
        st = c.stats()
        assert int(st["bytes"]) <= 16 * 1024 * 1024
        assert int(st["evictions"]) > 0
    grown = _rss_mib(s.proc.pid) - base
    assert grown < 16 + 24, "RSS grew by %.1f MiB with -m 16" % grown
