"""Round trips through pymemcache (text protocol)."""

import time

import pytest

pymemcache = pytest.importorskip("pymemcache")
from pymemcache.client.base import Client  # noqa: E402


@pytest.fixture
def client(server):
    c = Client(("127.0.0.1", server.port), connect_timeout=5, timeout=5,
               default_noreply=False)
    yield c
    c.close()


def test_set_get(client):
    assert client.set("k", b"v") is True
    assert client.get("k") == b"v"
    assert client.get("missing") is None
    assert client.get("missing", default=b"d") == b"d"


def test_set_many_get_many(client):
    data = {"k%d" % i: b"v%d" % i for i in range(100)}
    assert client.set_many(data) == []
    got = client.get_many(list(data) + ["nope"])
    assert got == {k: v for k, v in data.items()}


def test_add_replace(client):
    assert client.add("k", b"1") is True
    assert client.add("k", b"2") is False
    assert client.replace("k", b"3") is True
    assert client.replace("nope", b"3") is False
    assert client.get("k") == b"3"


def test_append_prepend(client):
    assert client.set("k", b"mid") is True
    assert client.append("k", b">") is True
    assert client.prepend("k", b"<") is True
    assert client.get("k") == b"<mid>"
    assert client.append("nope", b"x") is False


def test_gets_cas(client):
    client.set("k", b"v")
    v, cas = client.gets("k")
    assert v == b"v" and cas
    assert client.cas("k", b"w", cas) is True
    assert client.cas("k", b"x", cas) is False
    assert client.cas("nope", b"x", cas) is None
    assert client.get("k") == b"w"
    many = client.gets_many(["k", "nope"])
    assert set(many) == {"k"} and many["k"][0] == b"w"


def test_incr_decr(client):
    client.set("n", b"10")
    assert client.incr("n", 5) == 15
    assert client.decr("n", 20) == 0
    assert client.incr("nope", 1) is None
    client.set("n", b"18446744073709551615")
    assert client.incr("n", 1) == 0


def test_delete(client):
    client.set("k", b"v")
    assert client.delete("k") is True
    assert client.delete("k") is False
    client.set("a", b"1")
    client.set("b", b"2")
    assert client.delete_many(["a", "b"]) is True
    assert client.get_many(["a", "b"]) == {}


def test_touch_and_expire(client):
    client.set("k", b"v", expire=1)
    client.set("k2", b"v", expire=1)
    assert client.touch("k", 100) is True
    assert client.touch("nope", 100) is False
    time.sleep(2.5)
    assert client.get("k") == b"v"
    assert client.get("k2") is None


def test_flush_all(client):
    client.set("k", b"v")
    assert client.flush_all() is True
    assert client.get("k") is None


def test_stats_and_version(client):
    st = client.stats()
    assert b"curr_items" in st
    assert client.version()


class FlagSerde:
    """Exposes the flags the server returns next to the value."""

    def serialize(self, key, value):
        return value[0], value[1]

    def deserialize(self, key, value, flags):
        return value, flags


def test_flags_roundtrip(server):
    c = Client(("127.0.0.1", server.port), timeout=5, serde=FlagSerde())
    try:
        assert c.set("f", (b"x", 123)) is True
        assert c.get("f") == (b"x", 123)
        assert c.set("g", (b"y", 4294967295)) is True
        assert c.get_many(["f", "g"]) == {"f": (b"x", 123),
                                          "g": (b"y", 4294967295)}
    finally:
        c.close()


def test_noreply_client(server):
    c = Client(("127.0.0.1", server.port), timeout=5, default_noreply=True)
    try:
        for i in range(50):
            c.set("k%d" % i, b"v")
        assert c.get("k49") == b"v"
    finally:
        c.close()


def test_large_value(client):
    v = b"L" * (900 * 1024)
    assert client.set("big", v) is True
    assert client.get("big") == v
