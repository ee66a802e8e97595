"""Overload and bad clients (issue 7): the connection limit, slow senders
and readers, huge multigets and pipelines, values at -I, and sustained
writes far beyond -m. Stock memcached 1.6 is the reference for what a
client sees; resident memory is read from /proc/PID/status (VmRSS) and
checked against the overhead man/ftmemcached.1 documents under -m.

Every test is bounded to seconds; the ones about "the same worker" run the
server with -t 1 so that the slow client and the others share one thread.
"""

import socket
import struct
import threading
import time

import pytest

from conftest import IS_FTM, ftm_only
from mc import Conn, ServerClosed, wait_for

TOO_MANY = b"ERROR Too many open connections\r\n"
MIB = 1 << 20


def rss_bytes(server):
    with open("/proc/%d/status" % server.proc.pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS for pid %d" % server.proc.pid)


def per_conn_bound(item_size_max=MIB):
    """man/ftmemcached.1, under -m: a connection's most resident memory."""
    return max(item_size_max, MIB) + 2 * MIB + item_size_max + 64 * 1024


def documented_overhead(mem, conns, items, item_size_max=MIB):
    """What man/ftmemcached.1 (under -m) allows resident memory beyond -m:
    fixed part, per connection, hash table, allocator (a quarter of -m)."""
    fixed = 8 * MIB
    hash_table = 16 * items
    return (fixed + conns * per_conn_bound(item_size_max) + hash_table +
            mem * MIB // 4)


class Sampler(threading.Thread):
    """Records the server's peak VmRSS every 20 ms until stopped."""

    def __init__(self, server):
        super().__init__(daemon=True)
        self.server = server
        self.peak = rss_bytes(server)
        self.done = threading.Event()

    def run(self):
        while not self.done.is_set():
            try:
                self.peak = max(self.peak, rss_bytes(self.server))
            except (OSError, AssertionError):
                return  # the server is gone: the test reports that
            time.sleep(0.02)

    def stop(self):
        self.done.set()
        self.join(5)
        return self.peak


# -- -c: the connection limit ------------------------------------------------
def open_until_refused(server, limit):
    """Opens connections until one is refused; returns (accepted, refused
    connection's bytes)."""
    accepted = []
    for _ in range(limit + 10):
        c = server.conn()
        c.send(b"version\r\n")
        line = c.readline()
        if line == TOO_MANY:
            assert c.is_closed(), "refused connection left open"
            c.close()
            return accepted, line
        assert line.startswith(b"VERSION "), line
        accepted.append(c)
    raise AssertionError("no connection refused past -c %d" % limit)


def test_conn_limit_refuses_cleanly_existing_keep_working(server_factory):
    limit = 32  # stock memcached will not start below about 20
    srv = server_factory(["-c", str(limit), "-t", "2"])
    accepted, _ = open_until_refused(srv, limit)
    # memcached counts a few reserved descriptors against -c; either way the
    # limit is reached by no more than `limit` clients.
    assert 1 <= len(accepted) <= limit
    for i, c in enumerate(accepted):
        assert c.set("k%d" % i, b"v%d" % i) == b"STORED\r\n"
    for i, c in enumerate(accepted):
        assert c.get("k%d" % ((i + 1) % len(accepted))) == \
            b"v%d" % ((i + 1) % len(accepted))
    # More refusals do not disturb the existing connections either.
    for _ in range(5):
        c = srv.conn()
        c.send(b"get k0\r\n")
        try:
            assert c.readline() == TOO_MANY
        except (ServerClosed, ConnectionResetError):
            pass  # closed before our command arrived: also a clean refusal
        c.close()
    assert accepted[0].get("k0") == b"v0"
    st = accepted[0].stats()
    if IS_FTM:
        assert int(st["rejected_connections"]) >= 6
    # A slot freed is a slot usable again.
    accepted.pop().close()

    def one_more():
        c = srv.conn()
        c.send(b"version\r\n")
        try:
            ok = c.readline().startswith(b"VERSION ")
        except (ServerClosed, ConnectionResetError):
            ok = False
        if ok:
            accepted.append(c)
        else:
            c.close()
        return ok
    assert wait_for(one_more, timeout=5.0, step=0.1)
    for c in accepted:
        c.close()


def test_conn_limit_without_maxconns_fast_waits_in_the_backlog(
        server_factory):
    """-o no_maxconns_fast: memcached stops accepting at the limit (counted
    in listen_disabled_num); a client beyond it waits, unrefused, and is
    served once a slot frees."""
    limit = 32
    srv = server_factory(["-c", str(limit), "-t", "2", "-o",
                          "no_maxconns_fast"])
    served = []
    waiting = None
    for _ in range(limit + 2):
        c = srv.conn()
        c.send(b"version\r\n")
        if not c.nothing_pending(0.3):
            assert c.readline().startswith(b"VERSION "), "refused"
            served.append(c)
            continue
        waiting = c
        break
    assert waiting is not None, "no limit reached"
    assert 1 <= len(served) <= limit
    assert not waiting.is_closed(0.5)
    assert served[0].cmd("version").startswith(b"VERSION ")
    st = served[0].stats()
    assert int(st["listen_disabled_num"]) >= 1
    served.pop().close()
    waiting.sock.settimeout(5)
    assert waiting.readline().startswith(b"VERSION ")
    assert waiting.cmd("version").startswith(b"VERSION ")
    for c in served + [waiting]:
        c.close()


# -- slow clients on the same worker -----------------------------------------
def dribble(sock, data, period, stop):
    """Sends `data` one byte per `period` seconds until done or `stop`."""
    for i in range(len(data)):
        if stop.is_set():
            return
        sock.sendall(data[i:i + 1])
        time.sleep(period)


def test_slow_senders_do_not_delay_others_on_the_worker(server_factory):
    srv = server_factory(["-t", "1"])
    value = b"0123456789" * 3
    # One client trickles a value block a byte at a time, another a command
    # line, a third sends half a value and never the rest.
    slow_value = srv.conn()
    slow_value.send(b"set slow 0 0 %d\r\n" % len(value))
    slow_line = srv.conn()
    never = srv.conn()
    never.send(b"set never 0 0 100\r\n" + b"x" * 10)
    stop = threading.Event()
    t1 = threading.Thread(target=dribble, daemon=True,
                          args=(slow_value.sock, value + b"\r\n", 0.1, stop))
    t2 = threading.Thread(target=dribble, daemon=True,
                          args=(slow_line.sock, b"get f0\r\n", 0.4, stop))
    t1.start()
    t2.start()
    try:
        fast = srv.conn()
        start = time.monotonic()
        worst = 0.0
        for i in range(300):
            t = time.monotonic()
            assert fast.set("f%d" % i, b"%d" % i) == b"STORED\r\n"
            assert fast.get("f%d" % i) == b"%d" % i
            worst = max(worst, time.monotonic() - t)
        elapsed = time.monotonic() - start
        # The dribblers need 3.2 s and 3.2 s: the fast client must not have
        # waited for them.
        assert t1.is_alive() and t2.is_alive(), \
            "fast client took %.1fs, as long as the slow ones" % elapsed
        assert worst < 1.0, worst
    finally:
        t1.join(10)
        t2.join(10)
    assert slow_value.readline() == b"STORED\r\n"
    assert slow_line.read_values() == {b"f0": (0, b"0", None)}
    assert never.nothing_pending(0.2)
    assert fast.get("slow") == value
    assert fast.get("never") is None


def test_slow_reader_does_not_delay_others_on_the_worker(server_factory):
    srv = server_factory(["-t", "1"])
    c = srv.conn()
    big = b"b" * (256 * 1024)
    assert c.set("big", big) == b"STORED\r\n"
    # 400 x 256 KiB = 100 MiB of replies that nobody reads for a while.
    reader = srv.conn()
    reader.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    n = 400
    reader.send(b"get big\r\n" * n)
    fast = srv.conn()
    for i in range(200):
        assert fast.set("f%d" % i, b"x") == b"STORED\r\n"
        assert fast.get("f%d" % i) == b"x"
    for _ in range(n):
        assert reader.read_values() == {b"big": (0, big, None)}


# -- multigets, pipelines, values at -I ---------------------------------------
def test_multiget_of_thousands_of_keys(server_factory):
    srv = server_factory(["-t", "1"])
    c = srv.conn()
    n = 5000
    c.send(b"".join(b"set key:%d 0 0 %d noreply\r\n%d\r\n" % (i, len(b"%d" % i), i)
                    for i in range(n)))
    assert c.cmd("mn") == b"MN\r\n"
    keys = [b"key:%d" % i for i in range(n)]
    keys += [b"missing:%d" % i for i in range(1000)]
    c.send(b"get " + b" ".join(keys) + b"\r\n")
    for i in range(n):
        v = b"%d" % i
        assert c.readline() == b"VALUE key:%d 0 %d\r\n" % (i, len(v)), i
        assert c.read_exact(len(v) + 2) == v + b"\r\n"
    assert c.readline() == b"END\r\n"
    assert c.cmd("version").startswith(b"VERSION ")


def read_get_reply_stream(conn, expect_key, expect_value, count):
    """Reads `count` VALUE blocks of one get reply, then END, without keeping
    them (the reply may be far bigger than the test wants to hold)."""
    head = b"VALUE %s 0 %d\r\n" % (expect_key, len(expect_value))
    for i in range(count):
        assert conn.readline() == head, i
        assert conn.read_exact(len(expect_value) + 2) == expect_value + b"\r\n"
    assert conn.readline() == b"END\r\n"


def test_huge_multigets_reply_memory_is_bounded(server_factory):
    """A multiget whose reply is far larger than the server may buffer: the
    server must stream it as the client reads, not build it whole."""
    srv = server_factory(["-t", "1", "-m", "64"])
    c = srv.conn()
    value = bytes(range(256)) * 400  # 100 KiB
    assert c.set("v", value) == b"STORED\r\n"
    before = rss_bytes(srv)
    count = 2000  # one get line naming the key 2000 times: 200 MiB of reply
    sampler = Sampler(srv)
    sampler.start()
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    c.send(b"get" + b" v" * count + b"\r\n")
    time.sleep(1.0)  # the client does not read: the server must hold back
    other = srv.conn()
    assert other.get("v") == value  # and the worker still serves others
    read_get_reply_stream(c, b"v", value, count)
    peak = sampler.stop()
    assert c.cmd("version").startswith(b"VERSION ")
    grown = peak - before
    assert grown < 32 * MIB, "RSS grew %.1f MiB for a 200 MiB reply" % (
        grown / MIB)


def test_streamed_multigets_to_many_readers_never_stall(server_factory):
    """8 clients on one worker each stream a 50 MiB multiget reply while
    reading as fast as they can. Regression: a paused get was never resumed
    when the socket took the whole output between two flushes (no write
    event comes for an empty buffer and the client sends nothing more), so
    some streams stopped for good part-way; this failed 10 runs in 10
    before the fix."""
    srv = server_factory(["-t", "1", "-m", "64"])
    value = bytes(range(256)) * 400  # 100 KiB
    assert srv.conn().set("v", value) == b"STORED\r\n"
    count = 500
    total = count * len(b"VALUE v 0 %d\r\n%s\r\n" % (len(value), value)) + 5
    outcome = {}

    def reader(i):
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=3)
        got = 0
        try:
            s.sendall(b"get" + b" v" * count + b"\r\n")
            while got < total:
                chunk = s.recv(4 << 20)
                if not chunk:
                    break
                got += len(chunk)
            outcome[i] = got
        except socket.timeout:
            outcome[i] = "stalled after %d of %d bytes" % (got, total)
        finally:
            s.close()

    for _ in range(3):  # the stall was a race: three rounds catch it
        outcome.clear()
        threads = [threading.Thread(target=reader, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert outcome == {i: total for i in range(8)}


def test_many_backed_up_connections_stay_within_the_documented_bound(
        server_factory):
    """20 clients that each ask for 100 MiB (a get naming a 1 MiB item 100
    times) and read nothing: each connection keeps to the per-connection
    bound man/ftmemcached.1 gives."""
    srv = server_factory(["-t", "2", "-m", "64", "-I", "1m"])
    c = srv.conn()
    value = b"v" * (MIB - 1024)
    assert c.set("v", value) == b"STORED\r\n"
    before = rss_bytes(srv)
    sampler = Sampler(srv)
    sampler.start()
    n = 20
    clients = []
    for _ in range(n):
        k = srv.conn()
        k.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        k.send(b"get" + b" v" * 100 + b"\r\n")
        clients.append(k)
    time.sleep(1.5)
    assert c.cmd("version").startswith(b"VERSION ")
    peak = sampler.stop()
    grown = peak - before
    assert grown <= n * per_conn_bound(), "%.1f MiB per connection" % (
        grown / n / MIB)
    # Still answering (in full: the other tests read such streams to END).
    head = b"VALUE v 0 %d\r\n" % len(value)
    for i in range(3):
        assert clients[0].readline() == head, i
        assert clients[0].read_exact(len(value) + 2) == value + b"\r\n"
    for k in clients:
        k.close()


def test_pipeline_of_100k_commands_unread_memory_is_bounded(server_factory):
    srv = server_factory(["-t", "1", "-m", "64"])
    c = srv.conn()
    value = b"p" * 1000
    assert c.set("p", value) == b"STORED\r\n"
    n = 100000
    # 100k requests, about 100 MiB of replies; mixed get/mg/set/incr.
    batch = (b"get p\r\n"
             b"mg p v\r\n"
             b"set s 0 0 2\r\nhi\r\n"
             b"incr ctr 1\r\n")
    assert c.set("ctr", b"0") == b"STORED\r\n"
    payload = batch * (n // 4)
    before = rss_bytes(srv)
    sampler = Sampler(srv)
    sampler.start()
    sender = threading.Thread(target=c.sock.sendall, args=(payload,),
                              daemon=True)
    sender.start()
    time.sleep(1.5)  # nobody reads: the replies must not pile up
    other = srv.conn()
    assert other.cmd("version").startswith(b"VERSION ")
    head_get = b"VALUE p 0 1000\r\n"
    head_mg = b"VA 1000\r\n"
    for i in range(n // 4):
        assert c.readline() == head_get, i
        assert c.read_exact(1002) == value + b"\r\n"
        assert c.readline() == b"END\r\n"
        assert c.readline() == head_mg, i
        assert c.read_exact(1002) == value + b"\r\n"
        assert c.readline() == b"STORED\r\n"
        assert c.readline() == b"%d\r\n" % (i + 1)
    sender.join(10)
    peak = sampler.stop()
    grown = peak - before
    assert grown < 32 * MIB, "RSS grew %.1f MiB" % (grown / MIB)
    assert c.cmd("mn") == b"MN\r\n"


BIN_HEADER = struct.Struct(">BBHBBHIIQ")  # memcached's protocol_binary.h
BIN_GETK = 0x0c


def bin_getk(key, opaque):
    return BIN_HEADER.pack(0x80, BIN_GETK, len(key), 0, 0, 0, len(key),
                           opaque, 0) + key


@pytest.mark.parametrize("proto", ["text", "binary"])
def test_pipelined_big_gets_beyond_reqs_per_event_bounded(server_factory,
                                                          proto):
    """With -R 1000 one parser batch could answer 300 gets of 512 KiB
    (150 MiB) before the connection looks at its output: the parser itself
    must stop at the output high-water mark."""
    srv = server_factory(["-t", "1", "-m", "64", "-R", "1000"])
    c = srv.conn()
    value = bytes(range(256)) * 2048  # 512 KiB
    assert c.set("big", value) == b"STORED\r\n"
    if proto == "binary":
        c = srv.conn()  # the first byte picks a connection's protocol
    n = 300
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    before = rss_bytes(srv)
    sampler = Sampler(srv)
    sampler.start()
    if proto == "text":
        c.send(b"get big\r\n" * n)
    else:
        c.send(b"".join(bin_getk(b"big", i) for i in range(n)))
    time.sleep(1.0)  # unread
    for i in range(n):
        if proto == "text":
            assert c.read_values() == {b"big": (0, value, None)}, i
        else:
            h = BIN_HEADER.unpack(c.read_exact(24))
            assert (h[0], h[1], h[5], h[7]) == (0x81, BIN_GETK, 0, i), h
            body = c.read_exact(h[6])
            assert body == b"\0\0\0\0" + b"big" + value, i
    peak = sampler.stop()
    grown = peak - before
    assert grown < 32 * MIB, "RSS grew %.1f MiB" % (grown / MIB)


def largest_storable(conn, limit):
    """Binary search for the largest value `set` accepts under -I limit."""
    lo, hi = 0, limit
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if conn.set("probe", b"z" * mid) == b"STORED\r\n":
            lo = mid
        else:
            hi = mid - 1
    return lo


def test_values_at_item_size_max(server_factory):
    srv = server_factory(["-t", "1", "-m", "64", "-I", "1m"])
    c = srv.conn()
    # Exactly -I bytes of value cannot fit with the item's header: memcached
    # refuses it and swallows the data block.
    for size in (MIB, MIB + 1):
        assert c.set("big", b"a" * size) == \
            b"SERVER_ERROR object too large for cache\r\n"
        assert c.cmd("version").startswith(b"VERSION ")
    assert c.get("big") is None
    top = largest_storable(c, MIB)
    assert MIB - 1024 <= top < MIB
    v = bytes(range(256)) * (top // 256) + b"#" * (top % 256)
    assert c.set("top", v) == b"STORED\r\n"
    assert c.get("top") == v
    # 150 values of the largest size, at -m 64: stored, read back intact,
    # evicting the oldest.
    for i in range(150):
        v = (b"%03d" % i) * (top // 3) + b"#" * (top % 3)
        key = "m%04d" % i  # as long as "probe": the same size fits
        assert c.set(key, v) == b"STORED\r\n", i
        assert c.get(key) == v
    st = c.stats()
    assert int(st["evictions"]) > 0
    assert int(st["bytes"]) <= 64 * MIB
    assert c.get("m0000") is None


# -- sustained writes beyond -m -----------------------------------------------
SIZES = [300, 1000, 4000, 16000, 64000, 2500, 700, 30000]


def value_of(j, i):
    return b"%c" % (97 + (i + j) % 26) * SIZES[(i + j) % len(SIZES)]


def write_flood(conn, j, total):
    """Pipelined noreply sets w<j>_<i> (values from value_of) until `total`
    bytes of values were sent; returns the number of sets."""
    sent = 0
    i = 0
    chunk = []
    while sent < total:
        v = value_of(j, i)
        chunk.append(b"set w%d_%d 0 0 %d noreply\r\n%s\r\n" % (j, i, len(v), v))
        sent += len(v)
        i += 1
        if len(chunk) >= 256:
            conn.send(b"".join(chunk))
            chunk = []
    conn.send(b"".join(chunk))
    assert conn.cmd("mn") == b"MN\r\n"
    return i


@ftm_only
def test_sustained_writes_at_4x_memory_limit_rss_bounded(server_factory):
    """4 x -m of values, of sizes from 300 B to 64 KiB (every allocator size
    range, so fragmentation shows), written -m at a time through each of 4
    connections on 4 workers in turn: the memory one worker's writes free by
    evicting another's items must serve it (per-thread allocator arenas kept
    each worker's share: 98 to 118 MiB at -m 64)."""
    mem, nconn = 64, 4
    srv = server_factory(["-t", str(nconn), "-m", str(mem)])
    conns = [srv.conn(timeout=30) for _ in range(nconn)]
    sampler = Sampler(srv)
    sampler.start()
    counts = [write_flood(conns[j], j, mem * MIB) for j in range(nconn)]
    peak = sampler.stop()
    c = conns[0]
    st = c.stats()
    assert int(st["evictions"]) > 0
    assert int(st["bytes"]) <= mem * MIB
    bound = mem * MIB + documented_overhead(mem, nconn, int(st["curr_items"]))
    print("peak RSS %.1f MiB, bound %.1f MiB" % (peak / MIB, bound / MIB))
    assert peak <= bound, "peak RSS %.1f MiB > %.1f MiB (-m %d)" % (
        peak / MIB, bound / MIB, mem)
    # The last writer's most recent values are there and intact.
    j = nconn - 1
    for i in range(counts[j] - 20, counts[j]):
        assert c.get("w%d_%d" % (j, i)) == value_of(j, i), (j, i)
