"""Meta arithmetic (ma)."""

import re


def test_ma_missing(mc):
    assert mc.meta("ma cnt") == b"NF\r\n"
    assert mc.meta("ma cnt v") == b"NF\r\n"


def test_ma_basic(mc):
    assert mc.meta("ms cnt 1", "5") == b"HD\r\n"
    assert mc.meta("ma cnt") == b"HD\r\n"
    assert mc.get("cnt") == b"6"
    assert mc.meta("ma cnt v") == (b"VA 1\r\n", b"7")
    assert mc.meta("ma cnt D10 v") == (b"VA 2\r\n", b"17")


def test_ma_modes(mc):
    assert mc.meta("ms cnt 2", "10") == b"HD\r\n"
    assert mc.meta("ma cnt MI D5 v") == (b"VA 2\r\n", b"15")
    assert mc.meta("ma cnt M+ v") == (b"VA 2\r\n", b"16")
    assert mc.meta("ma cnt MD D6 v") == (b"VA 2\r\n", b"10")
    assert mc.meta("ma cnt M- v") == (b"VA 1\r\n", b"9")
    assert mc.meta("ma cnt MD D100 v") == (b"VA 1\r\n", b"0")
    assert mc.meta("ma cnt Mx v") == (
        b"CLIENT_ERROR invalid mode for ma M token\r\n")


def test_ma_autovivify(mc):
    # N creates the item with J's initial value; the delta is not applied
    assert mc.meta("ma cnt N0 J13 v") == (b"VA 2\r\n", b"13")
    assert mc.meta("ma cnt v") == (b"VA 2\r\n", b"14")
    assert mc.meta("ma n3 N0 J5 MD D10 v") == (b"VA 1\r\n", b"5")
    assert mc.meta("ma n4 N0 v") == (b"VA 1\r\n", b"0")


def test_ma_wrap_and_floor(mc):
    assert mc.meta("ma n N0 J18446744073709551615 v") == (
        b"VA 20\r\n", b"18446744073709551615")
    assert mc.meta("ma n v") == (b"VA 1\r\n", b"0")
    assert mc.meta("ma n MD D5 v") == (b"VA 1\r\n", b"0")


def test_ma_return_flags(mc):
    assert mc.meta("ms cnt 1 T100", "1") == b"HD\r\n"
    line, data = mc.meta("ma cnt v t c k O3")
    m = re.match(rb"VA 1 t(\d+) c(\d+) kcnt O3\r\n$", line)
    assert m and 99 <= int(m.group(1)) <= 100, line
    assert data == b"2"
    assert mc.gets("cnt") == (b"2", int(m.group(2)))


def test_ma_cas(mc):
    line = mc.meta("ms cnt 1 c", "1")
    cas = int(line.split()[1][1:])
    assert mc.meta("ma cnt C%d v" % (cas + 5)) == b"EX\r\n"
    assert mc.meta("ma cnt C%d v" % cas) == (b"VA 1\r\n", b"2")


def test_ma_quiet(mc):
    assert mc.meta("ms cnt 1", "1") == b"HD\r\n"
    assert mc.roundtrip(b"ma cnt q\r\nma nope q\r\n") == b"NF\r\n"
    assert mc.get("cnt") == b"2"


def test_ma_non_numeric(mc):
    assert mc.meta("ms str 3", "abc") == b"HD\r\n"
    assert mc.meta("ma str") == (
        b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n")


def test_ma_bad_delta(mc):
    assert mc.meta("ms cnt 1", "1") == b"HD\r\n"
    for d in ("D-1", "Dabc", "D18446744073709551616"):
        assert mc.meta("ma cnt " + d) == (
            b"CLIENT_ERROR invalid or duplicate flag\r\n"), d
    assert mc.get("cnt") == b"1"


def test_ma_no_key(mc):
    assert mc.cmd("ma") == b"ERROR\r\n"


def test_ma_shrink_pads_in_place(mc):
    assert mc.meta("ms cnt 3", "100") == b"HD\r\n"
    assert mc.meta("ma cnt MD D91 v") == (b"VA 1\r\n", b"9")
    assert mc.roundtrip(b"get cnt\r\n") == b"VALUE cnt 0 3\r\n9  \r\nEND\r\n"
    assert mc.meta("mg cnt s v") == (b"VA 3 s3\r\n", b"9  ")
