"""What bench/failover.py and bench/chaos.py share: the load and build
options, and finding a build that can run a cluster (t/cluster.py)."""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "t"))


def add_common_args(ap, failover_help):
    """Adds --keys, --threads, --failover-timeout (help: failover_help) and
    --builddir to the argparse parser `ap`."""
    ap.add_argument("--keys", type=int, default=2000,
                    help="key space of the load (default 2000)")
    ap.add_argument("--threads", type=int, default=6,
                    help="load threads (default 6)")
    ap.add_argument("--failover-timeout", type=float, default=10.0,
                    help=failover_help)
    ap.add_argument("--builddir", help="build directory (default "
                    "$FTM_BUILDDIR or the current directory)")


def use_build(args, name):
    """Points the harness at args.builddir. Returns None when a cluster can
    run, else 2 (the scripts' exit status) after saying why on stderr as
    `name`."""
    if args.builddir:
        os.environ["FTM_BUILDDIR"] = os.path.abspath(args.builddir)
    from cluster import cluster_support
    why = cluster_support()
    if why:
        print("%s: cannot run a cluster: %s (set FTM_BUILDDIR)" % (name, why),
              file=sys.stderr)
        return 2
    return None
