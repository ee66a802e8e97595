#!/usr/bin/env bash
# Cluster load run (issue 5): stock memcached, standalone ftmemcached and a
# 3-server ftmemcached cluster (2 copies, tcp fabric on loopback), the same
# load generator and load on each, in one run. Prints each side's ops/s,
# p50 and p99, the ratios to memcached, and the cluster against standalone
# ftmemcached (the issue's targets: cluster set p50 at most 2x standalone,
# cluster throughput at least half of standalone).
#
#   bench/cluster_load.sh [BUILD_DIR]      (default: the current directory)
# Environment: THREADS (-t of memcached and standalone ftmemcached, default
# 4), CLUSTER_THREADS (-t of each cluster server, default THREADS),
# SECONDS_PER_RUN (default 5), ROUNDS (alternating rounds per mix, best
# kept; default 3), LOAD_THREADS / LOAD_CONNS (load generator threads,
# connections per thread; defaults 2 and 4), MEMCACHED (stock binary).
#
# Load: bench/loadgen, 100-byte values over 10000 keys, two mixes: get90
# (90% get, 10% set) and set (set only). Against the cluster the
# generator's connections are spread over the 3 servers' ports, so about
# 2/3 of the requests are forwarded to their key's primary, and every set
# is replicated to a secondary before its reply. Everything shares this
# machine's cores: compare ratios, not absolute numbers, across machines.
set -euo pipefail
build=$(cd "${1:-.}" && pwd)
source "$(dirname "$0")/../scripts/serves.sh"
ftm="$build/ftmemcached"
meta="$build/ftmemcached-meta"
ctl="$build/ftmemcached-ctl"
gen="$build/bench/loadgen"
ref=${MEMCACHED:-/usr/bin/memcached}
threads=${THREADS:-4}
cthreads=${CLUSTER_THREADS:-$threads}
secs=${SECONDS_PER_RUN:-5}
rounds=${ROUNDS:-3}
lt=${LOAD_THREADS:-2}
lc=${LOAD_CONNS:-4}
for f in "$ftm" "$meta" "$ctl" "$gen" "$ref"; do
  [ -x "$f" ] || { echo "cluster_load.sh: $f not built/installed" >&2; exit 2; }
done

free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
tmp=$(mktemp -d /tmp/ftm-cluster-load.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
user=(); [ "$(id -u)" = 0 ] && user=(-u root)

wait_port() {  # wait_port PORT WHAT
  for _ in $(seq 200); do
    (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "cluster_load.sh: $2 did not start on port $1" >&2; exit 2
}

start() {  # start BINARY PORT [extra flags]: background server, waits until it answers
  local bin=$1 port=$2; shift 2
  "$bin" -p "$port" -U 0 -l 127.0.0.1 -m 1024 "${user[@]}" "$@" 2>>"$tmp/servers.log" &
  pids+=($!)
  wait_port "$port" "$bin"
}

ref_port=$(free_port); start "$ref" "$ref_port" -t "$threads"
ftm_port=$(free_port); start "$ftm" "$ftm_port" -t "$threads"

# The cluster: a meta server, then 3 data servers; formed when status shows
# all 3 up and connected.
meta_addr=127.0.0.1:$(free_port)
"$meta" --fabric tcp --listen "$meta_addr" --state-dir "$tmp/meta" --replicas 2 \
  >>"$tmp/meta.log" 2>&1 &
pids+=($!)
cports=()
for i in 1 2 3; do
  p=$(free_port); cports+=("$p")
  start "$ftm" "$p" -t "$cthreads" --meta "$meta_addr" --node-id "$i" \
    --fabric tcp --fabric-listen 127.0.0.1
done
formed=0
for _ in $(seq 300); do
  n=$("$ctl" --fabric tcp --meta "$meta_addr" --timeout 1000 status 2>/dev/null |
      grep -cE '^[0-9]+ +up +up ' || true)
  [ "$n" = 3 ] && serves "${cports[0]}" && serves "${cports[1]}" && serves "${cports[2]}" &&
    { formed=1; break; }
  sleep 0.1
done
if [ $formed = 0 ]; then
  echo "cluster_load.sh: the cluster did not form within 30 s" >&2
  tail -n 20 "$tmp/meta.log" "$tmp/servers.log" >&2
  exit 2
fi
cluster_ports=$(IFS=,; echo "${cports[*]}")

field() { sed -n "s/.* $1=\([0-9.]*\).*/\1/p" <<<"$2"; }
better() {  # better OUT BEST: whether OUT has more ops/s than BEST (or BEST is empty)
  [ -z "$2" ] && return 0
  awk -v a="$(field ops_per_sec "$1")" -v b="$(field ops_per_sec "$2")" 'BEGIN { exit !(a > b) }'
}

declare -A best
printf '%-8s %-18s %12s %9s %9s\n' mix server ops/s p50_us p99_us
for mix in get90:0.9 set:0.0; do
  name=${mix%%:*}; g=${mix#*:}
  for side in memcached ftmemcached cluster; do best[$side]=""; done
  for _ in $(seq "$rounds"); do  # alternate so drift hits every side alike
    for side in memcached ftmemcached cluster; do
      case $side in
        memcached) port=$ref_port ;;
        ftmemcached) port=$ftm_port ;;
        cluster) port=$cluster_ports ;;
      esac
      if ! out=$("$gen" -p "$port" -T "$lt" -C "$lc" -d "$secs" -g "$g" -s 100 -k 10000); then
        echo "cluster_load.sh: the load generator failed against $side ($mix); server logs:" >&2
        tail -n 30 "$tmp/meta.log" "$tmp/servers.log" >&2
        exit 1
      fi
      if better "$out" "${best[$side]}"; then best[$side]=$out; fi
    done
  done
  for side in memcached ftmemcached cluster; do
    label=$side; [ $side = cluster ] && label="cluster(3x,2cp)"
    out=${best[$side]}
    printf '%-8s %-18s %12s %9s %9s\n' "$name" "$label" "$(field ops_per_sec "$out")" \
      "$(field p50_us "$out")" "$(field p99_us "$out")"
  done
  for side in ftmemcached cluster; do
    awk -v n="$name" -v s="$side" \
        -v ro="$(field ops_per_sec "${best[memcached]}")" -v fo="$(field ops_per_sec "${best[$side]}")" \
        -v r5="$(field p50_us "${best[memcached]}")" -v f5="$(field p50_us "${best[$side]}")" \
        -v rp="$(field p99_us "${best[memcached]}")" -v fp="$(field p99_us "${best[$side]}")" \
        'BEGIN { printf "%-8s ratio (%s/memcached): ops %.2f  p50 %.2f  p99 %.2f\n", n, s, fo/ro, f5/r5, fp/rp }'
  done
  awk -v n="$name" \
      -v so="$(field ops_per_sec "${best[ftmemcached]}")" -v co="$(field ops_per_sec "${best[cluster]}")" \
      -v s5="$(field p50_us "${best[ftmemcached]}")" -v c5="$(field p50_us "${best[cluster]}")" \
      -v sp="$(field p99_us "${best[ftmemcached]}")" -v cp="$(field p99_us "${best[cluster]}")" \
      'BEGIN { printf "%-8s ratio (cluster/ftmemcached): ops %.2f  p50 %.2f  p99 %.2f\n", n, co/so, c5/s5, cp/sp }'
done
# The replicas agree after the run (a cheap end-to-end check of the load).
"$ctl" --fabric tcp --meta "$meta_addr" digest | tail -1
