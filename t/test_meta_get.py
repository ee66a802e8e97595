"""Meta get (mg) and meta no-op (mn)."""

import base64
import re
import time

from conftest import ftm_only  # noqa: F401


def test_mg_miss(mc):
    assert mc.meta("mg foo v") == b"EN\r\n"
    assert mc.meta("mg foo") == b"EN\r\n"


def test_mg_hit_no_flags_is_hd(mc):
    assert mc.meta("ms foo 2", "hi") == b"HD\r\n"
    assert mc.meta("mg foo") == b"HD\r\n"


def test_mg_value(mc):
    assert mc.meta("ms foo 2", "hi") == b"HD\r\n"
    assert mc.meta("mg foo v") == (b"VA 2\r\n", b"hi")


def test_mg_return_flags_in_request_order(mc):
    assert mc.meta("ms foo 2 F5 T100", "hi") == b"HD\r\n"
    line, data = mc.meta("mg foo s v f t k O9")
    assert line == b"VA 2 s2 f5 t100 kfoo O9\r\n"
    assert data == b"hi"
    assert mc.meta("mg foo t f s") == b"HD t100 f5 s2\r\n"


def test_mg_ttl_minus_one_when_no_expiry(mc):
    assert mc.meta("ms foo 2", "hi") == b"HD\r\n"
    assert mc.meta("mg foo t") == b"HD t-1\r\n"


def test_mg_cas_matches_gets(mc):
    assert mc.set("foo", "bar") == b"STORED\r\n"
    _, cas = mc.gets("foo")
    assert mc.meta("mg foo c") == b"HD c%d\r\n" % cas


def test_mg_hit_and_last_access(mc):
    assert mc.meta("ms foo 2", "hi") == b"HD\r\n"
    assert mc.meta("mg foo h l") == b"HD h0 l0\r\n"
    assert mc.meta("mg foo h") == b"HD h1\r\n"
    time.sleep(2.2)
    line = mc.meta("mg foo l h")
    m = re.match(rb"HD l(\d+) h1\r\n$", line)
    assert m and 1 <= int(m.group(1)) <= 3, line


def test_mg_opaque_and_key_on_miss(mc):
    assert mc.meta("mg foo k O123 v") == b"EN kfoo O123\r\n"


def test_mg_quiet(mc):
    assert mc.meta("ms foo 2", "hi") == b"HD\r\n"
    # quiet: a miss says nothing; a hit is still answered
    assert mc.roundtrip(b"mg miss q v\r\nmg foo q v\r\nmg foo q\r\n") == (
        b"VA 2\r\nhi\r\nHD\r\n")


def test_mg_ttl_update(mc):
    assert mc.meta("ms foo 2 T1", "hi") == b"HD\r\n"
    assert mc.meta("mg foo T100 t v") == (b"VA 2 t100\r\n", b"hi")
    time.sleep(2.5)
    assert mc.meta("mg foo v") == (b"VA 2\r\n", b"hi")


def test_mg_base64_key(mc):
    assert mc.meta("ms foo 2", "hi") == b"HD\r\n"
    b = base64.b64encode(b"foo").decode()
    assert mc.meta("mg %s b v" % b) == (b"VA 2\r\n", b"hi")
    assert mc.meta("md %s b k" % b) == b"HD kZm9v b\r\n"
    assert mc.get("foo") is None
    # a binary key only reachable in base64
    bk = base64.b64encode(b"a b\r\n\x00").decode()
    assert mc.meta("ms %s 1 b" % bk, "x") == b"HD\r\n"
    assert mc.meta("mg %s b v" % bk) == (b"VA 1\r\n", b"x")
    assert mc.meta("ma %s b k" % bk) == (
        b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n")


def test_mg_vivify_on_miss(mc):
    line, data = mc.meta("mg viv v N30 t s")
    assert line == b"VA 0 t30 s0 W\r\n" and data == b""
    # the next client sees the placeholder, told another one is winning
    line, data = mc.meta("mg viv v N30")
    assert line == b"VA 0 Z\r\n" and data == b""
    assert mc.meta("ms viv 3", "new") == b"HD\r\n"
    assert mc.meta("mg viv v N30") == (b"VA 3\r\n", b"new")


def test_mg_recache(mc):
    assert mc.meta("ms foo 1 T10", "z") == b"HD\r\n"
    # remaining ttl 10 < 30: this client wins the recache
    assert mc.meta("mg foo R30 v") == (b"VA 1 W\r\n", b"z")
    assert mc.meta("mg foo R30 v") == (b"VA 1 Z\r\n", b"z")
    assert mc.meta("ms foo2 1 T100", "z") == b"HD\r\n"
    assert mc.meta("mg foo2 R30 v") == (b"VA 1\r\n", b"z")


def test_mg_errors(mc):
    assert mc.meta("mg foo v v") == b"CLIENT_ERROR duplicate flag\r\n"
    assert mc.meta("mg foo x") == b"CLIENT_ERROR invalid flag\r\n"
    assert mc.meta("mg foo O" + "1" * 40) == (
        b"CLIENT_ERROR opaque token too long\r\n")
    assert mc.meta("mg " + "k" * 251 + " v") == (
        b"CLIENT_ERROR bad command line format\r\n")
    assert mc.cmd("mg") == b"ERROR\r\n"
    # connection still fine
    assert mc.meta("mn") == b"MN\r\n"


def test_mg_250_byte_key(mc):
    key = "k" * 250
    assert mc.meta("ms %s 1" % key, "x") == b"HD\r\n"
    assert mc.meta("mg %s v" % key) == (b"VA 1\r\n", b"x")


def test_mn(mc):
    assert mc.cmd("mn") == b"MN\r\n"
    mc.send(b"mg a q v\r\nmg b q v\r\nmn\r\n")
    assert mc.readline() == b"MN\r\n"


def test_mg_sees_text_protocol_items(mc):
    assert mc.set("foo", "bar", flags=12) == b"STORED\r\n"
    assert mc.meta("mg foo f v") == (b"VA 3 f12\r\n", b"bar")


def test_me_debug(mc):
    assert mc.cmd("me foo") == b"EN\r\n"
    assert mc.meta("ms foo 2", "hi") == b"HD\r\n"
    line = mc.cmd("me foo")
    assert line.startswith(b"ME foo ") and b"exp=-1" in line, line
