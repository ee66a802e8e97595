"""touch, gat, gats: change an item's expiry, optionally fetching it."""

import re
import time


def test_touch(mc):
    assert mc.cmd("touch k 10") == b"NOT_FOUND\r\n"
    assert mc.set("k", "v", exptime=1) == b"STORED\r\n"
    assert mc.cmd("touch k 100") == b"TOUCHED\r\n"
    assert mc.set("k2", "v", exptime=100) == b"STORED\r\n"
    assert mc.cmd("touch k2 1") == b"TOUCHED\r\n"
    time.sleep(2.5)
    assert mc.get("k") == b"v"
    assert mc.get("k2") is None


def test_touch_negative_expires(mc):
    assert mc.set("k", "v") == b"STORED\r\n"
    assert mc.cmd("touch k -1") == b"TOUCHED\r\n"
    assert mc.get("k") is None


def test_touch_bad_exptime(mc):
    assert mc.set("k", "v") == b"STORED\r\n"
    assert mc.cmd("touch k abc") == b"CLIENT_ERROR invalid exptime argument\r\n"
    assert mc.get("k") == b"v"


def test_gat(mc):
    assert mc.cmd("gat 10 k") == b"END\r\n"
    assert mc.set("k", "val", flags=3, exptime=1) == b"STORED\r\n"
    mc.send(b"gat 100 k missing\r\n")
    assert mc.readline() == b"VALUE k 3 3\r\n"
    assert mc.readline() == b"val\r\n"
    assert mc.readline() == b"END\r\n"
    time.sleep(2.5)
    assert mc.get("k") == b"val"


def test_gats(mc):
    assert mc.set("k", "val") == b"STORED\r\n"
    _, cas = mc.gets("k")
    mc.send(b"gats 0 k\r\n")
    assert mc.readline() == b"VALUE k 0 3 %d\r\n" % cas
    assert mc.readline() == b"val\r\n"
    assert mc.readline() == b"END\r\n"


def test_gat_multi(mc):
    for k in ("a", "b"):
        assert mc.set(k, k) == b"STORED\r\n"
    r = mc.get_multi(["0", "a", "x", "b"], verb="gat")
    assert r == {b"a": (0, b"a", None), b"b": (0, b"b", None)}


def test_gat_negative_expires(mc):
    assert mc.set("k", "v") == b"STORED\r\n"
    assert mc.get_multi(["-1", "k"], verb="gat") == {b"k": (0, b"v", None)}
    assert mc.get("k") is None


def test_gat_bad_exptime(mc):
    assert mc.cmd("gat abc k") == b"CLIENT_ERROR invalid exptime argument\r\n"
    assert mc.cmd("gats abc k") == b"CLIENT_ERROR invalid exptime argument\r\n"


def test_gat_no_args(mc):
    assert mc.cmd("gat") == b"ERROR\r\n"
    assert mc.cmd("gats") == b"ERROR\r\n"


def test_touch_noreply(mc):
    assert mc.set("k", "v") == b"STORED\r\n"
    assert mc.roundtrip(b"touch k 1 noreply\r\n") == b""
    time.sleep(2.5)
    assert mc.get("k") is None


def test_touch_stats(mc):
    assert mc.set("k", "v") == b"STORED\r\n"
    assert mc.cmd("touch k 10") == b"TOUCHED\r\n"
    assert mc.cmd("touch z 10") == b"NOT_FOUND\r\n"
    mc.get_multi(["10", "k", "z"], verb="gat")
    st = mc.stats()
    assert st["cmd_touch"] == "4"  # gat counts each key as a touch
    assert st["touch_hits"] == "2"
    assert st["touch_misses"] == "2"
