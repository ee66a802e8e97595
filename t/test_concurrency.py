"""Many clients at once: atomic arithmetic, cas loops, no lost writes."""

import threading

import pytest


def run_threads(n, fn):
    errors = []

    def wrap(i):
        try:
            fn(i)
        except BaseException as e:  # noqa: BLE001
            errors.append((i, e))
    threads = [threading.Thread(target=wrap, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads), "threads hung"
    assert not errors, errors


@pytest.fixture
def srv4(server_factory):
    return server_factory(["-t", "4"])


def test_concurrent_incr_is_atomic(srv4):
    with srv4.conn() as c:
        assert c.set("n", "0") == b"STORED\r\n"

    def work(i):
        with srv4.conn() as c:
            for _ in range(300):
                line = c.cmd("incr n 1" if i % 2 == 0 else "ma n")
                assert line in (b"HD\r\n",) or line.rstrip().isdigit(), line
    run_threads(8, work)
    with srv4.conn() as c:
        assert c.get("n") == b"2400"


def test_concurrent_cas_loop_no_lost_update(srv4):
    with srv4.conn() as c:
        assert c.set("v", "0") == b"STORED\r\n"

    def work(i):
        with srv4.conn() as c:
            done = 0
            while done < 50:
                val, cas = c.gets("v")
                r = c.store("cas", "v", str(int(val) + 1), cas=cas)
                if r == b"STORED\r\n":
                    done += 1
                else:
                    assert r == b"EXISTS\r\n", r
    run_threads(6, work)
    with srv4.conn() as c:
        assert c.get("v") == b"300"


def test_concurrent_add_one_winner(srv4):
    wins = []
    lock = threading.Lock()

    def work(i):
        with srv4.conn() as c:
            for k in range(100):
                r = c.store("add", "key%d" % k, "t%d" % i)
                if r == b"STORED\r\n":
                    with lock:
                        wins.append(k)
                else:
                    assert r == b"NOT_STORED\r\n", r
    run_threads(6, work)
    assert sorted(wins) == list(range(100))


def test_concurrent_writers_distinct_keys(srv4):
    def work(i):
        with srv4.conn() as c:
            payload = b"".join(b"set t%d_%d 0 0 %d\r\n%s\r\n" % (
                i, k, len(b"%d" % k), b"%d" % k) for k in range(500))
            c.send(payload)
            for _ in range(500):
                assert c.readline() == b"STORED\r\n"
            got = c.get_multi(["t%d_%d" % (i, k) for k in range(500)])
            assert len(got) == 500
            assert all(v[1] == k.split(b"_")[1] for k, v in got.items())
    run_threads(8, work)
    with srv4.conn() as c:
        assert c.stats()["curr_items"] == "4000"


def test_append_from_many_clients(srv4):
    with srv4.conn() as c:
        assert c.set("log", "") == b"STORED\r\n"

    def work(i):
        with srv4.conn() as c:
            for _ in range(100):
                assert c.store("append", "log", b"%c" % (65 + i)) == b"STORED\r\n"
    run_threads(5, work)
    with srv4.conn() as c:
        v = c.get("log")
        assert len(v) == 500
        for i in range(5):
            assert v.count(b"%c" % (65 + i)) == 100
