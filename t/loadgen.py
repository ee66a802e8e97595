"""Load through every data server of a LocalCluster, with the client's
record of what was acknowledged, for the kill tests (test_failover.py) and
bench/failover.py.

    lg = LoadGen(cluster, keys=2000, threads=6)
    lg.start()
    ...                      # kill, stop, pause servers; lg.event("...")
    lg.stop()
    print(lg.report())
    lg.verify(cluster).check()   # raises with what was lost, and the logs

Each key has one writer thread, so its writes are ordered: the record keeps,
per key, the last value answered STORED and the values written after it
whose outcome is unknown (SERVER_ERROR, a timeout, a broken connection: they
may or may not have taken effect). Values are unique: b"k<key>-<writer>-<seq>"
(padded to value_size). A read, during the load or in verify(), must return
the acknowledged value or one of those later attempts; nothing older, and not
a miss once a write was acknowledged.

Requests go round robin over the servers given (all of the cluster's by
default); a server that refuses connections is retried every 100 ms, each
refusal counted as an error of that server. Errors are counted by their text
(numbers masked) and by server; every request's latency (send to answer,
whatever the answer) is kept, and the completion times of the successful
ones, for the longest stall.
"""

import collections
import random
import re
import socket
import threading
import time

STORED = b"STORED\r\n"
REQUEST_TIMEOUT = 5.0      # seconds; above the servers' --failover-wait-ms
RETRY_DOWN = 0.1           # seconds before reconnecting to a refusing server


class _Closed(Exception):
    pass


class Client:
    """One text-protocol connection, buffered for large multi-gets (mc.Conn
    copies its buffer on every line). Any error leaves it unusable: close it
    and open another."""

    def __init__(self, port, timeout=REQUEST_TIMEOUT, host="127.0.0.1"):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.f = self.sock.makefile("rb", buffering=1 << 16)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        for x in (self.f, self.sock):
            try:
                x.close()
            except OSError:
                pass

    def send(self, data):
        self.sock.sendall(data)

    def readline(self):
        line = self.f.readline(1 << 20)
        if not line.endswith(b"\r\n"):
            raise _Closed("connection closed mid-reply (got %r)" % line[:80])
        return line

    def set(self, key, value):
        self.send(b"set %s 0 0 %d\r\n%s\r\n" % (key, len(value), value))
        return self.readline()

    def get_multi(self, keys):
        """({key: value}, None) or (partial, error line): memcached answers a
        get with VALUE blocks and END, or with one error line."""
        self.send(b"get " + b" ".join(keys) + b"\r\n")
        out = {}
        while True:
            line = self.readline()
            if line == b"END\r\n":
                return out, None
            if not line.startswith(b"VALUE "):
                return out, line
            parts = line.split()
            data = self.f.read(int(parts[3]) + 2)
            if len(data) != int(parts[3]) + 2 or not data.endswith(b"\r\n"):
                raise _Closed("connection closed mid-value")
            out[parts[1]] = data[:-2]


_NUMBERS = re.compile(rb"\d+")


def error_text(reply_or_exc):
    """A short label for an error: the reply line or the exception, with
    numbers masked so that one kind of error is one counter."""
    if isinstance(reply_or_exc, bytes):
        t = _NUMBERS.sub(b"N", reply_or_exc.strip())[:120]
        return t.decode(errors="replace")
    e = reply_or_exc
    if isinstance(e, socket.timeout):
        return "timeout (no answer in %.0fs)" % REQUEST_TIMEOUT
    if isinstance(e, ConnectionRefusedError):
        return "connection refused"
    if isinstance(e, (ConnectionResetError, BrokenPipeError)):
        return "connection reset"
    if isinstance(e, _Closed):
        return "connection closed by server"
    return _NUMBERS.sub("N", "%s: %s" % (type(e).__name__, e))[:120]


def store_through(c, servers, values, seconds=10):
    """Stores each key's value (`values`: {key: bytes}) through `servers`
    in turn, retrying what is not STORED (a SERVER_ERROR while a partition
    is in transition, a refused connection) for up to `seconds`; fails the
    test with the last answers and `c`'s logs if some key never was."""
    pending = dict(values)
    last = {}
    deadline = time.monotonic() + seconds
    i = 0
    while pending and time.monotonic() < deadline:
        for k in list(pending):
            s = servers[i % len(servers)]
            i += 1
            try:
                with Client(s.port, host=s.host) as conn:
                    r = conn.set(k, pending[k])
            except OSError as e:
                r = repr(e).encode()
            if r == STORED:
                del pending[k]
            else:
                last[k] = (s.node_id, r)
        if pending:
            time.sleep(0.05)
    assert not pending, "%d keys not stored through nodes %s in %ss; last " \
        "answers (node, reply): %r\n%s" % (
            len(pending), [s.node_id for s in servers], seconds,
            list(last.items())[:5], c.logs())


class KeyLog:
    """One key's record. acked: the last value answered STORED (None: no
    write acknowledged yet); pending: values written after it whose outcome
    is unknown; first_ok: (mark id, send, done) of the first write sent after
    the last LoadGen.mark() that was acknowledged."""
    __slots__ = ("acked", "pending", "first_ok")

    def __init__(self):
        self.acked = None
        self.pending = []
        self.first_ok = None

    def allowed(self):
        return ([self.acked] if self.acked is not None else []) + \
            self.pending


class _Worker:
    """Per-thread counters, merged by LoadGen after the fact."""

    def __init__(self):
        self.ok = 0
        self.errors = 0
        self.writes_acked = 0       # sets answered STORED
        self.writes_unknown = 0     # sets answered otherwise, or not at all
        self.by_error = collections.Counter()     # (node, text) -> count
        self.latencies = []                       # seconds, every answer
        self.ok_times = []                        # monotonic, successes
        self.slowest = (0.0, None)                # (latency, description)
        self.bad_reads = []


class Problem:
    """One key whose read did not match the record."""

    def __init__(self, kind, key, node, got, log, when=None):
        self.kind = kind        # lost, stale, unknown value, unreadable
        self.key = key
        self.node = node
        self.got = got
        self.acked = log.acked if log else None
        self.pending = list(log.pending) if log else []
        self.when = when

    def __str__(self):
        s = "%s: key %s via node %s: got %s, expected %s" % (
            self.kind, self.key.decode(), self.node, _short(self.got),
            _short(self.acked) if self.acked is not None
            else "(nothing acknowledged)")
        if self.pending:
            s += " or one of %d later attempts (last %s)" % (
                len(self.pending), _short(self.pending[-1]))
        if self.when is not None:
            s += " at +%.3fs" % self.when
        return s


def _short(v):
    if v is None:
        return "a miss"
    if isinstance(v, bytes):
        return repr(v.rstrip(b".")[:60])
    return str(v)[:200]


class Verification:
    """What verify() found; check() raises with the details."""

    def __init__(self, lg, cluster, problems, keys_checked, nodes, seconds):
        self.lg = lg
        self.cluster = cluster
        self.problems = problems
        self.keys_checked = keys_checked
        self.nodes = nodes
        self.seconds = seconds

    @property
    def lost(self):
        """Keys with an acknowledged write that read back as a miss or an
        older value through some server."""
        return sorted({p.key for p in self.problems
                       if p.kind in ("lost", "stale")})

    def summary(self):
        kinds = collections.Counter(p.kind for p in self.problems)
        return ("verify: %d keys through nodes %s in %.1fs: %s" % (
            self.keys_checked, self.nodes, self.seconds,
            ", ".join("%d %s" % (n, k) for k, n in sorted(kinds.items()))
            or "all as acknowledged"))

    def check(self, extra=""):
        if not self.problems:
            return self
        by_node = collections.Counter((p.kind, p.node) for p in
                                      self.problems)
        lines = [self.summary(),
                 "by kind and node: " + ", ".join(
                     "%s via %s: %d" % (k, n, c)
                     for (k, n), c in sorted(by_node.items(), key=str)),
                 "first problems:"]
        lines += ["  " + str(p) for p in self.problems[:25]]
        if extra:
            lines.append(extra)
        lines.append(self.lg.report())
        lines.append(self.cluster.logs())
        raise AssertionError("\n".join(lines))


class LoadGen:
    """Writers and readers over a fixed key space, through `servers` (a
    LocalCluster's data servers by default). Not reusable after stop()."""

    def __init__(self, cluster, keys=2000, threads=6, write_ratio=0.5,
                 value_size=0, prefix="lg", servers=None, seed=1):
        self.cluster = cluster
        self.nthreads = threads
        self.write_ratio = write_ratio
        self.value_size = value_size
        self.prefix = prefix.encode()
        self.targets = list(servers if servers is not None
                            else cluster.servers)
        self.seed = seed
        self.keys = [b"%s:%d" % (self.prefix, i) for i in range(keys)]
        self.log = {k: KeyLog() for k in self.keys}
        self.workers = [_Worker() for _ in range(threads)]
        self.events = []               # (monotonic, text)
        self._mark = (0, float("inf"))  # (id, monotonic)
        self._stop = threading.Event()
        self._threads = []
        self.crashes = []
        self.t_start = self.t_stop = None

    # -- control ---------------------------------------------------------
    def start(self):
        self.t_start = time.monotonic()
        for w in range(self.nthreads):
            t = threading.Thread(target=self._run, args=(w,), daemon=True,
                                 name="loadgen-%d" % w)
            t.start()
            self._threads.append(t)
        return self

    def stop(self, timeout=REQUEST_TIMEOUT * 3):
        self._stop.set()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.1, deadline - time.monotonic()))
        hung = [t.name for t in self._threads if t.is_alive()]
        self.t_stop = time.monotonic()
        if self.crashes:
            raise AssertionError("load thread crashed:\n" +
                                 "\n".join(self.crashes))
        if hung:
            raise AssertionError("load threads still running %.0fs after "
                                 "stop: %s\n%s" % (timeout, hung,
                                                   self.cluster.logs()))

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        if not self._stop.is_set():
            self._stop.set()
            for t in self._threads:
                t.join(REQUEST_TIMEOUT * 3)
            self.t_stop = time.monotonic()

    def retarget(self, servers=None):
        """Send requests through `servers` from now on (default: the
        cluster's live servers, e.g. after a kill or a new server)."""
        self.targets = list(servers if servers is not None
                            else self.cluster.live_servers())

    def event(self, text, t=None):
        """Note a moment (a kill, a restart) for the report."""
        t = time.monotonic() if t is None else t
        self.events.append((t, text))
        return t

    def mark(self, t=None):
        """From `t` on, each key records its first acknowledged write sent
        at or after t (first_ok_after)."""
        t = time.monotonic() if t is None else t
        self._mark = (self._mark[0] + 1, t)
        return t

    def first_ok_after(self, keys):
        """{key: (send, done)} of each key's first acknowledged write sent
        after the last mark(), for keys that had one."""
        mid = self._mark[0]
        out = {}
        for k in keys:
            f = self.log[k].first_ok
            if f is not None and f[0] == mid:
                out[k] = f[1:]
        return out

    # -- load ------------------------------------------------------------
    def value(self, ki, writer, seq):
        v = b"k%d-%d-%d" % (ki, writer, seq)
        return v.ljust(self.value_size, b".")

    def _run(self, w):
        try:
            self._loop(w)
        except BaseException:   # a bug here must not pass unseen
            import traceback
            self.crashes.append("thread %d: %s" % (
                w, traceback.format_exc()))
            raise

    def _loop(self, w):
        st = self.workers[w]
        rng = random.Random(self.seed * 1000 + w)
        mine = list(range(w, len(self.keys), self.nthreads))
        conns = {}
        down_until = {}
        seq = 0
        i = w
        try:
            while not self._stop.is_set():
                targets = self.targets
                s = targets[i % len(targets)]
                i += 1
                now = time.monotonic()
                if down_until.get(s.node_id, 0) > now:
                    if all(down_until.get(x.node_id, 0) > now
                           for x in targets):
                        time.sleep(0.01)
                    continue
                c = conns.get(s.node_id)
                if c is None:
                    try:
                        c = conns[s.node_id] = Client(s.port, host=s.host)
                    except OSError as e:
                        self._count(st, s.node_id, e)
                        down_until[s.node_id] = now + RETRY_DOWN
                        continue
                ki = rng.choice(mine)
                if rng.random() < self.write_ratio:
                    seq += 1
                    ok = self._write(st, c, s.node_id, ki, w, seq)
                else:
                    ok = self._read(st, c, s.node_id, ki)
                if ok is None:       # the connection is unusable
                    c.close()
                    del conns[s.node_id]
        finally:
            for c in conns.values():
                c.close()

    def _count(self, st, node, what):
        st.errors += 1
        st.by_error[(node, error_text(what))] += 1

    def _answered(self, st, t0, desc):
        t1 = time.monotonic()
        lat = t1 - t0
        st.latencies.append(lat)
        if lat > st.slowest[0]:
            st.slowest = (lat, "%s, sent at +%.3fs" % (
                desc, t0 - self.t_start))
        return t1

    def _write(self, st, c, node, ki, w, seq):
        key = self.keys[ki]
        kl = self.log[key]
        v = self.value(ki, w, seq)
        kl.pending.append(v)    # unknown until STORED comes back
        t0 = time.monotonic()
        try:
            r = c.set(key, v)
        except (OSError, _Closed) as e:
            self._answered(st, t0, "set %s via node %d: %s" % (
                key.decode(), node, error_text(e)))
            self._count(st, node, e)
            st.writes_unknown += 1
            return None
        t1 = self._answered(st, t0, "set %s via node %d: %s" % (
            key.decode(), node, r.strip()[:100].decode(errors="replace")))
        if r != STORED:
            self._count(st, node, r)
            st.writes_unknown += 1
            return False
        st.writes_acked += 1
        kl.acked = v
        kl.pending = []
        mid, mt = self._mark
        if t0 >= mt and (kl.first_ok is None or kl.first_ok[0] != mid):
            kl.first_ok = (mid, t0, t1)
        st.ok += 1
        st.ok_times.append(t1)
        return True

    def _read(self, st, c, node, ki):
        key = self.keys[ki]
        kl = self.log[key]
        allowed = kl.allowed()
        t0 = time.monotonic()
        try:
            got, err = c.get_multi([key])
        except (OSError, _Closed) as e:
            self._answered(st, t0, "get %s via node %d: %s" % (
                key.decode(), node, error_text(e)))
            self._count(st, node, e)
            return None
        t1 = self._answered(st, t0, "get %s via node %d: %s" % (
            key.decode(), node, (err or b"ok").strip()[:100].decode(
                errors="replace")))
        if err is not None:
            self._count(st, node, err)
            return None     # a get's error may leave the reply half read
        v = got.get(key)
        if v is None and kl.acked is None:
            pass
        elif v not in allowed:
            st.bad_reads.append(Problem(
                "stale read during load" if v is not None
                else "miss during load", key, node, v, kl, t1 - self.t_start))
        st.ok += 1
        st.ok_times.append(t1)
        return True

    # -- bulk data ---------------------------------------------------------
    def preload(self, total_bytes, value_size=4000, prefix=None, depth=64,
                timeout=300):
        """Store about total_bytes of values (value_size each) under new
        keys, pipelined `depth` deep, one thread per server; they join the
        record (verify checks them) but not the running load. Returns the
        keys."""
        pre = (prefix or self.prefix.decode() + "b").encode()
        n = max(1, total_bytes // value_size)
        keys = [b"%s:%d" % (pre, i) for i in range(n)]
        for k in keys:
            self.log[k] = KeyLog()
        servers = self.cluster.live_servers()
        errors = []
        deadline = time.monotonic() + timeout

        def fill(part, s):
            try:
                c = Client(s.port, timeout=30, host=s.host)
            except OSError as e:
                errors.append("node %d: %s" % (s.node_id, e))
                return
            try:
                for j in range(0, len(part), depth):
                    if time.monotonic() > deadline:
                        errors.append("node %d: preload took over %ss"
                                      % (s.node_id, timeout))
                        return
                    batch = part[j:j + depth]
                    vals = [(keys[i], (b"k%d-p-1" % i).ljust(value_size,
                                                            b"."))
                            for i in batch]
                    for k, v in vals:
                        self.log[k].pending.append(v)
                    c.send(b"".join(b"set %s 0 0 %d\r\n%s\r\n" % (
                        k, len(v), v) for k, v in vals))
                    for k, v in vals:
                        r = c.readline()
                        if r == STORED:
                            self.log[k].acked = v
                            self.log[k].pending = []
                        elif len(errors) < 20:
                            errors.append("node %d: set %s: %r" % (
                                s.node_id, k.decode(), r))
            except (OSError, _Closed) as e:
                errors.append("node %d: %s" % (s.node_id, error_text(e)))
            finally:
                c.close()

        idx = list(range(n))
        threads = [threading.Thread(target=fill, args=(
            idx[j::len(servers)], s)) for j, s in enumerate(servers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout + 10)
        if errors or any(t.is_alive() for t in threads):
            raise AssertionError("preload of %d x %d bytes failed: %s\n%s"
                                 % (n, value_size, errors[:10],
                                    self.cluster.logs()))
        return keys

    # -- results -----------------------------------------------------------
    def ok_count(self):
        return sum(w.ok for w in self.workers)

    def error_count(self):
        return sum(w.errors for w in self.workers)

    def write_counts(self):
        """(acknowledged, unknown): sets answered STORED, and sets answered
        with an error or not at all (attempted: they may have taken
        effect)."""
        return (sum(w.writes_acked for w in self.workers),
                sum(w.writes_unknown for w in self.workers))

    def errors_by_text(self):
        """{text: {node: count}}."""
        out = collections.defaultdict(collections.Counter)
        for w in self.workers:
            for (node, text), n in list(w.by_error.items()):
                out[text][node] += n
        return out

    def bad_reads(self):
        return [p for w in self.workers for p in w.bad_reads]

    def longest_request(self):
        """(seconds, description) of the slowest answer, error or not."""
        return max((w.slowest for w in self.workers), key=lambda x: x[0])

    def longest_gap(self, t_from=None, t_to=None):
        """(seconds, start, end): the longest time, within [t_from, t_to]
        (default: the whole run), in which no request succeeded."""
        t_from = self.t_start if t_from is None else t_from
        t_to = (self.t_stop or time.monotonic()) if t_to is None else t_to
        times = sorted(t for w in self.workers for t in list(w.ok_times)
                       if t_from <= t <= t_to)
        best = (0.0, t_from, t_to)
        prev = t_from
        for t in times + [t_to]:
            if t - prev > best[0]:
                best = (t - prev, prev, t)
            prev = t
        return best

    def latency_percentiles(self, ps=(50, 99, 99.9)):
        lat = sorted(x for w in self.workers for x in list(w.latencies))
        if not lat:
            return {p: None for p in ps}
        return {p: lat[min(len(lat) - 1, int(len(lat) * p / 100.0))]
                for p in ps}

    def report(self):
        end = self.t_stop or time.monotonic()
        dur = end - self.t_start if self.t_start else 0.0
        ok, err = self.ok_count(), self.error_count()
        lines = ["load: %.1fs through nodes %s, %d keys, %d threads: %d ok "
                 "(%.0f/s), %d errors" % (
                     dur, [s.node_id for s in self.targets], len(self.keys),
                     self.nthreads, ok, ok / dur if dur else 0, err)]
        for t, text in self.events:
            lines.append("  event at +%.3fs: %s" % (t - self.t_start, text))
        for text, nodes in sorted(self.errors_by_text().items(),
                                  key=lambda x: -sum(x[1].values())):
            lines.append("  %6d x %s (%s)" % (
                sum(nodes.values()), text, ", ".join(
                    "node %s: %d" % kv for kv in sorted(nodes.items()))))
        pct = self.latency_percentiles()
        if pct[50] is not None:
            lines.append("  latency p50 %.2fms p99 %.2fms p99.9 %.2fms" % (
                pct[50] * 1e3, pct[99] * 1e3, pct[99.9] * 1e3))
        lat, desc = self.longest_request()
        lines.append("  longest request: %.3fs (%s)" % (lat, desc))
        gap, a, b = self.longest_gap()
        lines.append("  longest time without a success: %.3fs (+%.3fs to "
                     "+%.3fs)" % (gap, a - self.t_start, b - self.t_start))
        bad = self.bad_reads()
        lines.append("  reads not matching the record during the load: %d"
                     % len(bad))
        lines += ["    " + str(p) for p in bad[:10]]
        return "\n".join(lines)

    # -- verification --------------------------------------------------------
    def verify(self, cluster=None, servers=None, keys=None, timeout=15.0,
               batch=100):
        """Read every key (or `keys`) through every live server (or
        `servers`) and compare with the record; also counts the reads of the
        load that did not match. A server's SERVER_ERROR or broken
        connection is retried until `timeout`, then its keys are
        "unreadable". The load's own reads that did not match count too,
        for the keys checked. Returns a Verification; call .check() to
        fail."""
        cluster = cluster or self.cluster
        if not self._stop.is_set():
            raise AssertionError("verify() while the load runs: stop() it")
        servers = list(servers if servers is not None
                       else cluster.live_servers())
        keys = list(self.log) if keys is None else list(keys)
        # Reads of the load count only for the keys checked (a test that
        # checks the partitions that kept a copy ignores the others').
        wanted = set(keys)
        problems = [p for p in self.bad_reads() if p.key in wanted]
        t0 = time.monotonic()
        for s in servers:
            problems += self._verify_through(s, keys, t0 + timeout, batch)
        return Verification(self, cluster, problems, len(keys),
                            [s.node_id for s in servers],
                            time.monotonic() - t0)

    def _verify_through(self, s, keys, deadline, batch):
        problems = []
        c = None
        last_err = None
        j = 0
        try:
            while j < len(keys):
                part = keys[j:j + batch]
                try:
                    if c is None:
                        c = Client(s.port, host=s.host)
                    got, err = c.get_multi(part)
                except (OSError, _Closed) as e:
                    err = error_text(e).encode()
                    if c is not None:
                        c.close()
                    c = None
                if err is not None:
                    last_err = err
                    if c is not None:
                        c.close()
                        c = None
                    if time.monotonic() < deadline:
                        time.sleep(0.05)
                        continue
                    if len(part) > 1:   # find which keys fail: one by one
                        for k in part:
                            problems += self._verify_through(
                                s, [k], deadline, 1)
                    else:
                        problems.append(Problem(
                            "unreadable", part[0], s.node_id,
                            last_err.strip().decode(errors="replace"),
                            self.log[part[0]]))
                    j += batch
                    continue
                for k in part:
                    p = self._judge(k, got.get(k), s.node_id)
                    if p:
                        problems.append(p)
                j += batch
        finally:
            if c is not None:
                c.close()
        return problems

    def _judge(self, key, v, node):
        kl = self.log[key]
        if v is None:
            return Problem("lost", key, node, v, kl) if kl.acked is not None \
                else None
        if v in kl.allowed():
            return None
        if v.split(b"-", 1)[0] == b"k%s" % key.rsplit(b":", 1)[1]:
            return Problem("stale", key, node, v, kl)
        return Problem("unknown value", key, node, v, kl)

    def keys_where(self, pred):
        """The recorded keys for which pred(key) holds."""
        return [k for k in self.log if pred(k)]
