"""memcached's binary protocol (issue 3): pylibmc in binary mode, a
differential test of random valid and invalid frames against stock
memcached, and memccapable (text and binary) against both servers.

Run against stock memcached alone with FTM_SERVER=/usr/bin/memcached.
"""

import os
import random
import shutil
import socket
import struct
import subprocess

import pytest

HEADER = struct.Struct(">BBHBBHIIQ")

# Opcodes (memcached's protocol_binary.h).
GET, SET, ADD, REPLACE, DELETE, INCR, DECR, QUIT, FLUSH = range(9)
GETQ, NOOP, VERSION, GETK, GETKQ, APPEND, PREPEND, STAT = range(9, 17)
SETQ, ADDQ, REPLACEQ, DELETEQ, INCRQ, DECRQ, QUITQ, FLUSHQ = range(17, 25)
APPENDQ, PREPENDQ, VERBOSITY, TOUCH, GAT, GATQ = range(25, 31)
SASL_LIST, SASL_AUTH, SASL_STEP, GATK, GATKQ = 0x20, 0x21, 0x22, 0x23, 0x24


def frame(op, key=b"", extras=b"", value=b"", opaque=0, cas=0, magic=0x80,
          keylen=None, extlen=None, bodylen=None):
    """One request; the length fields may be overridden to build bad ones."""
    kl = len(key) if keylen is None else keylen
    el = len(extras) if extlen is None else extlen
    bl = len(key) + len(extras) + len(value) if bodylen is None else bodylen
    return HEADER.pack(magic, op, kl, el, 0, 0, bl, opaque, cas) + \
        extras + key + value


def parse(data):
    """Splits a response stream into dicts; a trailing partial frame is
    returned as bytes."""
    out = []
    while len(data) >= 24:
        magic, op, kl, el, dt, status, bl, opaque, cas = HEADER.unpack(
            data[:24])
        if len(data) < 24 + bl:
            break
        body = data[24:24 + bl]
        out.append(dict(magic=magic, op=op, status=status, datatype=dt,
                        extras=body[:el], key=body[el:el + kl],
                        value=body[el + kl:], opaque=opaque, cas=cas))
        data = data[24 + bl:]
    if data:
        out.append(data)
    return out


def exchange(port, payload, timeout=3.0):
    """Sends payload on a fresh connection, half-closes, and reads to EOF:
    every reply the server sends for these bytes, no timing guesses."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        data = b""
        while True:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                data += b"<TIMEOUT>"
                break
            except ConnectionResetError:
                data += b"<RESET>"
                break
            if not chunk:
                break
            data += chunk
        return data
    finally:
        s.close()


def request(port, *frames):
    return parse(exchange(port, b"".join(frames)))


# -- pylibmc in binary mode ------------------------------------------------
try:
    import pylibmc
except ImportError:  # Debian: python3-pylibmc
    pylibmc = None


@pytest.fixture
def client(server):
    if pylibmc is None:
        pytest.skip("pylibmc not installed (apt-get install python3-pylibmc)")
    c = pylibmc.Client(["127.0.0.1:%d" % server.port], binary=True,
                       behaviors={"cas": True, "tcp_nodelay": True})
    yield c
    c.disconnect_all()


def test_pylibmc_set_get_multi(client):
    assert client.set("a", "1")
    assert client.set("b", b"two")
    assert client.set_multi({"c": "3", "d": "4"}) == []
    assert client.get("a") == "1"
    assert client.get_multi(["a", "b", "c", "d", "nope"]) == {
        "a": "1", "b": b"two", "c": "3", "d": "4"}
    assert client.get("nope") is None


def test_pylibmc_cas(client):
    assert client.set("k", "v1")
    value, cas = client.gets("k")
    assert value == "v1" and cas
    assert client.cas("k", "v2", cas)
    assert not client.cas("k", "v3", cas)  # stale cas
    assert client.get("k") == "v2"


def test_pylibmc_incr_decr_delete(client):
    assert client.set("n", "10")
    assert client.incr("n") == 11
    assert client.incr("n", 5) == 16
    assert client.decr("n", 20) == 0
    with pytest.raises(pylibmc.NotFound):
        client.incr("missing")
    assert client.delete("n")
    assert not client.delete("n")
    assert client.get("n") is None


def test_pylibmc_add_replace_append(client):
    assert client.add("x", "1")
    assert not client.add("x", "2")
    assert client.replace("x", "3")
    with pytest.raises(pylibmc.NotFound):  # binary mode: replace miss
        client.replace("y", "3")
    assert client.append("x", "4")
    assert client.prepend("x", "0")
    assert client.get("x") == "034"


def test_pylibmc_touch(client):
    assert client.set("t", "v", time=100)
    assert client.touch("t", 1000)
    assert not client.touch("missing", 10)
    assert client.get("t") == "v"


def test_pylibmc_big_value(client):
    v = b"x" * 500000
    assert client.set("big", v)
    assert client.get("big") == v
    with pytest.raises(pylibmc.TooBig):
        client.set("huge", b"x" * (2 << 20))


# -- raw frames --------------------------------------------------------------
def test_opaque_echo_and_quiet_flush_by_noop(server):
    rs = request(server.port,
                 frame(SETQ, b"q", struct.pack(">II", 7, 0), b"v", opaque=1),
                 frame(GETQ, b"q", opaque=2),
                 frame(GETKQ, b"missing", opaque=3),
                 frame(NOOP, opaque=0xdeadbeef))
    assert [(r["op"], r["opaque"]) for r in rs] == [(GETQ, 2),
                                                    (NOOP, 0xdeadbeef)]
    assert rs[0]["extras"] == struct.pack(">I", 7) and rs[0]["value"] == b"v"


def test_incr_initial_and_no_create(server):
    rs = request(server.port,
                 frame(INCR, b"n", struct.pack(">QQI", 1, 5, 0xffffffff)),
                 frame(INCR, b"n", struct.pack(">QQI", 1, 5, 0)),
                 frame(INCR, b"n", struct.pack(">QQI", 2, 5, 0)))
    assert rs[0]["status"] == 1 and rs[0]["value"] == b"Not found"
    assert struct.unpack(">Q", rs[1]["value"])[0] == 5
    assert struct.unpack(">Q", rs[2]["value"])[0] == 7


def test_bad_magic_closes_without_reply(server):
    assert exchange(server.port, frame(GET, b"k", magic=0x81)) == b""


def test_malformed_lengths_answer_and_close(server):
    rs = request(server.port, frame(GET, b"k", bodylen=0), frame(NOOP))
    assert len(rs) == 1 and rs[0]["status"] == 0x81  # then closed
    rs = request(server.port, frame(GET, b"k", extras=b"1234"), frame(NOOP))
    assert len(rs) == 1 and rs[0]["status"] == 0x04


# -- differential: random frames against stock memcached --------------------
KEYS = [b"a", b"b", b"counter", b"k" * 250, b"x" * 40]


def _value(rng):
    return rng.choice([b"", b"v", b"12", b"18446744073709551615", b"abc",
                       bytes(rng.randrange(256) for _ in range(rng.choice(
                           [1, 10, 300, 3000])))])


def _random_frame(rng):
    """A frame, valid most of the time; the rest break one rule each."""
    key = rng.choice(KEYS)
    opaque = rng.randrange(1 << 32)
    cas = rng.choice([0, 0, 0, 1, "last", rng.randrange(1 << 64)])
    ttl = rng.choice([0, 0, 100, 0xffffffff, 2592001])
    op = rng.choice([GET, GETQ, GETK, GETKQ, SET, SETQ, ADD, ADDQ, REPLACE,
                     REPLACEQ, DELETE, DELETEQ, INCR, INCRQ, DECR, DECRQ,
                     APPEND, APPENDQ, PREPEND, PREPENDQ, TOUCH, GAT, GATQ,
                     GATK, GATKQ, NOOP, VERSION, FLUSHQ, QUIT, QUITQ,
                     VERBOSITY, SASL_LIST, SASL_AUTH, 0x3f, 0xfe, STAT,
                     FLUSH])
    if op in (FLUSH, FLUSHQ) and rng.random() < 0.8:
        op = GETK  # keep flushes rare, so that keys live long enough to hit
    if op in (SET, SETQ, ADD, ADDQ, REPLACE, REPLACEQ):
        extras, value = struct.pack(">II", rng.randrange(1 << 32), ttl), \
            _value(rng)
    elif op in (INCR, INCRQ, DECR, DECRQ):
        extras = struct.pack(">QQI", rng.choice([0, 1, 7, (1 << 64) - 1]),
                             rng.choice([0, 5, 99]),
                             rng.choice([0, 0xffffffff, 100]))
        value = b""
    elif op in (APPEND, APPENDQ, PREPEND, PREPENDQ):
        extras, value = b"", _value(rng)
    elif op in (TOUCH, GAT, GATQ, GATK, GATKQ):
        extras, value = struct.pack(">I", ttl), b""
    elif op == VERBOSITY:
        extras, value, key = struct.pack(">I", 1), b"", b""
    elif op in (NOOP, VERSION, FLUSHQ, QUIT, QUITQ, SASL_LIST):
        extras, value, key = b"", b"", b""
    elif op == STAT:
        # Groups whose answer does not depend on the implementation.
        extras, value = b"", b""
        key = rng.choice([b"nope", b"detail on", b"detail off", b"detail x",
                          b"conns", b"itemsX", b"reset"])
    elif op == FLUSH:
        extras, value, key = rng.choice([b"", b"\0\0\0\0"]), b"", b""
    elif op == SASL_AUTH:
        extras, value, key = b"", b"\0user\0pass", b"PLAIN"
    else:
        extras, value = b"", _value(rng)
    if len(key) == 250 and op in (INCR, INCRQ, DECR, DECRQ):
        # A memcached 1.6.18 oddity, left out: after some histories it
        # answers an incr of a 20-digit value under a 250-byte key
        # "non-numeric" (seeds 4, 23 and 24 found it); the same frames on a
        # fresh memcached succeed, as they do here.
        key = b"counter"
    kw = {}
    broken = rng.random() < 0.25
    if broken:
        how = rng.choice(["extras", "nokey", "key251", "keylen", "bodylen",
                          "magic", "extlen"])
        if how == "extras":
            extras += b"\0\0\0\0"
        elif how == "nokey":
            key = b""
        elif how == "key251":
            key = b"z" * 251
        elif how == "keylen":
            kw["keylen"] = len(key) + len(extras) + len(value) + 1
        elif how == "bodylen":
            kw["bodylen"] = max(0, len(key) + len(extras) - 1)
        elif how == "magic":
            kw["magic"] = rng.choice([0x00, 0x81, 0x7f])
        elif how == "extlen":
            kw["extlen"] = rng.choice([1, 20, 255])
    return dict(op=op, key=key, extras=extras, value=value, opaque=opaque,
                cas=cas, kw=kw)


def _encode(spec, last_cas):
    cas = spec["cas"]
    if cas == "last":
        cas = last_cas.get(spec["key"], 0)
    return frame(spec["op"], spec["key"], spec["extras"], spec["value"],
                 spec["opaque"], cas, **spec["kw"])


def _normalise(rs, last_cas, key):
    """Masks cas values (each server's own) after remembering them."""
    out = []
    for r in rs:
        if isinstance(r, dict) and r["op"] == STAT and r["status"] == 0 \
                and r["key"]:
            continue  # statistics differ by nature; the terminator stays
        if isinstance(r, dict):
            if r["cas"] and r["op"] != STAT:
                last_cas[key] = r["cas"]
            r = dict(r, cas="nonzero" if r["cas"] else 0)
            # A counter that shrinks is rewritten in place and padded with
            # spaces, unless memcached holds another reference to the item,
            # when it writes a new unpadded one: only the digits compare.
            if r["op"] in (GET, GETQ, GETK, GETKQ, GAT, GATQ, GATK, GATKQ) \
                    and r["value"].rstrip(b" ").isdigit():
                r["value"] = r["value"].rstrip(b" ")
        out.append(r)
    return out


def test_differential_random_frames(server_factory, reference_factory):
    # FTM_DIFF_SEED / FTM_DIFF_CASES explore further.
    ours = server_factory(["-I", "1m"])
    ref = reference_factory(["-I", "1m"])
    rng = random.Random(int(os.environ.get("FTM_DIFF_SEED", "31337")))
    cas_ours, cas_ref = {}, {}
    mismatches = []
    for i in range(int(os.environ.get("FTM_DIFF_CASES", "1500"))):
        # One to three frames per connection: pipelined, sometimes quiet.
        specs = [_random_frame(rng) for _ in range(rng.choice([1, 1, 2, 3]))]
        # A connection whose first byte is not 0x80 speaks the text
        # protocol (-B auto): not this test's business.
        specs[0]["kw"].pop("magic", None)
        # The NoOp flushes; the zeros after it end any swallow or value
        # still open, then close the connection as a bad magic byte. Without
        # them the run would end in EOF inside a swallow, where memcached
        # drops the replies it holds and we have already sent them.
        trailer = frame(NOOP, opaque=0x5eed0000 + i) + bytes(8192)
        a = parse(exchange(ours.port, b"".join(
            _encode(s, cas_ours) for s in specs) + trailer))
        b = parse(exchange(ref.port, b"".join(
            _encode(s, cas_ref) for s in specs) + trailer))
        a = _normalise(a, cas_ours, specs[-1]["key"])
        b = _normalise(b, cas_ref, specs[-1]["key"])
        if a != b:
            mismatches.append((i, specs, b, a))
            if len(mismatches) >= 5:
                break
    assert not mismatches, "\n\n".join(
        "case %d: %r\n memcached: %r\n ours:      %r" % m
        for m in mismatches)


# -- memccapable: text and binary --------------------------------------------
MEMCCAPABLE = shutil.which("memccapable")


def _memccapable(port):
    p = subprocess.run([MEMCCAPABLE, "-h", "127.0.0.1", "-p", str(port)],
                       capture_output=True, timeout=240)
    return p.returncode, (p.stdout + p.stderr).decode(errors="replace")


@pytest.mark.skipif(MEMCCAPABLE is None, reason="memccapable not installed")
def test_memccapable_text_and_binary(server, reference):
    rc_ref, out_ref = _memccapable(reference.port)
    rc, out = _memccapable(server.port)
    assert "binary" in out
    assert rc == 0 and "All tests passed" in out, out
    assert (rc, out) == (rc_ref, out_ref)
