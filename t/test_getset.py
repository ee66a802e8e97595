"""Storage and retrieval: set/add/replace/append/prepend/get/gets/delete."""

import pytest


def test_set_get(mc):
    assert mc.set("foo", "fooval", flags=5) == b"STORED\r\n"
    mc.send(b"get foo\r\n")
    assert mc.readline() == b"VALUE foo 5 6\r\n"
    assert mc.readline() == b"fooval\r\n"
    assert mc.readline() == b"END\r\n"


def test_get_missing(mc):
    assert mc.cmd("get nothere") == b"END\r\n"


def test_set_overwrites(mc):
    assert mc.set("k", "one") == b"STORED\r\n"
    assert mc.set("k", "two", flags=3) == b"STORED\r\n"
    assert mc.get_multi(["k"]) == {b"k": (3, b"two", None)}


def test_flags_full_32bit_range(mc):
    assert mc.set("k", "v", flags=4294967295) == b"STORED\r\n"
    assert mc.get_multi(["k"])[b"k"][0] == 4294967295


def test_empty_value(mc):
    assert mc.set("e", "") == b"STORED\r\n"
    mc.send(b"get e\r\n")
    assert mc.readline() == b"VALUE e 0 0\r\n"
    assert mc.readline() == b"\r\n"
    assert mc.readline() == b"END\r\n"


def test_binary_value_with_crlf(mc):
    val = bytes(range(256)) + b"\r\n\r\nEND\r\n" + b"\x00" * 10
    assert mc.set("bin", val) == b"STORED\r\n"
    assert mc.get("bin") == val


@pytest.mark.parametrize("size", [1, 1023, 1024, 4096, 100000, 1024 * 1024 - 512])
def test_value_sizes(mc, size):
    val = (b"0123456789abcdef" * (size // 16 + 1))[:size]
    assert mc.set("big", val) == b"STORED\r\n"
    assert mc.get("big") == val


def test_add(mc):
    assert mc.store("add", "k", "a") == b"STORED\r\n"
    assert mc.store("add", "k", "b") == b"NOT_STORED\r\n"
    assert mc.get("k") == b"a"


def test_replace(mc):
    assert mc.store("replace", "k", "a") == b"NOT_STORED\r\n"
    assert mc.get("k") is None
    assert mc.set("k", "a") == b"STORED\r\n"
    assert mc.store("replace", "k", "b", flags=9) == b"STORED\r\n"
    assert mc.get_multi(["k"])[b"k"][:2] == (9, b"b")


def test_append_prepend(mc):
    assert mc.store("append", "k", "x") == b"NOT_STORED\r\n"
    assert mc.store("prepend", "k", "x") == b"NOT_STORED\r\n"
    assert mc.get("k") is None
    assert mc.set("k", "mid", flags=7) == b"STORED\r\n"
    assert mc.store("append", "k", "_end", flags=1) == b"STORED\r\n"
    assert mc.store("prepend", "k", "start_", flags=2) == b"STORED\r\n"
    # append/prepend keep the item's flags
    assert mc.get_multi(["k"]) == {b"k": (7, b"start_mid_end", None)}


def test_multi_get_order_and_missing(mc):
    for k in ("a", "b", "c"):
        assert mc.set(k, k * 3) == b"STORED\r\n"
    mc.send(b"get c missing a b a\r\n")
    assert mc.readline() == b"VALUE c 0 3\r\n"
    assert mc.readline() == b"ccc\r\n"
    assert mc.readline() == b"VALUE a 0 3\r\n"
    assert mc.readline() == b"aaa\r\n"
    assert mc.readline() == b"VALUE b 0 3\r\n"
    assert mc.readline() == b"bbb\r\n"
    # a key asked twice is answered twice
    assert mc.readline() == b"VALUE a 0 3\r\n"
    assert mc.readline() == b"aaa\r\n"
    assert mc.readline() == b"END\r\n"


def test_many_keys_get(mc):
    keys = ["key%04d" % i for i in range(600)]
    for k in keys[::2]:
        mc.set(k, k, noreply=True)
    r = mc.get_multi(keys)
    assert sorted(r) == sorted(k.encode() for k in keys[::2])
    assert all(v[1] == k for k, v in r.items())


def test_gets_returns_cas(mc):
    assert mc.set("k", "v") == b"STORED\r\n"
    mc.send(b"gets k\r\n")
    line = mc.readline()
    parts = line.split()
    assert parts[:4] == [b"VALUE", b"k", b"0", b"1"] and len(parts) == 5
    assert int(parts[4]) > 0
    assert mc.readline() == b"v\r\n"
    assert mc.readline() == b"END\r\n"


def test_delete(mc):
    assert mc.cmd("delete k") == b"NOT_FOUND\r\n"
    assert mc.set("k", "v") == b"STORED\r\n"
    assert mc.cmd("delete k") == b"DELETED\r\n"
    assert mc.get("k") is None
    assert mc.cmd("delete k") == b"NOT_FOUND\r\n"


def test_delete_with_zero_time(mc):
    assert mc.set("k", "v") == b"STORED\r\n"
    assert mc.cmd("delete k 0") == b"DELETED\r\n"


def test_delete_with_nonzero_time_rejected(mc):
    assert mc.set("k", "v") == b"STORED\r\n"
    assert mc.cmd("delete k 5") == (
        b"CLIENT_ERROR bad command line format.  "
        b"Usage: delete <key> [noreply]\r\n")
    assert mc.get("k") == b"v"


def test_key_250_bytes_ok(mc):
    key = "k" * 250
    assert mc.set(key, "v") == b"STORED\r\n"
    assert mc.get(key) == b"v"


def test_keys_are_case_sensitive(mc):
    assert mc.set("Key", "upper") == b"STORED\r\n"
    assert mc.set("key", "lower") == b"STORED\r\n"
    assert mc.get("Key") == b"upper"
    assert mc.get("key") == b"lower"


def test_many_connections_share_store(server):
    conns = [server.conn() for _ in range(20)]
    try:
        for i, c in enumerate(conns):
            assert c.set("k%d" % i, "v%d" % i) == b"STORED\r\n"
        for i, c in enumerate(conns):
            j = (i + 7) % len(conns)
            assert c.get("k%d" % j) == ("v%d" % j).encode()
    finally:
        for c in conns:
            c.close()


def test_version(mc):
    line = mc.cmd("version")
    assert line.startswith(b"VERSION ") and line.endswith(b"\r\n")
    assert len(line) > len(b"VERSION \r\n")


def test_verbosity(mc):
    assert mc.cmd("verbosity 1") == b"OK\r\n"
    assert mc.cmd("verbosity 0") == b"OK\r\n"
    mc.send(b"verbosity 1 noreply\r\n")
    assert mc.cmd("version").startswith(b"VERSION ")


def test_quit_closes(mc):
    mc.send(b"quit\r\n")
    assert mc.is_closed()
