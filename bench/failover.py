#!/usr/bin/python3
"""Failover benchmark (issue 6): how long the keys of a SIGKILLed primary
stay unwritable, and how fast a lost copy is recovered.

    FTM_BUILDDIR=/path/to/build /usr/bin/python3 bench/failover.py --kills 20

Kills: a LocalCluster (t/cluster.py: a meta server and 3 data servers, tcp
fabric on loopback) under load through every server (t/loadgen.py). Per
kill: the victim is the live server with the most primaries; the keys of
the load it is primary of are found from the partition map; it is
SIGKILLed; the time from the SIGKILL to the first acknowledged write, sent
after the SIGKILL, to one of those keys is measured (and to the last of
them written in the run); the load stops, every key is read through every
live server and compared with the acknowledged writes (this kill's load
and every earlier one's); then a fresh server
joins as a new node and the cluster is waited for until it has 3 servers up
and every partition fully replicated, before the next kill.

Recovery: a new cluster is loaded with --recovery-mb of values, a server is
SIGKILLed, and the time until status shows recovery finished is measured;
the bandwidth is the bytes of the partitions the victim held (the copies to
re-create) over that time.

Prints a table per kill, then p50/p99/max over the kills, then the
recovery line. Exit status 1 when a kill or recovery could not be measured
or an acknowledged write was lost, with the cluster's logs.
"""

import argparse
import sys
import time

from cluster_bench import add_common_args, use_build


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=20,
                    help="servers to kill, one after another (default 20)")
    ap.add_argument("--after", type=float, default=1.0,
                    help="seconds of load after the failover (default 1)")
    add_common_args(ap, "seconds a failover may take to show (default 10)")
    ap.add_argument("--recovery-mb", type=float, default=200.0,
                    help="data loaded before the recovery run (default 200;"
                         " 0 skips it)")
    ap.add_argument("--value-size", type=int, default=4000,
                    help="value size of the recovery data (default 4000)")
    ap.add_argument("--recovery-timeout", type=float, default=300.0,
                    help="seconds recovery may take (default 300)")
    ap.add_argument("--verbose", action="store_true",
                    help="print the meta server's log lines of each kill "
                         "(suspicions, holds, decisions) under its row")
    return ap.parse_args()


def pct(xs, p):
    """Nearest-rank percentile (None for no data)."""
    xs = sorted(x for x in xs if x is not None)
    if not xs:
        return None
    k = max(0, min(len(xs) - 1, -(-len(xs) * p // 100) - 1))
    return xs[int(k)]


def ms(x):
    return "-" if x is None else "%.0f" % (x * 1000)


class Bench:
    def __init__(self, args):
        self.args = args
        self.rows = []
        self.failures = []
        self.loads = []      # every kill's LoadGen, verified after each kill

    def one_kill(self, c, i):
        from cluster import up_nodes
        from loadgen import LoadGen
        a = self.args
        st0 = c.status()
        live = up_nodes(st0)
        victim = max(live, key=lambda n: st0["rows"][n]["primaries"])
        detector_ms = st0["heartbeats"].get(victim, {}).get("timeout_ms")
        lg = LoadGen(c, keys=a.keys, threads=a.threads,
                     prefix="kill%d" % i, servers=c.live_servers())
        owned = c.keys_of(lg.keys, victim)
        row = dict(kill=i + 1, victim=victim, detector_ms=detector_ms,
                   owned=len(owned))
        self.rows.append(row)
        row["log_from"] = len(c.meta_log())
        lg.start()
        try:
            time.sleep(0.5)
            t = c.kill_server(victim)
            lg.event("SIGKILL node %d" % victim, t)
            lg.mark(t)
            lg.retarget()
            st = c.wait_failed(victim, st0["epoch"], a.failover_timeout)
            row["declared_s"] = time.monotonic() - t
            row["epoch"] = "%d->%d" % (st0["epoch"], st["epoch"])
            deadline = time.monotonic() + a.failover_timeout
            while not lg.first_ok_after(owned) and \
                    time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(a.after)
        finally:
            lg.stop()
        again = lg.first_ok_after(owned)
        dones = [done - t for _, done in again.values()]
        row["first_write_s"] = min(dones) if dones else None
        row["last_key_s"] = max(dones) if dones else None
        row["keys_back"] = len(again)
        row["errors"] = lg.error_count()
        row["stall_s"] = lg.longest_gap()[0]
        # This kill's load, and the earlier kills' keys: still all there?
        self.loads.append(lg)
        problems = []
        for old in self.loads:
            problems += old.verify(c).problems
        row["lost"] = len({p.key for p in problems
                           if p.kind in ("lost", "stale")})
        row["problems"] = len(problems)
        if problems:
            self.failures.append("kill %d (node %d):\n%s" % (
                i + 1, victim, "\n".join(str(p) for p in problems[:10])))
        if not dones:
            self.failures.append("kill %d (node %d): no write to its %d "
                                 "keys acknowledged after the SIGKILL\n%s"
                                 % (i + 1, victim, len(owned), lg.report()))
        return row

    def restore(self, c):
        from cluster import fully_replicated, up_nodes
        s = c.add_server()
        c.wait_status(lambda st: fully_replicated(st) and
                      len(up_nodes(st)) == 3 and s.node_id in up_nodes(st),
                      self.args.recovery_timeout,
                      "node %d joined, 3 servers up, fully replicated"
                      % s.node_id)

    def kills(self):
        from cluster import ClusterError, LocalCluster
        with LocalCluster(n=3, server_args=["-m", "1024"]) as c:
            for i in range(self.args.kills):
                try:
                    row = self.one_kill(c, i)
                    self.print_row(row)
                    if self.args.verbose:
                        for line in c.meta_log()[row["log_from"]:].splitlines():
                            print("      " + line)
                    self.restore(c)
                except ClusterError as e:
                    self.failures.append("kill %d: %s" % (i + 1, e))
                    if self.rows and self.rows[-1]["kill"] == i + 1:
                        self.print_row(self.rows[-1])
                    print("kill %d: stopped: %s" % (
                        i + 1, str(e).splitlines()[0]), flush=True)
                    break

    def print_header(self):
        print("%-5s %-6s %-7s %9s %9s %9s %9s %10s %7s %8s %5s" % (
            "kill", "victim", "epoch", "detector", "declared", "1st_write",
            "last_key", "keys_back", "errors", "stall", "lost"))
        print("%-5s %-6s %-7s %9s %9s %9s %9s %10s %7s %8s %5s" % (
            "", "", "", "ms", "ms", "ms", "ms", "", "", "ms", ""))

    def print_row(self, r):
        print("%-5d %-6d %-7s %9s %9s %9s %9s %10s %7s %8s %5s" % (
            r["kill"], r["victim"], r.get("epoch", "-"),
            "-" if r["detector_ms"] is None else "%.1f" % r["detector_ms"],
            ms(r.get("declared_s")), ms(r.get("first_write_s")),
            ms(r.get("last_key_s")), "%s/%d" % (r.get("keys_back", "-"),
                                                r["owned"]),
            r.get("errors", -1), ms(r.get("stall_s")), r.get("lost", -1)),
            flush=True)

    def summary(self):
        done = [r for r in self.rows if "first_write_s" in r]
        print("\n%d kills measured (of %d asked)" % (len(done),
                                                      self.args.kills))
        for name, key in (("SIGKILL to failed in status (poll, upper bound)",
                           "declared_s"),
                          ("SIGKILL to first acknowledged write to its keys",
                           "first_write_s"),
                          ("SIGKILL to last of its keys written",
                           "last_key_s"),
                          ("longest time without any success", "stall_s")):
            xs = [r.get(key) for r in done]
            print("%-50s p50 %6s ms  p99 %6s ms  max %6s ms" % (
                name, ms(pct(xs, 50)), ms(pct(xs, 99)),
                ms(max((x for x in xs if x is not None), default=None))))
        if done:
            print("errors seen by the load per kill: p50 %d, max %d; "
                  "acknowledged writes lost: %d" % (
                      pct([r["errors"] for r in done], 50),
                      max(r["errors"] for r in done),
                      sum(r["lost"] for r in done)))

    def recovery(self):
        from cluster import (ClusterError, LocalCluster, fully_replicated,
                             up_nodes)
        from loadgen import LoadGen
        a = self.args
        with LocalCluster(n=3, server_args=["-m", "1024"]) as c:
            lg = LoadGen(c, keys=0, threads=1)
            t0 = time.monotonic()
            keys = lg.preload(int(a.recovery_mb * 1e6),
                              value_size=a.value_size, prefix="rec")
            load_s = time.monotonic() - t0
            st0 = c.status()
            victim = max(up_nodes(st0),
                         key=lambda n: st0["rows"][n]["primaries"])
            held = c.keys_of(keys, victim, role="replica")
            copy_bytes = len(held) * a.value_size
            try:
                t = c.kill_server(victim)
                st = c.wait_failed(victim, st0["epoch"], a.failover_timeout)
                t_failed = time.monotonic()
                c.wait_status(lambda st: fully_replicated(st) and
                              len(up_nodes(st)) == 2, a.recovery_timeout,
                              "recovery finished after node %d's failure"
                              % victim)
                t_done = time.monotonic()
            except ClusterError as e:
                self.failures.append("recovery: %s" % e)
                print("recovery: not measured: %s" % str(e).splitlines()[0])
                return
            lg.stop()
            v = lg.verify(c, servers=c.live_servers()[:1], timeout=30)
            if v.problems:
                self.failures.append("recovery data:\n" + "\n".join(
                    str(p) for p in v.problems[:10]))
            print("\nrecovery: %.0f MB loaded (%d x %d B) in %.1fs; node %d "
                  "held %.0f MB of copies; declared failed %.0f ms after "
                  "SIGKILL (epoch %d -> %d); recovered in %.2fs after that "
                  "(%.2fs after the SIGKILL): %.1f MB/s; %s" % (
                      a.recovery_mb, len(keys), a.value_size, load_s,
                      victim, copy_bytes / 1e6, (t_failed - t) * 1000,
                      st0["epoch"], st["epoch"], t_done - t_failed,
                      t_done - t, copy_bytes / 1e6 / max(1e-9,
                                                         t_done - t_failed),
                      v.summary()))


def main():
    args = parse_args()
    status = use_build(args, "failover.py")
    if status is not None:
        return status
    b = Bench(args)
    if args.kills:
        b.print_header()
        b.kills()
        b.summary()
    if args.recovery_mb > 0:
        b.recovery()
    if b.failures:
        print("\nFAILED:\n" + "\n\n".join(f[-6000:] for f in b.failures),
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
