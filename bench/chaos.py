#!/usr/bin/python3
"""Chaos run (issue 7), long form: the driver of t/test_chaos.py (t/chaos.py)
for --duration seconds (default 600).

    FTM_BUILDDIR=/path/to/build nice /usr/bin/python3 bench/chaos.py

A LocalCluster (t/cluster.py: a meta server and 3 data servers, tcp fabric
on loopback) gets --mb of bulk values, then load through every live server
(t/loadgen.py) while, every few seconds once the cluster has settled, one
data server is SIGKILLed, SIGSTOPped until replaced, or SIGSTOPped for less
than its detector timeout (t/chaos.py has the rules and what a read may
return). Afterwards every key is read through every live server. Prints the
fault log and the counts: operations, kills, stops, acknowledged and
attempted-unacknowledged writes, lost, longest stall. Exit status 1 when a
rule broke or a write was lost, with the cluster's logs.
"""

import argparse
import sys
import time

from cluster_bench import add_common_args, use_build


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=600.0,
                    help="seconds of faults (default 600)")
    ap.add_argument("--seed", type=int, default=0,
                    help="the faults' order (default: from the clock)")
    ap.add_argument("--mb", type=float, default=20.0,
                    help="bulk data stored first, in MB of 4000-byte values"
                         " (default 20)")
    ap.add_argument("--servers", type=int, default=3,
                    help="live data servers kept (default 3)")
    ap.add_argument("--detector-floor", type=int, default=500,
                    help="the meta server's --detector-floor, ms (default "
                         "500, as t/test_chaos.py; see there why)")
    add_common_args(ap, "seconds a failure may take to show (default 10)")
    ap.add_argument("--settle-timeout", type=float, default=60.0,
                    help="seconds recovery may take (default 60)")
    return ap.parse_args()


def main():
    args = parse_args()
    status = use_build(args, "chaos.py")
    if status is not None:
        return status
    from chaos import Chaos
    from cluster import LocalCluster
    from loadgen import LoadGen
    seed = args.seed or int(time.time()) % 100000
    print("chaos.py: seed %d, %.0fs of faults, %d servers, %d keys, %d "
          "threads, %.0f MB bulk, detector floor %d ms" % (
              seed, args.duration, args.servers, args.keys, args.threads,
              args.mb, args.detector_floor), flush=True)
    with LocalCluster(n=args.servers, server_args=["-m", "1024"], meta_args=[
            "--detector-floor=%d" % args.detector_floor]) as c:
        lg = LoadGen(c, keys=args.keys, threads=args.threads, seed=seed)
        if args.mb > 0:
            lg.preload(int(args.mb * 1e6), value_size=4000)
        ch = Chaos(c, lg, seed=seed, servers=args.servers,
                   failover_timeout=args.failover_timeout,
                   settle_timeout=args.settle_timeout,
                   log=lambda line: print(line, flush=True))
        try:
            lg.start()
            ch.run(args.duration)
        except AssertionError as e:
            lg.stop()
            print("\nFAILED during the run:\n%s" % e, file=sys.stderr)
            return 1
        lg.stop()
        v = lg.verify(c)
        print(ch.report(v))
        if v.problems or v.lost:
            try:
                v.check()
            except AssertionError as e:
                print("\nFAILED:\n%s" % e, file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
