"""Meta delete (md)."""


def test_md(mc):
    assert mc.meta("md foo") == b"NF\r\n"
    assert mc.meta("ms foo 2", "hi") == b"HD\r\n"
    assert mc.meta("md foo") == b"HD\r\n"
    assert mc.meta("md foo") == b"NF\r\n"
    assert mc.get("foo") is None


def test_md_key_opaque(mc):
    assert mc.meta("md foo k O7") == b"NF kfoo O7\r\n"
    assert mc.meta("ms foo 2", "hi") == b"HD\r\n"
    assert mc.meta("md foo k O7") == b"HD kfoo O7\r\n"


def test_md_quiet(mc):
    assert mc.meta("ms foo 2", "hi") == b"HD\r\n"
    # quiet hides HD; 1.6.18 still reports NF
    assert mc.roundtrip(b"md foo q\r\nmd foo q\r\n") == b"NF\r\n"


def test_md_cas(mc):
    line = mc.meta("ms foo 2 c", "hi")
    cas = int(line.split()[1][1:])
    assert mc.meta("md foo C%d" % (cas + 1)) == b"EX\r\n"
    assert mc.meta("mg foo v") == (b"VA 2\r\n", b"hi")
    assert mc.meta("md foo C%d" % cas) == b"HD\r\n"
    assert mc.meta("mg foo v") == b"EN\r\n"


def test_md_invalidate_then_stale(mc):
    assert mc.meta("ms foo 1 T100", "x") == b"HD\r\n"
    assert mc.meta("md foo I T30") == b"HD\r\n"
    line, data = mc.meta("mg foo v t")
    assert line == b"VA 1 t30 X W\r\n" and data == b"x"
    line, data = mc.meta("mg foo v t")
    assert line == b"VA 1 t30 Z X\r\n" and data == b"x"
    assert mc.meta("ms foo 1 I", "y") == b"HD\r\n"
    assert mc.meta("mg foo v") == (b"VA 1\r\n", b"y")


def test_md_base64(mc):
    assert mc.meta("ms foo 2", "hi") == b"HD\r\n"
    assert mc.meta("md Zm9v b") == b"HD\r\n"
    assert mc.get("foo") is None


def test_md_errors(mc):
    assert mc.meta("md foo x") == b"CLIENT_ERROR invalid or duplicate flag\r\n"
    assert mc.cmd("md") == b"ERROR\r\n"
    assert mc.meta("md " + "k" * 251) == b"CLIENT_ERROR bad command line format\r\n"
