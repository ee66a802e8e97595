"""UDP (-U): memcached's 8-byte frame header, one request per datagram."""

import os
import socket
import struct

import pytest

from conftest import free_port


def udp_request(sock, addr, req_id, payload):
    sock.sendto(struct.pack(">HHHH", req_id, 0, 1, 0) + payload, addr)
    chunks = {}
    total = None
    while total is None or len(chunks) < total:
        data, _ = sock.recvfrom(65536)
        rid, seq, tot, _res = struct.unpack(">HHHH", data[:8])
        assert rid == req_id
        total = tot
        chunks[seq] = data[8:]
    return b"".join(chunks[i] for i in range(total))


@pytest.fixture
def udp_server(server_factory):
    port = free_port()
    s = server_factory(["-U", str(port)], port=port)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(5)
    yield s, sock, ("127.0.0.1", port)
    sock.close()


def test_udp_get_set(udp_server):
    s, sock, addr = udp_server
    assert udp_request(sock, addr, 1, b"set k 0 0 3\r\nabc\r\n") == b"STORED\r\n"
    assert udp_request(sock, addr, 2, b"get k\r\n") == (
        b"VALUE k 0 3\r\nabc\r\nEND\r\n")
    with s.conn() as c:
        assert c.get("k") == b"abc"
        assert c.stats("settings")["udpport"] == str(addr[1])


def test_udp_multi_datagram_reply(udp_server):
    s, sock, addr = udp_server
    big = b"q" * 5000
    with s.conn() as c:
        assert c.set("big", big) == b"STORED\r\n"
    r = udp_request(sock, addr, 7, b"get big\r\n")
    assert r == b"VALUE big 0 5000\r\n" + big + b"\r\nEND\r\n"


def test_udp_meta_and_errors(udp_server):
    s, sock, addr = udp_server
    assert udp_request(sock, addr, 3, b"mn\r\n") == b"MN\r\n"
    assert udp_request(sock, addr, 4, b"bogus\r\n") == b"ERROR\r\n"
    assert udp_request(sock, addr, 5, b"incr nokey 1\r\n") == b"NOT_FOUND\r\n"


def test_udp_off_by_default(server_factory):
    port = free_port()
    args = ["-p", str(port), "-l", "127.0.0.1"]
    if os.geteuid() == 0:
        args += ["-u", "root"]
    server = server_factory(args, port=port, default_args=False)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(0.5)
    try:
        sock.sendto(struct.pack(">HHHH", 1, 0, 1, 0) + b"version\r\n",
                    ("127.0.0.1", server.port))
        with pytest.raises((socket.timeout, ConnectionRefusedError)):
            sock.recvfrom(65536)
    finally:
        sock.close()
