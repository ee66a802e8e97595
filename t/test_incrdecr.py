"""incr/decr: unsigned 64-bit arithmetic on decimal values."""

import pytest


def test_incr_decr_basic(mc):
    assert mc.set("num", "1") == b"STORED\r\n"
    assert mc.cmd("incr num 1") == b"2\r\n"
    assert mc.get("num") == b"2"
    assert mc.cmd("incr num 8") == b"10\r\n"
    assert mc.get("num") == b"10"
    assert mc.cmd("decr num 1") == b"9\r\n"
    assert mc.cmd("decr num 9") == b"0\r\n"
    assert mc.cmd("decr num 5") == b"0\r\n"


def test_decr_shrinks_length(mc):
    assert mc.set("num", "100") == b"STORED\r\n"
    assert mc.cmd("decr num 91") == b"9\r\n"
    # memcached rewrites the number in place, padded with spaces
    assert mc.roundtrip(b"get num\r\n") == b"VALUE num 0 3\r\n9  \r\nEND\r\n"
    assert mc.cmd("incr num 1") == b"10\r\n"
    assert mc.roundtrip(b"get num\r\n") == b"VALUE num 0 3\r\n10 \r\nEND\r\n"
    assert mc.cmd("incr num 990") == b"1000\r\n"
    assert mc.roundtrip(b"get num\r\n") == b"VALUE num 0 4\r\n1000\r\nEND\r\n"


def test_incr_wraps_at_2_64(mc):
    assert mc.set("num", "18446744073709551615") == b"STORED\r\n"
    assert mc.cmd("incr num 1") == b"0\r\n"
    assert mc.set("num", "18446744073709551610") == b"STORED\r\n"
    assert mc.cmd("incr num 10") == b"4\r\n"


def test_incr_max_delta(mc):
    assert mc.set("num", "10") == b"STORED\r\n"
    assert mc.cmd("incr num 18446744073709551615") == b"9\r\n"


def test_decr_floors_at_zero(mc):
    assert mc.set("num", "5") == b"STORED\r\n"
    assert mc.cmd("decr num 18446744073709551615") == b"0\r\n"


def test_incr_missing(mc):
    assert mc.cmd("incr nokey 1") == b"NOT_FOUND\r\n"
    assert mc.cmd("decr nokey 1") == b"NOT_FOUND\r\n"


@pytest.mark.parametrize("value", ["abc", "1a2", "-1", "", "184467440737095516159"])
def test_incr_non_numeric_value(mc, value):
    assert mc.set("num", value) == b"STORED\r\n"
    assert mc.cmd("incr num 1") == (
        b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n")
    assert mc.cmd("decr num 1") == (
        b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n")
    assert mc.get("num") == value.encode()


@pytest.mark.parametrize("delta", ["abc", "-1", "18446744073709551616", "1x"])
def test_invalid_delta(mc, delta):
    assert mc.set("num", "1") == b"STORED\r\n"
    assert mc.cmd("incr num " + delta) == (
        b"CLIENT_ERROR invalid numeric delta argument\r\n")
    assert mc.cmd("decr num " + delta) == (
        b"CLIENT_ERROR invalid numeric delta argument\r\n")
    assert mc.get("num") == b"1"


def test_incr_keeps_flags(mc):
    assert mc.set("num", "41", flags=77) == b"STORED\r\n"
    assert mc.cmd("incr num 1") == b"42\r\n"
    assert mc.get_multi(["num"])[b"num"][:2] == (77, b"42")


def test_incr_grows_length(mc):
    assert mc.set("num", "99") == b"STORED\r\n"
    assert mc.cmd("incr num 1") == b"100\r\n"
    assert mc.get("num") == b"100"
    assert mc.set("num", "9") == b"STORED\r\n"
    assert mc.cmd("incr num 18446744073709551600") == b"18446744073709551609\r\n"
    assert mc.get("num") == b"18446744073709551609"


def test_incr_leading_space_value(mc):
    # strtoull skips leading whitespace
    assert mc.set("num", " 1") == b"STORED\r\n"
    assert mc.cmd("incr num 1") == b"2\r\n"


def test_incr_wrong_arg_count(mc):
    assert mc.cmd("incr num") == b"ERROR\r\n"
    assert mc.cmd("incr") == b"ERROR\r\n"


def test_incr_noreply(mc):
    assert mc.set("num", "1") == b"STORED\r\n"
    mc.send(b"incr num 5 noreply\r\ndecr num 2 noreply\r\n")
    assert mc.get("num") == b"4"


def test_incr_key_too_long(mc):
    assert mc.cmd("incr " + "k" * 251 + " 1") == (
        b"CLIENT_ERROR bad command line format\r\n")
