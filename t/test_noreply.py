"""noreply: every storage/update command stays silent and still acts."""


def test_noreply_storage(mc):
    mc.send(b"set k 0 0 1 noreply\r\na\r\n")
    mc.send(b"add k 0 0 1 noreply\r\nb\r\n")          # fails silently
    mc.send(b"add k2 0 0 1 noreply\r\nc\r\n")
    mc.send(b"replace k2 5 0 1 noreply\r\nd\r\n")
    mc.send(b"append k 0 0 2 noreply\r\nzz\r\n")
    mc.send(b"prepend k 0 0 2 noreply\r\nyy\r\n")
    assert mc.get("k") == b"yyazz"
    assert mc.get_multi(["k2"])[b"k2"][:2] == (5, b"d")


def test_noreply_failures_silent(mc):
    mc.send(b"replace none 0 0 1 noreply\r\nx\r\n")
    mc.send(b"append none 0 0 1 noreply\r\nx\r\n")
    mc.send(b"prepend none 0 0 1 noreply\r\nx\r\n")
    mc.send(b"cas none 0 0 1 1 noreply\r\nx\r\n")
    mc.send(b"incr none 1 noreply\r\n")
    mc.send(b"decr none 1 noreply\r\n")
    mc.send(b"delete none noreply\r\n")
    mc.send(b"touch none 10 noreply\r\n")
    assert mc.cmd("version").startswith(b"VERSION ")
    assert mc.nothing_pending()


def test_noreply_delete_incr_touch(mc):
    assert mc.set("n", "10") == b"STORED\r\n"
    mc.send(b"incr n 5 noreply\r\n")
    assert mc.get("n") == b"15"
    mc.send(b"decr n 3 noreply\r\n")
    assert mc.get("n") == b"12"
    mc.send(b"touch n 100 noreply\r\n")
    mc.send(b"delete n noreply\r\n")
    assert mc.get("n") is None


def test_noreply_flush_all(mc):
    assert mc.set("k", "v") == b"STORED\r\n"
    mc.send(b"flush_all noreply\r\n")
    assert mc.get("k") is None


def test_noreply_only_replies_after(mc):
    """A silent batch followed by one loud command yields exactly one line."""
    batch = b"".join(b"set k%d 0 0 1 noreply\r\nx\r\n" % i for i in range(100))
    assert mc.roundtrip(batch + b"get k99\r\n") == b"VALUE k99 0 1\r\nx\r\nEND\r\n"


def test_noreply_bad_data_chunk_silent(mc):
    # noreply also silences "CLIENT_ERROR bad data chunk"; the stray "\r\n"
    # after the 3 bytes read as data then parses as an empty command.
    assert mc.roundtrip(b"set k 0 0 1 noreply\r\nabc\r\n") == b"ERROR\r\n"
    assert mc.get("k") is None


def test_noreply_too_large_silent_and_swallowed(mc):
    big = b"x" * (2 * 1024 * 1024)
    assert mc.roundtrip(b"set k 0 0 %d noreply\r\n%s\r\n" % (len(big), big)) == b""
    assert mc.get("k") is None
    assert mc.set("k", "ok") == b"STORED\r\n"


def test_noreply_bad_command_line(mc):
    # the bad line is answered silently; its data line is then an unknown
    # command, and that ERROR is not silenced
    assert mc.roundtrip(b"set k 0 0 -1 noreply\r\nx\r\n") == b"ERROR\r\n"
    assert mc.roundtrip(b"set k 0 0 abc noreply\r\nx\r\n") == b"ERROR\r\n"
    assert mc.roundtrip(b"incr k abc noreply\r\n") == b""
    assert mc.roundtrip(b"touch k abc noreply\r\n") == b""
    assert mc.roundtrip(b"delete k 5 noreply\r\n") == b""
    assert mc.get("k") is None
