"""Authentication (issue 3): binary SASL with -S (Cyrus SASL, PLAIN against a
sasldb, as memcached) and the text protocol's -Y auth file. Each test runs
against the server under test and stock memcached where both apply.

Run against stock memcached alone with FTM_SERVER=/usr/bin/memcached.
"""

import os
import socket
import struct
import subprocess
import sys
import textwrap

import pytest

from conftest import IS_FTM, ftm_only

HEADER = struct.Struct(">BBHBBHIIQ")
GET, SET, NOOP, VERSION = 0x00, 0x01, 0x0a, 0x0b
SASL_LIST, SASL_AUTH, SASL_STEP = 0x20, 0x21, 0x22
AUTH_ERROR, AUTH_CONTINUE = 0x20, 0x21

USER, PASSWORD = "alice", "s3cret-pw"


def frame(op, key=b"", extras=b"", value=b"", opaque=0, cas=0):
    return HEADER.pack(0x80, op, len(key), len(extras), 0, 0,
                       len(key) + len(extras) + len(value), opaque, cas) + \
        extras + key + value


class BinConn:
    """A binary-protocol connection that reads one response at a time."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.buf = b""

    def close(self):
        self.sock.close()

    def _read(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def call(self, op, key=b"", extras=b"", value=b""):
        self.sock.sendall(frame(op, key, extras, value))
        hdr = self._read(24)
        if hdr is None:
            return None
        _, rop, kl, el, _, status, bl, _, _ = HEADER.unpack(hdr)
        body = self._read(bl) if bl else b""
        return status, body[el + kl:]

    def closed(self):
        try:
            return self.sock.recv(1) == b""
        except (ConnectionResetError, socket.timeout):
            return True


def plain(user, password):
    return b"\0" + user.encode() + b"\0" + password.encode()


# -- -S: Cyrus SASL ------------------------------------------------------------
MAKE_SASLDB = textwrap.dedent("""
    import ctypes, sys
    lib = ctypes.CDLL("libsasl2.so.2")
    lib.sasl_server_init.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    assert lib.sasl_server_init(None, b"memcached") == 0
    conn = ctypes.c_void_p()
    lib.sasl_server_new.argtypes = [ctypes.c_char_p] * 5 + [
        ctypes.c_void_p, ctypes.c_uint, ctypes.POINTER(ctypes.c_void_p)]
    assert lib.sasl_server_new(b"memcached", None, None, None, None, None, 0,
                               ctypes.byref(conn)) == 0
    lib.sasl_setpass.argtypes = [ctypes.c_void_p, ctypes.c_char_p,
                                 ctypes.c_char_p, ctypes.c_uint,
                                 ctypes.c_char_p, ctypes.c_uint, ctypes.c_uint]
    user, password = sys.argv[1].encode(), sys.argv[2].encode()
    assert lib.sasl_setpass(conn, user, password, len(password), None, 0,
                            1) == 0  # SASL_SET_CREATE
""")


@pytest.fixture
def sasl_conf(tmp_path, monkeypatch):
    """A memcached.conf naming PLAIN and a sasldb holding USER, created
    through libsasl2 itself (no saslpasswd2 needed); servers started after
    this fixture find it through SASL_CONF_PATH."""
    conf = tmp_path / "memcached.conf"
    conf.write_text("mech_list: plain\nsasldb_path: %s\n"
                    % (tmp_path / "sasldb2"))
    env = dict(os.environ, SASL_CONF_PATH=str(tmp_path))
    p = subprocess.run([sys.executable, "-c", MAKE_SASLDB, USER, PASSWORD],
                       env=env, capture_output=True, timeout=30)
    if p.returncode != 0:
        pytest.skip("cannot create a sasldb with libsasl2: %s" % p.stderr)
    monkeypatch.setenv("SASL_CONF_PATH", str(tmp_path))
    return tmp_path


@pytest.fixture(params=["ours", "memcached"])
def sasl_server(request, sasl_conf, server_factory, reference_factory):
    factory = server_factory if request.param == "ours" else reference_factory
    return factory(["-S", "-vv"])


def test_sasl_list_mechs_and_version_before_auth(sasl_server):
    c = BinConn(sasl_server.port)
    assert c.call(SASL_LIST) == (0, b"PLAIN")
    status, body = c.call(VERSION)
    assert status == 0 and body
    c.close()


def test_sasl_commands_refused_before_auth(sasl_server):
    c = BinConn(sasl_server.port)
    assert c.call(GET, b"k") == (AUTH_ERROR, b"Auth failure.")
    assert c.closed()
    c = BinConn(sasl_server.port)
    assert c.call(NOOP) == (AUTH_ERROR, b"Auth failure.")
    assert c.closed()


def test_sasl_wrong_password_refused(sasl_server):
    c = BinConn(sasl_server.port)
    assert c.call(SASL_AUTH, b"PLAIN", value=plain(USER, "Wr0ng-Pa55")) == (
        AUTH_ERROR, b"Auth failure.")
    assert c.call(SASL_AUTH, b"PLAIN", value=plain("mallory", PASSWORD)) == (
        AUTH_ERROR, b"Auth failure.")
    assert c.call(SASL_AUTH, b"NOSUCHMECH", value=plain(USER, PASSWORD)) == (
        AUTH_ERROR, b"Auth failure.")
    # Still not authenticated: the next command is refused and closes.
    assert c.call(GET, b"k") == (AUTH_ERROR, b"Auth failure.")
    assert c.closed()
    sasl_server.stop()
    err = sasl_server.stderr()
    assert "Wr0ng-Pa55" not in err and PASSWORD not in err


def test_sasl_right_password_accepted(sasl_server):
    c = BinConn(sasl_server.port)
    assert c.call(SASL_AUTH, b"PLAIN", value=plain(USER, PASSWORD)) == (
        0, b"Authenticated")
    assert c.call(SET, b"k", struct.pack(">II", 0, 0), b"v") == (0, b"")
    assert c.call(GET, b"k") == (0, b"v")
    c.close()
    sasl_server.stop()
    # -vv logs SASL activity, never the credentials.
    assert PASSWORD not in sasl_server.stderr()


def test_sasl_plain_in_two_steps(sasl_server):
    c = BinConn(sasl_server.port)
    # PLAIN with no initial response: the server asks for it.
    assert c.call(SASL_AUTH, b"PLAIN") == (AUTH_CONTINUE, b"")
    assert c.call(SASL_STEP, b"PLAIN", value=plain(USER, PASSWORD)) == (
        0, b"Authenticated")
    assert c.call(GET, b"nope")[0] == 1
    c.close()


def test_sasl_step_without_start_refused(sasl_server):
    c = BinConn(sasl_server.port)
    assert c.call(SASL_STEP, b"PLAIN", value=plain(USER, PASSWORD)) == (
        AUTH_ERROR, b"Auth failure.")
    c.close()


def test_sasl_pylibmc(sasl_server):
    pylibmc = pytest.importorskip("pylibmc")
    if not pylibmc.support_sasl:
        pytest.skip("pylibmc built without SASL")
    good = pylibmc.Client(["127.0.0.1:%d" % sasl_server.port], binary=True,
                          username=USER, password=PASSWORD)
    assert good.set("k", "v")
    assert good.get("k") == "v"
    bad = pylibmc.Client(["127.0.0.1:%d" % sasl_server.port], binary=True,
                         username=USER, password="wrong")
    with pytest.raises(pylibmc.Error):
        bad.set("k", "v")


@ftm_only
def test_sasl_pwdb_file(tmp_path, monkeypatch, server_factory):
    """memcached's MEMCACHED_SASL_PWDB (user:password lines) for PLAIN."""
    (tmp_path / "memcached.conf").write_text("mech_list: plain\n")
    pwdb = tmp_path / "pwdb"
    pwdb.write_text("bob:hunter2\n")
    monkeypatch.setenv("SASL_CONF_PATH", str(tmp_path))
    monkeypatch.setenv("MEMCACHED_SASL_PWDB", str(pwdb))
    s = server_factory(["-S"])
    c = BinConn(s.port)
    assert c.call(SASL_AUTH, b"PLAIN", value=plain("bob", "nope"))[0] == \
        AUTH_ERROR
    assert c.call(SASL_AUTH, b"PLAIN", value=plain("bob", "hunter2")) == (
        0, b"Authenticated")
    assert c.call(GET, b"k")[0] == 1


@pytest.mark.parametrize("which", ["ours", "memcached"])
def test_sasl_without_config_fails_to_start(which, monkeypatch,
                                            server_factory,
                                            reference_factory):
    """No memcached.conf anywhere: "Error initializing sasl.", exit 1."""
    if any(os.path.exists(d + "/memcached.conf")
           for d in ("/etc/sasl", "/etc/sasl2")):
        pytest.skip("this machine has a system-wide memcached.conf")
    monkeypatch.delenv("SASL_CONF_PATH", raising=False)
    factory = server_factory if which == "ours" else reference_factory
    with pytest.raises(RuntimeError) as e:
        factory(["-S"])
    assert "exited with 1" in str(e.value)
    assert "Error initializing sasl." in str(e.value)


# -- -Y: text-protocol auth file -----------------------------------------------
@pytest.fixture
def auth_file(tmp_path):
    f = tmp_path / "auth"
    f.write_text("%s:%s\nbob:pw2\n" % (USER, PASSWORD))
    return f


@pytest.fixture(params=["ours", "memcached"])
def y_server(request, auth_file, server_factory, reference_factory):
    factory = server_factory if request.param == "ours" else reference_factory
    return factory(["-Y", str(auth_file), "-vv"])


def _auth_line(user, password):
    payload = "%s %s" % (user, password)
    return "set anykey 0 0 %d\r\n%s\r\n" % (len(payload), payload)


def test_y_commands_refused_before_auth(y_server):
    with y_server.conn() as c:
        assert c.cmd("get foo") == b"CLIENT_ERROR unauthenticated\r\n"
        assert c.cmd("version") == b"CLIENT_ERROR unauthenticated\r\n"
        assert c.cmd("set x 0 0") == b"CLIENT_ERROR unauthenticated\r\n"


def test_y_wrong_password_refused(y_server):
    with y_server.conn() as c:
        c.send(_auth_line(USER, "wrong"))
        assert c.readline() == b"CLIENT_ERROR authentication failure\r\n"
        c.send(_auth_line("mallory", PASSWORD))
        assert c.readline() == b"CLIENT_ERROR authentication failure\r\n"
        c.send("set x 0 0 5\r\nalice\r\n")
        assert c.readline() == \
            b"CLIENT_ERROR bad authentication token format\r\n"
        c.send("set x 0 0 3\r\nabcXY")
        assert c.readline() == \
            b"CLIENT_ERROR bad command line termination\r\n"
        assert c.cmd("get foo") == b"CLIENT_ERROR unauthenticated\r\n"


def test_y_right_password_accepted(y_server):
    with y_server.conn() as c:
        c.send(_auth_line(USER, PASSWORD))
        assert c.readline() == b"STORED\r\n"
        assert c.cmd("set k 0 0 1\r\nv") == b"STORED\r\n"
        assert c.cmd("get k") == b"VALUE k 0 1\r\n"
        assert c.readline() == b"v\r\n"
        assert c.readline() == b"END\r\n"
    with y_server.conn() as c:  # per connection
        assert c.cmd("get k") == b"CLIENT_ERROR unauthenticated\r\n"
        c.send(_auth_line("bob", "pw2"))
        assert c.readline() == b"STORED\r\n"
    y_server.stop()
    assert PASSWORD not in y_server.stderr()


def test_y_stats_count_auth(y_server):
    with y_server.conn() as c:
        c.send(_auth_line(USER, "wrong"))
        c.readline()
        c.send(_auth_line(USER, PASSWORD))
        assert c.readline() == b"STORED\r\n"
        stats = c.stats()
        assert stats["auth_cmds"] == "2"
        assert stats["auth_errors"] == "1"


def test_sasl_differential(sasl_conf, server_factory, reference_factory):
    """The same SASL conversations, frame for frame, against both servers."""
    from test_binary import exchange, parse
    ours = server_factory(["-S"])
    ref = reference_factory(["-S"])
    good = plain(USER, PASSWORD)
    setv = frame(SET, b"k", struct.pack(">II", 1, 0), b"v")
    conversations = [
        [frame(VERSION), frame(SASL_LIST), frame(NOOP)],
        [frame(SASL_AUTH, b"PLAIN", value=plain(USER, "bad")), frame(NOOP)],
        [frame(SASL_AUTH, b"PLAIN", value=good), setv, frame(GET, b"k"),
         frame(NOOP)],
        [frame(SASL_STEP, b"PLAIN", value=good), frame(GET, b"k")],
        [frame(SASL_AUTH, b"PLAIN"), frame(SASL_STEP, b"PLAIN", value=good),
         frame(GET, b"k"), frame(NOOP)],
        [frame(SASL_AUTH, b"P" * 33, value=good), frame(VERSION)],
        [frame(SASL_AUTH, b"PLAIN", extras=b"1234", value=good)],
        [frame(SASL_AUTH, b"", value=good)],
        [frame(SASL_LIST, value=b"x")],
        [frame(SASL_AUTH, b"FOO", value=good), frame(VERSION)],
        [frame(0x99, b"key", value=b"body")],
    ]

    def masked(port, payload):
        # Zeros after the frames end any swallow, then close (bad magic).
        rs = parse(exchange(port, payload + bytes(4096)))
        return [dict(r, cas=bool(r["cas"])) if isinstance(r, dict) else r
                for r in rs]

    for conv in conversations:
        payload = b"".join(conv)
        assert masked(ours.port, payload) == masked(ref.port, payload), conv
