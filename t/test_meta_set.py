"""Meta set (ms): modes, cas, ttl, flags, quiet, base64, invalidation."""

import re
import time

from conftest import ftm_only


def test_ms_basic(mc):
    assert mc.meta("ms foo 2", "hi") == b"HD\r\n"
    assert mc.get_multi(["foo"]) == {b"foo": (0, b"hi", None)}


def test_ms_flags_ttl(mc):
    assert mc.meta("ms foo 2 F77 T100", "hi") == b"HD\r\n"
    assert mc.get_multi(["foo"])[b"foo"][:2] == (77, b"hi")
    assert mc.meta("mg foo t") == b"HD t100\r\n"


def test_ms_return_cas_key_opaque(mc):
    line = mc.meta("ms foo 2 c k O42", "hi")
    assert line.startswith(b"HD c") and line.endswith(b" kfoo O42\r\n"), line
    cas = int(line.split()[1][1:])
    assert mc.gets("foo") == (b"hi", cas)


def test_ms_modes(mc):
    assert mc.meta("ms foo 2 ME", "hi") == b"HD\r\n"      # add
    assert mc.meta("ms foo 2 ME", "xx") == b"NS\r\n"
    assert mc.meta("ms foo 2 MA", "aa") == b"HD\r\n"      # append
    assert mc.meta("ms foo 2 MP", "pp") == b"HD\r\n"      # prepend
    assert mc.meta("mg foo v") == (b"VA 6\r\n", b"pphiaa")
    assert mc.meta("ms foo 1 MR", "r") == b"HD\r\n"       # replace
    assert mc.meta("ms foo 1 MS", "s") == b"HD\r\n"       # set
    assert mc.meta("mg foo v") == (b"VA 1\r\n", b"s")
    assert mc.meta("ms nope 1 MR", "r") == b"NS\r\n"
    assert mc.meta("ms nope 1 MA", "r") == b"NS\r\n"
    assert mc.meta("ms nope 1 MP", "r") == b"NS\r\n"
    assert mc.meta("mg nope v") == b"EN\r\n"


def test_ms_lowercase_modes(mc):
    # protocol.txt lists mode switches as upper case; 1.6.18 rejects others
    assert mc.meta("ms foo 2 MZ", "hi") == (
        b"CLIENT_ERROR invalid mode for ms M token\r\n")
    assert mc.meta("mg foo v") == b"EN\r\n"


def test_ms_append_missing_with_N(mc):
    # 1.6.18 does not autovivify on append: N is accepted and ignored
    assert mc.meta("ms viv 2 MA N30", "ab") == b"NS\r\n"
    assert mc.meta("mg viv v") == b"EN\r\n"


def test_ms_cas(mc):
    assert mc.meta("ms foo 2 C1", "hi") == b"NF\r\n"
    line = mc.meta("ms foo 2 c", "hi")
    cas = int(line.split()[1][1:])
    assert mc.meta("ms foo 2 C%d" % (cas + 1000), "no") == b"EX\r\n"
    assert mc.meta("ms foo 2 C%d" % cas, "ok") == b"HD\r\n"
    assert mc.meta("ms foo 2 C%d" % cas, "no") == b"EX\r\n"
    assert mc.meta("mg foo v") == (b"VA 2\r\n", b"ok")


def test_ms_quiet(mc):
    assert mc.roundtrip(b"ms foo 2 q\r\nhi\r\n") == b""
    assert mc.roundtrip(b"ms foo 2 q ME\r\nhi\r\n") == b"NS\r\n"
    assert mc.roundtrip(b"ms foo 2 q C999999\r\nzz\r\n") == b"EX\r\n"
    assert mc.roundtrip(b"ms bar 2 q MR\r\nzz\r\n") == b"NS\r\n"
    assert mc.meta("mg foo v") == (b"VA 2\r\n", b"hi")


def test_ms_invalidate(mc):
    line = mc.meta("ms foo 1 c", "x")
    cas1 = int(line.split()[1][1:])
    assert mc.meta("md foo I") == b"HD\r\n"
    line = mc.meta("mg foo c")
    m = re.match(rb"HD c(\d+) X W\r\n$", line)
    assert m and int(m.group(1)) > cas1, line
    # without I, the old cas is simply wrong
    assert mc.meta("ms foo 1 C%d" % cas1, "n") == b"EX\r\n"
    # with I, a cas older than the stale item's is accepted
    assert mc.meta("ms foo 1 I C%d" % cas1, "y") == b"HD\r\n"
    line, data = mc.meta("mg foo v")
    assert data == b"y" and b" X" in line, line


def test_ms_ttl_expires(mc):
    assert mc.meta("ms foo 1 T1", "x") == b"HD\r\n"
    time.sleep(2.5)
    assert mc.meta("mg foo v") == b"EN\r\n"


def test_ms_negative_ttl(mc):
    assert mc.meta("ms foo 1 T-1", "x") == b"HD\r\n"
    assert mc.meta("mg foo v") == b"EN\r\n"


def test_ms_base64(mc):
    assert mc.meta("ms Zm9v 1 k O5 b", "z") == b"HD kZm9v b O5\r\n"
    assert mc.get("foo") == b"z"
    assert mc.meta("ms foo 1 b", "z") == b"CLIENT_ERROR error decoding key\r\n"


def test_ms_errors(mc):
    # a bad length: nothing is swallowed, the data line is a command
    assert mc.roundtrip(b"ms foo abc\r\nzz\r\n") == (
        b"CLIENT_ERROR bad command line format\r\nERROR\r\n")
    assert mc.roundtrip(b"ms foo -1\r\nz\r\n") == (
        b"CLIENT_ERROR bad command line format\r\nERROR\r\n")
    assert mc.roundtrip(b"ms foo\r\n") == (
        b"CLIENT_ERROR bad command line format\r\n")
    # a bad flag once the length is known: the data is swallowed
    assert mc.roundtrip(b"ms foo 2 X\r\nzz\r\n") == (
        b"CLIENT_ERROR invalid flag\r\n")
    assert mc.roundtrip(b"ms foo 1 F-1\r\nz\r\n") == (
        b"CLIENT_ERROR bad command line format\r\n")
    assert mc.roundtrip(b"ms foo 1 Tabc\r\nz\r\n") == (
        b"CLIENT_ERROR bad token in command line format\r\n")
    assert mc.roundtrip(b"ms foo 2\r\nabcd\r\n") == (
        b"CLIENT_ERROR bad data chunk\r\nERROR\r\n")
    assert mc.meta("mg foo v") == b"EN\r\n"


def test_ms_too_large(mc):
    big = b"z" * (1024 * 1024 + 1)
    assert mc.roundtrip(b"ms big %d\r\n" % len(big) + big + b"\r\n") == (
        b"SERVER_ERROR object too large for cache\r\n")
    assert mc.meta("mg big v") == b"EN\r\n"
    assert mc.meta("ms ok 2", "ok") == b"HD\r\n"


@ftm_only
def test_ms_explicit_cas_E(mc):
    """E (explicit new cas) is in protocol.txt from memcached 1.6.21 on;
    1.6.18 answers "CLIENT_ERROR invalid flag". Issue 2 asks for it."""
    assert mc.meta("ms foo 1 E12345", "z") == b"HD\r\n"
    assert mc.meta("mg foo c v") == (b"VA 1 c12345\r\n", b"z")
    assert mc.meta("ms foo 1 C12345 E99999", "q") == b"HD\r\n"
    assert mc.meta("mg foo c") == b"HD c99999\r\n"
