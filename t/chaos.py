"""Chaos driver (issue 7), shared by t/test_chaos.py (60 s in CI) and
bench/chaos.py (10 minutes): random faults of one data server at a time
under load through every live server, with the client's record checked
during the run and at the end.

    with LocalCluster(n=3) as c:
        lg = LoadGen(c, keys=2000, threads=6).start()
        ch = Chaos(c, lg, seed=7)
        ch.run(60)                 # raises ChaosError on a broken rule
        lg.stop()
        v = lg.verify(c)           # every key through every live server
        print(ch.report(v))
        v.check()

The faults, one at a time, each after the cluster has settled (status shows
every partition fully replicated, no recovery under way, and every running,
unstopped server process up) and a random pause of load:

- kill: SIGKILL a random live server, until status shows it failed at a
  higher epoch; a replacement server (the next node id, an empty process)
  is started when fewer than `servers` live servers are left;
- long stop: SIGSTOP a random live server until status shows it failed,
  start a replacement likewise, then SIGCONT it, at once or (at random)
  after the cluster has settled without it: it is fenced, drops its data
  and joins again empty under its node id, taking secondaries only;
- short stop: SIGSTOP a random live server for a random time well under its
  failure detector timeout (the status heartbeats column), then SIGCONT it:
  it must not be declared failed (in status and in the meta server's log).

Since the cluster settles before every fault (checked again just before
the signal), no fault of the driver takes a partition's last copy; a
failover the driver did not cause (a false suspicion on a loaded host) is
counted, reported and settled like any other, not hidden.

What the record allows (t/loadgen.py): each key has one writer thread, which
also does every read of that key, so a key's operations are ordered. A read,
during the run or in the final verify through every live server, must
return the key's last acknowledged value (the last set answered STORED) or
a value of a set sent after that one whose answer was an error or never
came (attempted: it may or may not have taken effect); a miss is allowed
only before the first acknowledged set. Anything else (an older value, a
miss after an acknowledged set) is a lost write.
"""

import random
import re
import signal
import subprocess
import time

from cluster import ClusterError, failed_nodes, fully_replicated, up_nodes


_FAILED = re.compile(r"epoch (\d+): node (\d+) (declared failed[^\n]*)")


class ChaosError(AssertionError):
    pass


class Chaos:
    """Faults of one data server at a time on a LocalCluster under a running
    LoadGen. `servers`: the number of live servers kept (a replacement is
    started when fewer are left); `pause`: (min, max) seconds of load
    between a settled cluster and the next fault; `weights`: relative odds
    of kill, long stop, short stop."""

    ACTIONS = ("kill", "long stop", "short stop")

    def __init__(self, cluster, lg, seed=1, servers=3, pause=(1.0, 2.5),
                 weights=(2, 1, 1), failover_timeout=10.0,
                 settle_timeout=60.0, log=print):
        self.c = cluster
        self.lg = lg
        self.rng = random.Random(seed)
        self.seed = seed
        self.servers = servers
        self.pause = pause
        self.weights = weights
        self.failover_timeout = failover_timeout
        self.settle_timeout = settle_timeout
        self.log = log
        self.counts = {a: 0 for a in self.ACTIONS}
        self.counts.update(replacements=0, rejoins=0, failovers=0,
                           resettles=0)
        self.short_stops = []      # (node, seconds stopped, timeout seconds)
        self.settle_times = []     # seconds from a fault to settled
        self.caused = []           # (epoch, node) of the driver's failovers
        self.t_start = None

    # -- helpers ---------------------------------------------------------
    def _event(self, text, t=None):
        t = self.lg.event(text, t)
        self.log("chaos +%.3fs: %s" % (t - self.t_start, text))
        return t

    def live(self):
        """Running, unstopped data servers (their node ids)."""
        return sorted(s.node_id for s in self.c.live_servers())

    def _fail(self, what):
        raise ChaosError("%s\n%s\n%s" % (what, self.lg.report(),
                                         self.c.logs()))

    # Between status polls. Each poll is an ftmemcached-ctl process and a
    # fabric connection to the meta server; 20 a second for a whole run
    # load a 2-core host enough to delay the meta server's heartbeat reads.
    POLL = 0.2

    def _wait(self, pred, timeout, what):
        """Poll status every POLL seconds until pred(status) holds; returns
        that status. A status the meta server does not give counts as not
        yet; a data server that died on its own fails the run."""
        deadline = time.monotonic() + timeout
        last = None
        while True:
            try:
                self.c.check_alive()
                st = self.c.status()
                last = st
                if pred(st):
                    return st
            except ClusterError as e:
                if "data server died" in str(e):
                    self._fail(str(e))
            except subprocess.TimeoutExpired:
                pass
            if time.monotonic() >= deadline:
                self._fail("timed out after %.0fs waiting for %s; last "
                           "status:\n%s" % (timeout, what,
                                            last["out"] if last else None))
            time.sleep(self.POLL)

    def status(self):
        """`ftmemcached-ctl status`, retried while the meta server is slow
        to answer (a busy host)."""
        return self._wait(lambda st: True, self.failover_timeout,
                          "the meta server to answer status")

    def settled(self, st):
        """Every partition fully replicated, no recovery under way, and
        exactly the live processes up in status."""
        return fully_replicated(st) and up_nodes(st) == self.live()

    def wait_settled(self, since=None):
        st = self._wait(self.settled, self.settle_timeout,
                        "the cluster to settle: fully replicated, nodes %s "
                        "up" % self.live())
        if since is not None:
            self.settle_times.append(time.monotonic() - since)
            self._event("settled at epoch %d, %.2fs after the fault" % (
                st["epoch"], time.monotonic() - since))
        self.lg.retarget()
        return st

    def ensure_settled(self):
        """Just before a fault: settled still? A failover the driver did
        not cause (a false suspicion) may have struck during the pause;
        faulting then could take a partition's last copy."""
        st = self.status()
        if not self.settled(st):
            self.counts["resettles"] += 1
            self._event("not settled before the next fault (epoch %d, up "
                        "%s): waiting again" % (st["epoch"], up_nodes(st)))
            self.wait_settled()

    def failures_logged(self):
        """[(epoch, node, reason)] of every failover in the meta server's
        log ("epoch N: node X declared failed: ...")."""
        return [(int(m.group(1)), int(m.group(2)), m.group(3)) for m in
                _FAILED.finditer(self.c.meta_log())]

    def _replace(self):
        """Start a replacement when fewer than `servers` are live."""
        if len(self.live()) < self.servers:
            s = self.c.add_server()
            self.counts["replacements"] += 1
            self._event("started replacement node %d" % s.node_id)

    def _declared_failed(self, node, before, t_sig):
        st = self._wait(
            lambda st: st["epoch"] > before and
            st["rows"].get(node, {}).get("state") == "failed",
            self.failover_timeout,
            "node %d in state failed at an epoch above %d" % (node, before))
        self.counts["failovers"] += 1
        self.caused += [(e, n) for e, n, _ in self.failures_logged()
                        if n == node and e > before]
        self._event("status: node %d failed %.0f ms after the signal, "
                    "epoch %d -> %d" % (node, (time.monotonic() - t_sig) *
                                        1000, before, st["epoch"]))
        self.lg.retarget()
        return st

    # -- faults ----------------------------------------------------------
    def kill(self, node):
        before = self.status()["epoch"]
        t = self.c.kill_server(node, signal.SIGKILL)
        self.counts["kill"] += 1
        self._event("SIGKILL node %d" % node, t)
        self._declared_failed(node, before, t)
        self._replace()
        return t

    def long_stop(self, node):
        before = self.status()["epoch"]
        t = self.c.pause_server(node)
        self.counts["long stop"] += 1
        self._event("SIGSTOP node %d (until replaced)" % node, t)
        self._declared_failed(node, before, t)
        self._replace()
        settled = self.rng.random() < 0.5
        if settled:
            self.wait_settled()
        self.c.resume_server(node)
        self.counts["rejoins"] += 1
        self._event("SIGCONT node %d (fenced: it joins again empty), %s" % (
            node, "after recovery finished" if settled else
            "while its replacement may be recovering"))
        # Reads through it from the start: before it learns it is fenced,
        # it must not answer with what it held.
        self.lg.retarget()
        return t

    def short_stop(self, node):
        st = self.status()
        logged = len(self.failures_logged())
        hb = st["heartbeats"].get(node)
        timeout = hb["timeout_ms"] / 1000.0 if hb else 0.1
        # Well under the timeout: a quarter of it at most, 5 ms at least.
        want = self.rng.uniform(0.005, max(0.006, timeout / 4))
        s = self.c.server(node)
        t = time.monotonic()
        s.paused = True
        s.proc.send_signal(signal.SIGSTOP)
        time.sleep(want)
        s.proc.send_signal(signal.SIGCONT)
        s.paused = False
        held = time.monotonic() - t
        self.counts["short stop"] += 1
        self.short_stops.append((node, held, timeout))
        self._event("SIGSTOP node %d for %.0f ms (detector timeout %.0f ms)"
                    % (node, held * 1000, timeout * 1000), t)
        if held >= timeout / 2:
            return t       # the host was too slow to keep it short
        # Give a wrong verdict time to show, then check there was none.
        time.sleep(max(0.5, 4 * timeout))
        after = self.status()
        wrong = [f for f in self.failures_logged()[logged:] if f[1] == node]
        if wrong or after["rows"].get(node, {}).get("state") != "up":
            self._fail("node %d stopped for %.0f ms (under its detector "
                       "timeout of %.0f ms) is %s in status, epoch %d -> %d;"
                       " failovers logged: %s\n%s" % (
                           node, held * 1000, timeout * 1000,
                           after["rows"].get(node), st["epoch"],
                           after["epoch"], wrong, after["out"]))
        return t

    # -- the run ---------------------------------------------------------
    def run(self, duration):
        """Faults until `duration` seconds have passed, then settle once
        more. Returns the last status."""
        self.t_start = self.lg.t_start or time.monotonic()
        end = time.monotonic() + duration
        self.wait_settled()
        while True:
            left = end - time.monotonic()
            if left <= 0:
                break
            time.sleep(min(left, self.rng.uniform(*self.pause)))
            if time.monotonic() >= end:
                break
            action = self.rng.choices(self.ACTIONS, self.weights)[0]
            self.ensure_settled()
            node = self.rng.choice(self.live())
            t = {"kill": self.kill, "long stop": self.long_stop,
                 "short stop": self.short_stop}[action](node)
            self.wait_settled(since=t)
        return self.wait_settled()

    def report(self, verification=None):
        """The run's counts, one line each."""
        lg = self.lg
        acked, unknown = lg.write_counts()
        ops = lg.ok_count() + lg.error_count()
        gap, a, b = lg.longest_gap()
        lat, desc = lg.longest_request()
        dur = (lg.t_stop or time.monotonic()) - lg.t_start
        logged = self.failures_logged()
        lines = [
            "chaos: seed %d, %.0fs, %d servers kept live" % (
                self.seed, dur, self.servers),
            "  operations: %d (%d ok, %d errors), %.0f/s" % (
                ops, lg.ok_count(), lg.error_count(), ops / dur),
            "  kills: %d, long stops: %d, short stops: %d, replacements "
            "started: %d, failovers: %d (+%d not caused by the driver)" % (
                self.counts["kill"], self.counts["long stop"],
                self.counts["short stop"], self.counts["replacements"],
                self.counts["failovers"],
                len({(e, n) for e, n, _ in logged} - set(self.caused))),
            "  acknowledged writes: %d, attempted-unacknowledged writes: %d"
            % (acked, unknown),
            "  longest stall (no request succeeded): %.3fs (+%.3fs to "
            "+%.3fs); longest request %.3fs (%s)" % (
                gap, a - lg.t_start, b - lg.t_start, lat, desc)]
        caused = set(self.caused)
        for e, n, why in logged:
            if (e, n) not in caused:
                lines.append("  failover not caused by the driver: epoch "
                             "%d: node %d %s" % (e, n, why))
        if self.settle_times:
            st = sorted(self.settle_times)
            lines.append("  fault to settled: median %.2fs, max %.2fs" % (
                st[len(st) // 2], st[-1]))
        if self.short_stops:
            lines.append("  short stops: longest %.0f ms (timeouts %s ms)" %
                         (max(h for _, h, _ in self.short_stops) * 1000,
                          sorted({int(t * 1000) for _, _, t in
                                  self.short_stops})))
        if verification is not None:
            during = len(lg.bad_reads())
            lines.append("  reads not as recorded during the run: %d; %s" %
                         (during, verification.summary()))
            lines.append("  lost: %d" % len(verification.lost))
        return "\n".join(lines)
