"""flush_all, immediate and delayed."""

import time


def test_flush_all(mc):
    for i in range(10):
        assert mc.set("k%d" % i, "v") == b"STORED\r\n"
    assert mc.cmd("flush_all") == b"OK\r\n"
    assert mc.get_multi(["k%d" % i for i in range(10)]) == {}
    assert mc.store("add", "k1", "n") == b"STORED\r\n"
    assert mc.store("replace", "k2", "n") == b"NOT_STORED\r\n"
    assert mc.cmd("incr k3 1") == b"NOT_FOUND\r\n"


def test_set_right_after_flush_visible(mc):
    assert mc.set("k", "old") == b"STORED\r\n"
    assert mc.cmd("flush_all") == b"OK\r\n"
    assert mc.set("k", "new") == b"STORED\r\n"
    assert mc.get("k") == b"new"


def test_flush_all_zero(mc):
    assert mc.set("k", "v") == b"STORED\r\n"
    assert mc.cmd("flush_all 0") == b"OK\r\n"
    assert mc.get("k") is None


def test_flush_all_noreply(mc):
    assert mc.set("k", "v") == b"STORED\r\n"
    assert mc.roundtrip(b"flush_all noreply\r\n") == b""
    assert mc.get("k") is None
    assert mc.set("k", "v") == b"STORED\r\n"
    assert mc.roundtrip(b"flush_all 0 noreply\r\n") == b""
    assert mc.get("k") is None


def test_flush_all_delayed(mc):
    assert mc.set("k", "v") == b"STORED\r\n"
    assert mc.cmd("flush_all 2") == b"OK\r\n"
    assert mc.get("k") == b"v"
    time.sleep(3.2)
    assert mc.get("k") is None
    # items stored after the deadline are fine
    assert mc.set("k", "w") == b"STORED\r\n"
    assert mc.get("k") == b"w"


def test_flush_all_bad_arg(mc):
    assert mc.set("k", "v") == b"STORED\r\n"
    assert mc.cmd("flush_all abc") == b"CLIENT_ERROR invalid exptime argument\r\n"
    assert mc.get("k") == b"v"


def test_flush_counts_in_stats(mc):
    before = int(mc.stats()["cmd_flush"])
    assert mc.cmd("flush_all") == b"OK\r\n"
    assert int(mc.stats()["cmd_flush"]) == before + 1
