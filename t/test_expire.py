"""Expiration times: 0 never, relative up to 30 days, absolute unix time
above that, negative means already expired."""

import time

THIRTY_DAYS = 60 * 60 * 24 * 30


def test_exptime_zero_never_expires(mc):
    assert mc.set("k", "v", exptime=0) == b"STORED\r\n"
    assert mc.get("k") == b"v"


def test_negative_exptime_expired_immediately(mc):
    assert mc.set("k", "v", exptime=-1) == b"STORED\r\n"
    assert mc.get("k") is None
    # replaces a live item too
    assert mc.set("k2", "v") == b"STORED\r\n"
    assert mc.set("k2", "w", exptime=-1000) == b"STORED\r\n"
    assert mc.get("k2") is None
    # add succeeds again since the key is gone
    assert mc.store("add", "k2", "x") == b"STORED\r\n"


def test_absolute_exptime_in_past_expired(mc):
    past = int(time.time()) - 10
    assert past > THIRTY_DAYS
    assert mc.set("k", "v", exptime=past) == b"STORED\r\n"
    assert mc.get("k") is None
    # 30 days + 1 s is an absolute time in 1970: long gone
    assert mc.set("k", "v", exptime=THIRTY_DAYS + 1) == b"STORED\r\n"
    assert mc.get("k") is None


def test_relative_and_absolute_expiry(mc):
    now = time.time()
    assert mc.set("rel", "v", exptime=1) == b"STORED\r\n"
    assert mc.set("abs", "v", exptime=int(now) + 2) == b"STORED\r\n"
    assert mc.set("long", "v", exptime=100) == b"STORED\r\n"
    assert mc.set("max_rel", "v", exptime=THIRTY_DAYS) == b"STORED\r\n"
    assert mc.set("far_abs", "v", exptime=int(now) + 1000) == b"STORED\r\n"
    assert mc.get("rel") == b"v"
    assert mc.get("abs") == b"v"
    time.sleep(3.2)
    assert mc.get("rel") is None
    assert mc.get("abs") is None
    assert mc.get("long") == b"v"
    assert mc.get("max_rel") == b"v"
    assert mc.get("far_abs") == b"v"


def test_expired_items_invisible_to_all_commands(mc):
    for k in ("a", "b", "c", "d", "e", "f", "g"):
        assert mc.set(k, "1", exptime=1) == b"STORED\r\n"
    time.sleep(2.5)
    assert mc.cmd("incr a 1") == b"NOT_FOUND\r\n"
    assert mc.store("append", "b", "x") == b"NOT_STORED\r\n"
    assert mc.store("replace", "c", "x") == b"NOT_STORED\r\n"
    assert mc.cmd("delete d") == b"NOT_FOUND\r\n"
    assert mc.cmd("touch e 10") == b"NOT_FOUND\r\n"
    assert mc.store("add", "f", "x") == b"STORED\r\n"
    assert mc.get("f") == b"x"
    assert mc.get_multi(["g"], verb="gets") == {}


def test_expired_stat_items_reclaimed(mc):
    assert mc.set("k", "v", exptime=1) == b"STORED\r\n"
    assert mc.stats()["curr_items"] == "1"
    time.sleep(2.5)
    assert mc.get("k") is None
    assert mc.stats()["curr_items"] == "0"
