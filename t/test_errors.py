"""Bad input gets memcached's own answer, and the connection (or at worst
only that connection) survives."""

import time

import pytest


def test_unknown_command(mc):
    assert mc.cmd("foo") == b"ERROR\r\n"
    assert mc.cmd("GET foo") == b"ERROR\r\n"   # commands are case sensitive
    assert mc.cmd("") == b"ERROR\r\n"
    assert mc.cmd("get") == b"ERROR\r\n"
    assert mc.cmd("version").startswith(b"VERSION ")


def test_key_too_long(mc):
    long_key = b"k" * 251
    assert mc.cmd(b"get " + long_key) == (
        b"CLIENT_ERROR bad command line format\r\n")
    assert mc.cmd(b"gets ok " + long_key) == (
        b"CLIENT_ERROR bad command line format\r\n")
    assert mc.cmd(b"delete " + long_key) == (
        b"CLIENT_ERROR bad command line format\r\n")
    assert mc.cmd(b"touch " + long_key + b" 1") == (
        b"CLIENT_ERROR bad command line format\r\n")
    # storage: nothing is swallowed, so the data line is an unknown command
    assert mc.roundtrip(b"set " + long_key + b" 0 0 1\r\nx\r\n") == (
        b"CLIENT_ERROR bad command line format\r\nERROR\r\n")
    assert mc.set("ok", "fine") == b"STORED\r\n"
    assert mc.get("ok") == b"fine"


def test_key_with_control_characters(mc):
    # The text protocol splits on spaces only: control characters other
    # than \r\n are part of the key, as in memcached 1.6.18.
    for key in (b"a\x01b", b"tab\tkey", b"\x7fdel", b"\x1b[0m"):
        assert mc.set(key, b"v") == b"STORED\r\n", key
        assert mc.get(key) == b"v", key
    assert mc.get(b"ab") is None


def test_nul_ends_command_line(mc):
    # memcached parses the line as a C string: a NUL byte ends it
    assert mc.set("a", "v") == b"STORED\r\n"
    assert mc.roundtrip(b"get a\x00b\r\n") == b"VALUE a 0 1\r\nv\r\nEND\r\n"
    assert mc.roundtrip(b"mg a\x00b v\r\n") == b"HD\r\n"
    assert mc.roundtrip(b"set nul\x00key 0 0 1\r\nv\r\n") == (
        b"ERROR\r\nERROR\r\n")


def test_value_too_large(mc):
    big = b"x" * (1024 * 1024 + 1)
    assert mc.set("big", big) == b"SERVER_ERROR object too large for cache\r\n"
    # the data was swallowed: the connection is in sync and alive
    assert mc.get("big") is None
    assert mc.set("small", "ok") == b"STORED\r\n"
    assert mc.get("small") == b"ok"


def test_value_too_large_replaces_nothing_but_old_is_gone(mc):
    # memcached drops the old value when a too-large set fails (to avoid
    # serving stale data)
    assert mc.set("k", "old") == b"STORED\r\n"
    big = b"x" * (2 * 1024 * 1024)
    assert mc.set("k", big) == b"SERVER_ERROR object too large for cache\r\n"
    assert mc.get("k") is None


def test_value_too_large_custom_I(server_factory):
    s = server_factory(["-I", "2m"])
    with s.conn() as c:
        ok = b"y" * (1024 * 1024 + 100)
        assert c.set("k", ok) == b"STORED\r\n"
        assert c.get("k") == ok
        big = b"y" * (2 * 1024 * 1024 + 1)
        assert c.set("k2", big) == b"SERVER_ERROR object too large for cache\r\n"
        assert c.cmd("version").startswith(b"VERSION ")


def test_bad_data_chunk(mc):
    # 5 bytes where 3 were announced
    assert mc.roundtrip(b"set k 0 0 3\r\nabcde\r\n") == (
        b"CLIENT_ERROR bad data chunk\r\nERROR\r\n")
    assert mc.get("k") is None
    assert mc.set("k", "abc") == b"STORED\r\n"
    assert mc.get("k") == b"abc"


def test_bad_data_chunk_missing_crlf(mc):
    assert mc.roundtrip(b"set k 0 0 3\r\nabcXY") == b"CLIENT_ERROR bad data chunk\r\n"
    assert mc.get("k") is None


@pytest.mark.parametrize("line", [
    b"set k 0 0 -1",          # negative length
    b"set k 0 0 abc",
    b"set k abc 0 1",
    b"set k -1 0 1",          # negative flags
    b"set k 0 abc 1",
    b"add k 0 0 -5",
    b"cas k 0 0 1 abc",
])
def test_bad_storage_line_not_swallowed(mc, line):
    assert mc.roundtrip(line + b"\r\nx\r\n") == (
        b"CLIENT_ERROR bad command line format\r\nERROR\r\n")
    assert mc.get("k") is None


def test_wrong_token_count(mc):
    assert mc.roundtrip(b"set k 0 0\r\n") == b"ERROR\r\n"
    assert mc.roundtrip(b"set k 0 0 1 noreply extra\r\nx\r\n") == (
        b"ERROR\r\nERROR\r\n")
    assert mc.roundtrip(b"cas k 0 0 1\r\nx\r\n") == b"ERROR\r\nERROR\r\n"


def test_endless_line_closes_connection(server):
    with server.conn() as c:
        c.send(b"x" * 8192)
        assert c.is_closed(wait=3), "server kept reading an endless line"
        # at most one error line before the close
        assert c.buf == b"" or (c.buf.count(b"\r\n") == 1 and
                                b"ERROR" in c.buf), c.buf
    with server.conn() as c2:
        assert c2.cmd("version").startswith(b"VERSION ")


def test_endless_line_with_spaces_closes(server):
    with server.conn() as c:
        c.send(b"set " + b"a " * 4000)
        assert c.is_closed(wait=3)


def test_long_multiget_line_allowed(mc):
    # a get line far longer than the read buffer is a legal multiget
    keys = [b"key%05d" % i for i in range(3000)]
    assert mc.set(keys[-1], "last") == b"STORED\r\n"
    r = mc.get_multi(keys)
    assert r == {keys[-1]: (0, b"last", None)}


def test_long_garbage_line_with_newline(mc):
    assert mc.cmd(b"x" * 1500) == b"ERROR\r\n"
    assert mc.cmd("version").startswith(b"VERSION ")


def test_lf_only_line_endings(mc):
    mc.send(b"set foo 0 0 1\nx\r\nget foo\n")
    assert mc.readline() == b"STORED\r\n"
    assert mc.readline() == b"VALUE foo 0 1\r\n"
    assert mc.readline() == b"x\r\n"
    assert mc.readline() == b"END\r\n"


def test_extra_spaces_tolerated(mc):
    assert mc.set("foo", "x") == b"STORED\r\n"
    mc.send(b"get   foo  \r\n")
    assert mc.readline() == b"VALUE foo 0 1\r\n"
    assert mc.readline() == b"x\r\n"
    assert mc.readline() == b"END\r\n"


def test_exptime_rules(mc):
    now = int(time.time())
    assert mc.set("never", "v", exptime=0) == b"STORED\r\n"
    assert mc.set("neg", "v", exptime=-1) == b"STORED\r\n"
    assert mc.set("rel", "v", exptime=2) == b"STORED\r\n"
    assert mc.set("abs", "v", exptime=now + 2) == b"STORED\r\n"
    assert mc.set("abs_past", "v", exptime=now - 100) == b"STORED\r\n"
    assert mc.get("neg") is None
    assert mc.get("abs_past") is None
    assert mc.get("rel") == b"v" and mc.get("abs") == b"v"
    time.sleep(3.2)
    assert mc.get("rel") is None and mc.get("abs") is None
    assert mc.get("never") == b"v"


def test_bad_exptime(mc):
    assert mc.roundtrip(b"set k 0 1x 1\r\nx\r\n") == (
        b"CLIENT_ERROR bad command line format\r\nERROR\r\n")


def test_errors_do_not_kill_other_connections(server):
    with server.conn() as a, server.conn() as b:
        assert a.set("k", "v") == b"STORED\r\n"
        b.send(b"\x00\xff\x01garbage\r\n" + b"y" * 10000)
        b.is_closed(wait=1)
        assert a.get("k") == b"v"
