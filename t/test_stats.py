"""stats: names present and counters moving."""

import time

from mc import wait_for

GENERAL = ["pid", "uptime", "time", "version", "pointer_size", "curr_connections",
           "total_connections", "cmd_get", "cmd_set", "cmd_flush", "cmd_touch",
           "get_hits", "get_misses", "get_expired", "delete_misses",
           "delete_hits", "incr_misses", "incr_hits", "decr_misses",
           "decr_hits", "cas_misses", "cas_hits", "cas_badval", "touch_hits",
           "touch_misses", "bytes_read", "bytes_written", "limit_maxbytes",
           "threads", "bytes", "curr_items", "total_items", "evictions",
           "rejected_connections", "max_connections", "rusage_user",
           "rusage_system", "accepting_conns", "reclaimed", "expired_unfetched",
           "evicted_unfetched", "connection_structures"]


def test_stats_names(mc):
    st = mc.stats()
    missing = [n for n in GENERAL if n not in st]
    assert not missing, missing
    assert int(st["pid"]) > 0
    assert st["limit_maxbytes"] == str(64 * 1024 * 1024)
    assert st["threads"] == "4"
    assert st["curr_connections"] != "0"


def test_stats_pid_is_server(server):
    with server.conn() as c:
        assert int(c.stats()["pid"]) == server.proc.pid


def test_stats_counters_move(mc):
    st0 = mc.stats()
    assert mc.set("a", "1") == b"STORED\r\n"
    assert mc.set("b", "22") == b"STORED\r\n"
    mc.get_multi(["a", "b", "c"])
    assert mc.cmd("delete a") == b"DELETED\r\n"
    assert mc.cmd("delete zz") == b"NOT_FOUND\r\n"
    assert mc.cmd("incr b 1") == b"23\r\n"
    assert mc.cmd("incr zz 1") == b"NOT_FOUND\r\n"
    assert mc.cmd("decr b 1") == b"22\r\n"
    assert mc.cmd("decr zz 1") == b"NOT_FOUND\r\n"
    _, cas = mc.gets("b")
    assert mc.store("cas", "b", "x", cas=cas) == b"STORED\r\n"
    assert mc.store("cas", "b", "y", cas=cas) == b"EXISTS\r\n"
    assert mc.store("cas", "zz", "y", cas=cas) == b"NOT_FOUND\r\n"
    st = mc.stats()
    d = lambda n: int(st[n]) - int(st0[n])  # noqa: E731
    assert d("cmd_set") == 5          # 2 sets + 3 cas attempts
    assert d("cmd_get") == 4          # 3 keys + 1 gets key
    assert d("get_hits") == 3
    assert d("get_misses") == 1
    assert d("delete_hits") == 1 and d("delete_misses") == 1
    assert d("incr_hits") == 1 and d("incr_misses") == 1
    assert d("decr_hits") == 1 and d("decr_misses") == 1
    assert d("cas_hits") == 1 and d("cas_badval") == 1 and d("cas_misses") == 1
    assert st["curr_items"] == "1"
    assert d("total_items") >= 3
    assert int(st["bytes_read"]) > int(st0["bytes_read"])
    assert int(st["bytes_written"]) > int(st0["bytes_written"])
    assert int(st["bytes"]) > 0


def settled_connections(c):
    """curr_connections once it stops moving (the fixture's readiness probe
    connection may still be closing)."""
    last = None
    for _ in range(50):
        n = int(c.stats()["curr_connections"])
        if n == last:
            return n
        last = n
        time.sleep(0.1)
    return last


def test_stats_connections(server):
    with server.conn() as c:
        n0 = settled_connections(c)
        t0 = int(c.stats()["total_connections"])
        others = [server.conn() for _ in range(3)]
        for o in others:
            assert o.cmd("version").startswith(b"VERSION")
        st = c.stats()
        assert int(st["curr_connections"]) == n0 + 3
        assert int(st["total_connections"]) == t0 + 3
        for o in others:
            o.close()
        assert wait_for(lambda: int(c.stats()["curr_connections"]) == n0)


def test_stats_reset(mc):
    assert mc.set("a", "1") == b"STORED\r\n"
    mc.get("a")
    assert int(mc.stats()["cmd_get"]) == 1
    assert mc.cmd("stats reset") == b"RESET\r\n"
    st = mc.stats()
    assert st["cmd_get"] == "0" and st["get_hits"] == "0" and st["cmd_set"] == "0"
    assert st["curr_items"] == "1"    # not a counter


def test_stats_settings(mc):
    st = mc.stats("settings")
    for n in ("maxbytes", "maxconns", "tcpport", "num_threads", "cas_enabled",
              "item_size_max", "evictions"):
        assert n in st, n
    assert st["maxbytes"] == str(64 * 1024 * 1024)
    assert st["item_size_max"] == "1048576"
    assert st["cas_enabled"] == "yes"
    assert st["evictions"] == "on"
    assert st["num_threads"] == "4"


def test_stats_settings_follow_flags(server_factory):
    s = server_factory(["-m", "32", "-c", "500", "-t", "2", "-I", "2m", "-C",
                        "-M"])
    with s.conn() as c:
        st = c.stats("settings")
        assert st["maxbytes"] == str(32 * 1024 * 1024)
        assert st["maxconns"] == "500"
        assert st["num_threads"] == "2"
        assert st["item_size_max"] == str(2 * 1024 * 1024)
        assert st["cas_enabled"] == "no"
        assert st["evictions"] == "off"
        assert st["tcpport"] == str(s.port)
        g = c.stats()
        assert g["threads"] == "2"
        assert g["limit_maxbytes"] == str(32 * 1024 * 1024)
        assert g["max_connections"] == "500"


def test_stats_items_and_slabs(mc):
    assert mc.set("a", "1") == b"STORED\r\n"
    items = mc.stats("items")
    assert any(k.startswith("items:") and k.endswith(":number") for k in items)
    assert sum(int(v) for k, v in items.items() if k.endswith(":number")) == 1
    slabs = mc.stats("slabs")
    assert "active_slabs" in slabs and "total_malloced" in slabs


def test_stats_conns(mc):
    st = mc.stats("conns")
    assert any(k.endswith(":state") for k in st), st


def test_stats_unknown(mc):
    assert mc.cmd("stats nonsense") == b"ERROR\r\n"
    assert mc.cmd("version").startswith(b"VERSION ")


def test_stats_too_large_and_evictions_counters(server_factory):
    s = server_factory(["-m", "8"])
    with s.conn() as c:
        assert c.set("big", b"x" * (1024 * 1024 + 1)) == (
            b"SERVER_ERROR object too large for cache\r\n")
        st = c.stats()
        assert st["store_too_large"] == "1"
