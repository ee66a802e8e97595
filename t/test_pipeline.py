"""Pipelining: many commands in one send, answered in order."""

import random


def test_pipeline_mixed(mc):
    payload = (b"set a 0 0 1\r\n1\r\n"
               b"get a\r\n"
               b"incr a 5\r\n"
               b"add a 0 0 1\r\nx\r\n"
               b"append a 0 0 1\r\n0\r\n"
               b"get a b\r\n"
               b"delete a\r\n"
               b"delete a\r\n"
               b"bogus\r\n"
               b"mg a v\r\n"
               b"ms a 2 T0\r\nhi\r\n"
               b"mg a v k\r\n"
               b"touch a 100\r\n"
               b"version\r\n")
    mc.send(payload)
    expect = [b"STORED\r\n",
              b"VALUE a 0 1\r\n", b"1\r\n", b"END\r\n",
              b"6\r\n",
              b"NOT_STORED\r\n",
              b"STORED\r\n",
              b"VALUE a 0 2\r\n", b"60\r\n", b"END\r\n",
              b"DELETED\r\n",
              b"NOT_FOUND\r\n",
              b"ERROR\r\n",
              b"EN\r\n",
              b"HD\r\n",
              b"VA 2 ka\r\n", b"hi\r\n",
              b"TOUCHED\r\n"]
    for e in expect:
        assert mc.readline() == e
    assert mc.readline().startswith(b"VERSION ")


def test_pipeline_many_sets_then_gets(mc):
    n = 2000
    payload = b"".join(b"set key%d 0 0 %d\r\n%s\r\n" % (i, len(str(i)), str(i).encode())
                       for i in range(n))
    payload += b"".join(b"get key%d\r\n" % i for i in range(n))
    mc.send(payload)
    for i in range(n):
        assert mc.readline() == b"STORED\r\n", i
    for i in range(n):
        v = str(i).encode()
        assert mc.readline() == b"VALUE key%d 0 %d\r\n" % (i, len(v))
        assert mc.readline() == v + b"\r\n"
        assert mc.readline() == b"END\r\n"


def test_pipeline_byte_at_a_time(mc):
    payload = b"set k 0 0 5\r\nhello\r\nget k\r\nmn\r\n"
    for i in range(len(payload)):
        mc.send(payload[i:i + 1])
    assert mc.read_until(b"MN\r\n") == (
        b"STORED\r\nVALUE k 0 5\r\nhello\r\nEND\r\nMN\r\n")


def test_pipeline_random_split(mc):
    rnd = random.Random(7)
    payload = b""
    expect = b""
    for i in range(300):
        v = b"v" * rnd.randrange(0, 3000)
        payload += b"set k%d 0 0 %d\r\n%s\r\nget k%d\r\n" % (i, len(v), v, i)
        expect += b"STORED\r\nVALUE k%d 0 %d\r\n%s\r\nEND\r\n" % (i, len(v), v)
    pos = 0
    while pos < len(payload):
        step = rnd.randrange(1, 5000)
        mc.send(payload[pos:pos + step])
        pos += step
    assert mc.read_exact(len(expect)) == expect


def test_pipeline_quiet_meta(mc):
    payload = b"".join(b"ms k%d 1 q\r\nx\r\n" % i for i in range(100))
    payload += b"".join(b"mg k%d q v k\r\n" % i for i in range(0, 200, 50))
    payload += b"mn\r\n"
    mc.send(payload)
    assert mc.read_until(b"MN\r\n") == (
        b"VA 1 kk0\r\nx\r\nVA 1 kk50\r\nx\r\nMN\r\n")


def test_pipeline_large_values_interleaved(server):
    big = b"B" * 500000
    with server.conn() as c:
        c.send(b"set big 0 0 %d\r\n%s\r\nset small 0 0 1\r\ns\r\n"
               b"get big small\r\n" % (len(big), big))
        assert c.readline() == b"STORED\r\n"
        assert c.readline() == b"STORED\r\n"
        assert c.readline() == b"VALUE big 0 %d\r\n" % len(big)
        assert c.read_exact(len(big) + 2) == big + b"\r\n"
        assert c.readline() == b"VALUE small 0 1\r\n"
        assert c.readline() == b"s\r\n"
        assert c.readline() == b"END\r\n"


def test_pipeline_slow_reader(server):
    """The server must not drop replies when the client reads late."""
    with server.conn() as c:
        val = b"x" * 1000
        assert c.set("k", val) == b"STORED\r\n"
        n = 5000   # ~5 MB of replies queued before we read any
        c.send(b"get k\r\n" * n)
        expect = b"VALUE k 0 1000\r\n" + val + b"\r\nEND\r\n"
        for i in range(n):
            assert c.read_exact(len(expect)) == expect, i
