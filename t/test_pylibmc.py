"""Round trips through pylibmc (libmemcached, text protocol)."""

import time

import pytest

pylibmc = pytest.importorskip("pylibmc")


@pytest.fixture
def client(server):
    c = pylibmc.Client(["127.0.0.1:%d" % server.port], binary=False,
                       behaviors={"cas": True, "connect_timeout": 5000,
                                  "receive_timeout": 5000000,
                                  "send_timeout": 5000000})
    yield c
    c.disconnect_all()


def test_set_get(client):
    assert client.set("k", b"v")
    assert client.get("k") == b"v"
    assert client.get("missing") is None


def test_multi(client):
    data = {"k%d" % i: b"v%d" % i for i in range(100)}
    assert client.set_multi(data) == []
    assert client.get_multi(list(data) + ["nope"]) == data
    assert client.delete_multi(["k1", "k2"])
    assert client.get_multi(["k1", "k2", "k3"]) == {"k3": b"v3"}


def test_add_replace(client):
    assert client.add("k", b"1")
    assert not client.add("k", b"2")
    assert client.replace("k", b"3")
    assert not client.replace("nope", b"3")
    assert client.get("k") == b"3"


def test_append_prepend(client):
    client.set("k", b"mid")
    assert client.append("k", b">")
    assert client.prepend("k", b"<")
    assert client.get("k") == b"<mid>"
    assert not client.append("nope", b"x")


def test_gets_cas(client):
    client.set("k", b"v")
    v, cas = client.gets("k")
    assert v == b"v" and cas
    assert client.cas("k", b"w", cas)
    assert not client.cas("k", b"x", cas)
    assert client.get("k") == b"w"


def test_incr_decr(client):
    client.set("n", b"10")
    assert client.incr("n", 5) == 15
    assert client.decr("n", 20) == 0
    with pytest.raises(pylibmc.NotFound):
        client.incr("nope", 1)


def test_delete(client):
    client.set("k", b"v")
    assert client.delete("k")
    assert not client.delete("k")


def test_types_via_flags(client):
    client.set("i", 42)
    client.set("s", "text")
    client.set("l", [1, 2, {"a": 3}])
    assert client.get("i") == 42
    assert client.get("s") == "text"
    assert client.get("l") == [1, 2, {"a": 3}]


def test_touch_expire(client):
    client.set("k", b"v", time=1)
    client.set("k2", b"v", time=1)
    assert client.touch("k", 100)
    time.sleep(2.5)
    assert client.get("k") == b"v"
    assert client.get("k2") is None


def test_flush_all(client):
    client.set("k", b"v")
    assert client.flush_all()
    assert client.get("k") is None


def test_stats(client):
    st = client.get_stats()
    assert len(st) == 1
    assert "curr_items" in st[0][1]
