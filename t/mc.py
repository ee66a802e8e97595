"""Raw-socket memcached client helpers for the pytest suites.

Everything here speaks bytes: tests state the exact lines a server must
send, so nothing is decoded or normalised behind their back.
"""

import re
import socket
import time

DEFAULT_TIMEOUT = 5.0


class ServerClosed(Exception):
    """The server closed the connection while a reply was expected."""


class Conn:
    """One client connection (TCP or UNIX socket) with a read buffer."""

    def __init__(self, port=None, host="127.0.0.1", path=None,
                 timeout=DEFAULT_TIMEOUT):
        if path is not None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(path)
        else:
            self.sock = socket.create_connection((host, port), timeout=timeout)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- raw I/O ---------------------------------------------------------
    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ServerClosed("connection closed by server; buffered %r"
                               % self.buf[:200])
        self.buf += chunk

    def readline(self):
        """One line including its trailing \\r\\n."""
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line, self.buf = self.buf[:i + 2], self.buf[i + 2:]
                return line
            self._fill()

    def read_exact(self, n):
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_until(self, marker):
        """Everything up to and including `marker`, which must start a line."""
        start = 0
        while True:
            i = self.buf.find(marker, start)
            if i >= 0 and (i == 0 or self.buf[i - 2:i] == b"\r\n"):
                end = i + len(marker)
                out, self.buf = self.buf[:end], self.buf[end:]
                return out
            if i >= 0:
                start = i + 1
                continue
            self._fill()

    def is_closed(self, wait=2.0):
        """True when the server closes the connection within `wait` seconds
        (buffered or further bytes before the close are discarded)."""
        deadline = time.monotonic() + wait
        try:
            while time.monotonic() < deadline:
                self.sock.settimeout(max(0.01, deadline - time.monotonic()))
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False
        finally:
            try:
                self.sock.settimeout(DEFAULT_TIMEOUT)
            except OSError:
                pass
        return False

    def nothing_pending(self, wait=0.2):
        """True when the server sends nothing within `wait` seconds."""
        if self.buf:
            return False
        self.sock.settimeout(wait)
        try:
            chunk = self.sock.recv(65536)
            self.buf += chunk
            return False
        except socket.timeout:
            return True
        finally:
            self.sock.settimeout(DEFAULT_TIMEOUT)

    # -- command helpers -------------------------------------------------
    def cmd(self, line):
        """Send one command line (\\r\\n appended) and return one reply line."""
        if isinstance(line, str):
            line = line.encode()
        self.send(line + b"\r\n")
        return self.readline()

    def store(self, verb, key, value, flags=0, exptime=0, noreply=False,
              cas=None):
        if isinstance(key, str):
            key = key.encode()
        if isinstance(value, str):
            value = value.encode()
        parts = [verb.encode(), key, str(flags).encode(), str(exptime).encode(),
                 str(len(value)).encode()]
        if cas is not None:
            parts.append(str(cas).encode())
        if noreply:
            parts.append(b"noreply")
        self.send(b" ".join(parts) + b"\r\n" + value + b"\r\n")
        if noreply:
            return None
        return self.readline()

    def set(self, key, value, **kw):
        return self.store("set", key, value, **kw)

    def read_values(self):
        """Read VALUE blocks until END; returns {key: (flags, data, cas)}."""
        out = {}
        while True:
            line = self.readline()
            if line == b"END\r\n":
                return out
            m = re.match(rb"VALUE ([^ ]+) (\d+) (\d+)(?: (\d+))?\r\n$", line, re.S)
            if not m:
                raise AssertionError("unexpected line in get reply: %r" % line)
            data = self.read_exact(int(m.group(3)) + 2)
            assert data.endswith(b"\r\n"), data
            cas = int(m.group(4)) if m.group(4) is not None else None
            out[m.group(1)] = (int(m.group(2)), data[:-2], cas)

    def get_multi(self, keys, verb="get"):
        keys = [k.encode() if isinstance(k, str) else k for k in keys]
        self.send(verb.encode() + b" " + b" ".join(keys) + b"\r\n")
        return self.read_values()

    def get(self, key):
        """The value bytes of `key`, or None when missing."""
        k = key.encode() if isinstance(key, str) else key
        r = self.get_multi([k])
        return r[k][1] if k in r else None

    def gets(self, key):
        """(value, cas) of `key`, or None when missing."""
        k = key.encode() if isinstance(key, str) else key
        r = self.get_multi([k], verb="gets")
        return (r[k][1], r[k][2]) if k in r else None

    def stats(self, sub=""):
        line = ("stats " + sub).strip()
        self.send(line.encode() + b"\r\n")
        out = {}
        while True:
            l = self.readline()
            if l == b"END\r\n":
                return out
            parts = l.decode().rstrip("\r\n").split(" ", 2)
            assert parts[0] == "STAT", l
            out[parts[1]] = parts[2] if len(parts) > 2 else ""

    def meta(self, line, data=None):
        """Send a meta command; returns its reply head line (and value block
        for VA replies as a tuple (line, data))."""
        if isinstance(line, str):
            line = line.encode()
        payload = line + b"\r\n"
        if data is not None:
            if isinstance(data, str):
                data = data.encode()
            payload += data + b"\r\n"
        self.send(payload)
        return self.read_meta_reply()

    def read_meta_reply(self):
        line = self.readline()
        if line.startswith(b"VA "):
            n = int(line.split()[1])
            data = self.read_exact(n + 2)
            assert data.endswith(b"\r\n"), data
            return line, data[:-2]
        return line

    def roundtrip(self, payload):
        """Send `payload` then an `mn` sentinel; return everything the server
        answered before the sentinel's MN."""
        if isinstance(payload, str):
            payload = payload.encode()
        self.send(payload + b"mn\r\n")
        out = self.read_until(b"MN\r\n")
        return out[:-4]


def wait_for(pred, timeout=5.0, step=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()
