#!/usr/bin/env bash
# Load run: stock memcached and ftmemcached, same -t, same load generator,
# in one run; prints each side's ops/s, p50 and p99 and ftmemcached's ratios.
#
#   bench/load.sh [BUILD_DIR]      (default: the current directory)
# Environment: THREADS (server -t, default 4), SECONDS_PER_RUN (default 5),
# ROUNDS (alternating rounds per mix, best kept; default 3),
# LOAD_THREADS / LOAD_CONNS (load generator threads, connections per thread).
#
# ratio_ops > 1.0 means ftmemcached served more ops/s; ratio_p99 < 1.0 means
# its p99 latency was lower. Both servers and the generator share this
# machine's cores, so compare ratios, not absolute numbers, across machines.
set -euo pipefail
build=$(cd "${1:-.}" && pwd)
ftm="$build/ftmemcached"
gen="$build/bench/loadgen"
ref=${MEMCACHED:-/usr/bin/memcached}
threads=${THREADS:-4}
secs=${SECONDS_PER_RUN:-5}
rounds=${ROUNDS:-3}
lt=${LOAD_THREADS:-2}
lc=${LOAD_CONNS:-4}
for f in "$ftm" "$gen" "$ref"; do [ -x "$f" ] || { echo "load.sh: $f not built/installed" >&2; exit 2; }; done

free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

start() {  # start BINARY PORT: background server, waits until it answers
  local user=(); [ "$(id -u)" = 0 ] && user=(-u root)
  "$1" -p "$2" -U 0 -l 127.0.0.1 -t "$threads" -m 1024 "${user[@]}" &
  pids+=($!)
  for _ in $(seq 100); do
    (exec 3<>/dev/tcp/127.0.0.1/"$2") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "load.sh: $1 did not start on port $2" >&2; exit 2
}

ref_port=$(free_port); start "$ref" "$ref_port"
ftm_port=$(free_port); start "$ftm" "$ftm_port"

field() { sed -n "s/.* $1=\([0-9.]*\).*/\1/p" <<<"$2"; }

printf '%-8s %-12s %12s %9s %9s\n' mix server ops/s p50_us p99_us
for mix in get90:0.9 set:0.0; do
  name=${mix%%:*}; g=${mix#*:}
  best_ref=""; best_ftm=""
  for _ in $(seq "$rounds"); do  # alternate so drift hits both sides alike
    for side in ref ftm; do
      port=$ref_port; [ $side = ftm ] && port=$ftm_port
      out=$("$gen" -p "$port" -T "$lt" -C "$lc" -d "$secs" -g "$g" -s 100 -k 10000)
      ops=$(field ops_per_sec "$out")
      if [ $side = ref ]; then
        [ -z "$best_ref" ] || (( ${ops%.*} > $(field ops_per_sec "$best_ref" | cut -d. -f1) )) && best_ref=$out
      else
        [ -z "$best_ftm" ] || (( ${ops%.*} > $(field ops_per_sec "$best_ftm" | cut -d. -f1) )) && best_ftm=$out
      fi
    done
  done
  for side in memcached ftmemcached; do
    out=$best_ref; [ $side = ftmemcached ] && out=$best_ftm
    printf '%-8s %-12s %12s %9s %9s\n' "$name" "$side" "$(field ops_per_sec "$out")" \
      "$(field p50_us "$out")" "$(field p99_us "$out")"
  done
  awk -v n="$name" -v ro="$(field ops_per_sec "$best_ref")" -v fo="$(field ops_per_sec "$best_ftm")" \
      -v rp="$(field p99_us "$best_ref")" -v fp="$(field p99_us "$best_ftm")" \
      -v r5="$(field p50_us "$best_ref")" -v f5="$(field p50_us "$best_ftm")" \
      'BEGIN { printf "%-8s ratio (ftm/memcached): ops %.2f  p50 %.2f  p99 %.2f\n", n, fo/ro, f5/r5, fp/rp }'
done
