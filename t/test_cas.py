"""cas and gets: compare-and-swap semantics and CAS unique numbers."""


def cas_of(mc, key):
    r = mc.gets(key)
    assert r is not None, key
    return r[1]


def test_cas_missing_key(mc):
    assert mc.store("cas", "nokey", "v", cas=1) == b"NOT_FOUND\r\n"


def test_cas_success_and_stale(mc):
    assert mc.set("k", "v1") == b"STORED\r\n"
    c1 = cas_of(mc, "k")
    assert mc.store("cas", "k", "v2", cas=c1) == b"STORED\r\n"
    assert mc.get("k") == b"v2"
    # the old unique is stale now
    assert mc.store("cas", "k", "v3", cas=c1) == b"EXISTS\r\n"
    assert mc.get("k") == b"v2"


def test_cas_changes_on_every_write(mc):
    assert mc.set("k", "v") == b"STORED\r\n"
    seen = [cas_of(mc, "k")]
    assert mc.set("k", "w") == b"STORED\r\n"
    seen.append(cas_of(mc, "k"))
    assert mc.store("append", "k", "x") == b"STORED\r\n"
    seen.append(cas_of(mc, "k"))
    assert mc.store("prepend", "k", "x") == b"STORED\r\n"
    seen.append(cas_of(mc, "k"))
    assert mc.store("replace", "k", "1") == b"STORED\r\n"
    seen.append(cas_of(mc, "k"))
    assert mc.cmd("incr k 1") == b"2\r\n"
    seen.append(cas_of(mc, "k"))
    assert len(set(seen)) == len(seen), seen


def test_cas_stable_on_read(mc):
    assert mc.set("k", "v") == b"STORED\r\n"
    assert cas_of(mc, "k") == cas_of(mc, "k")


def test_cas_unique_across_keys(mc):
    ids = []
    for i in range(50):
        assert mc.set("k%d" % i, "v") == b"STORED\r\n"
    r = mc.get_multi(["k%d" % i for i in range(50)], verb="gets")
    ids = [v[2] for v in r.values()]
    assert len(set(ids)) == 50


def test_cas_increasing(mc):
    last = 0
    for i in range(20):
        assert mc.set("k%d" % (i % 3), "v") == b"STORED\r\n"
        c = cas_of(mc, "k%d" % (i % 3))
        assert c > last
        last = c


def test_cas_after_delete_not_found(mc):
    assert mc.set("k", "v") == b"STORED\r\n"
    c = cas_of(mc, "k")
    assert mc.cmd("delete k") == b"DELETED\r\n"
    assert mc.store("cas", "k", "v2", cas=c) == b"NOT_FOUND\r\n"


def test_cas_race_two_clients(server):
    a, b = server.conn(), server.conn()
    try:
        assert a.set("k", "0") == b"STORED\r\n"
        ca = cas_of(a, "k")
        cb = cas_of(b, "k")
        assert ca == cb
        assert a.store("cas", "k", "a", cas=ca) == b"STORED\r\n"
        assert b.store("cas", "k", "b", cas=cb) == b"EXISTS\r\n"
        assert b.get("k") == b"a"
    finally:
        a.close()
        b.close()


def test_cas_noreply(mc):
    assert mc.set("k", "v") == b"STORED\r\n"
    c = cas_of(mc, "k")
    mc.store("cas", "k", "new", cas=c, noreply=True)
    mc.store("cas", "k", "stale", cas=c, noreply=True)
    assert mc.get("k") == b"new"


def test_cas_keeps_flags_given(mc):
    assert mc.set("k", "v", flags=1) == b"STORED\r\n"
    c = cas_of(mc, "k")
    assert mc.store("cas", "k", "w", flags=42, cas=c) == b"STORED\r\n"
    assert mc.get_multi(["k"])[b"k"][:2] == (42, b"w")


def test_cas_bad_unique(mc):
    assert mc.set("k", "v") == b"STORED\r\n"
    # missing cas unique: the command line is not a cas command
    assert mc.roundtrip(b"cas k 0 0 1\r\nx\r\n") == b"ERROR\r\nERROR\r\n"
    assert mc.roundtrip(b"cas k 0 0 1 abc\r\nx\r\n") == (
        b"CLIENT_ERROR bad command line format\r\nERROR\r\n")
    assert mc.get("k") == b"v"
