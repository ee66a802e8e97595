#!/usr/bin/env bash
# A local ftmemcached cluster in the foreground: one metadata server
# (fabric 127.0.0.1:11311) and 3 data servers (memcached ports 11211, 11212,
# 11213 on 127.0.0.1; 2 copies of every partition), over the tcp fabric
# provider. Ctrl-C (or any server exiting) stops all of them.
#
#   scripts/cluster.sh [ftmemcached flags...]   e.g. scripts/cluster.sh -t 4 -m 1024
#
# Extra arguments go to every data server. Environment:
#   FTM_BUILDDIR  where the binaries are (default: build/, as scripts/build.sh makes)
#   FTM_FABRIC    fabric provider: tcp (default), verbs or auto
#   FTM_COPIES    copies of each partition, 1-3 (default 2)
#   FTM_STATE_DIR the metadata server's state directory (default: a fresh
#                 temporary one, removed on exit)
#   FTM_PORTS     the 3 data servers' memcached ports (default "11211 11212 11213")
#   FTM_META_PORT the metadata server's fabric port (default 11311)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
source "$top/scripts/serves.sh"
build=${FTM_BUILDDIR:-$top/build}
fabric=${FTM_FABRIC:-tcp}
copies=${FTM_COPIES:-2}
meta_addr=127.0.0.1:${FTM_META_PORT:-11311}
read -r -a ports <<<"${FTM_PORTS:-11211 11212 11213}"
[ ${#ports[@]} = 3 ] || { echo "cluster.sh: FTM_PORTS needs 3 ports" >&2; exit 2; }

for b in ftmemcached ftmemcached-meta ftmemcached-ctl; do
  if [ ! -x "$build/$b" ]; then
    echo "cluster.sh: $build/$b not built (run scripts/build.sh, or set FTM_BUILDDIR)" >&2
    exit 2
  fi
done
for p in "${meta_addr#*:}" "${ports[@]}"; do
  if (exec 3<>/dev/tcp/127.0.0.1/"$p") 2>/dev/null; then
    echo "cluster.sh: 127.0.0.1:$p is already in use (a stock memcached service? 'systemctl stop memcached')" >&2
    exit 1
  fi
done

state=${FTM_STATE_DIR:-}
tmp=""
if [ -z "$state" ]; then
  tmp=$(mktemp -d /tmp/ftm-cluster.XXXXXX)
  state=$tmp/meta-state
fi
pids=()
stopping=0
stop_all() {
  stopping=1
  trap - INT TERM
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  # memcached-style servers take up to a second to honour SIGTERM
  for _ in $(seq 50); do
    alive=0
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && break
    sleep 0.1
  done
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -n "$tmp" ] && rm -rf "$tmp"
}
trap 'echo; echo "cluster.sh: stopping"; stop_all; exit 0' INT TERM
trap '[ $stopping = 1 ] || stop_all' EXIT

user=(); [ "$(id -u)" = 0 ] && user=(-u root)
ctl() { "$build/ftmemcached-ctl" --fabric "$fabric" --meta "$meta_addr" --timeout 1000 "$@"; }

"$build/ftmemcached-meta" --fabric "$fabric" --listen "$meta_addr" \
  --state-dir "$state" --replicas "$copies" &
pids+=($!)
for _ in $(seq 100); do ctl status >/dev/null 2>&1 && break; sleep 0.1; done
ctl status >/dev/null 2>&1 || { echo "cluster.sh: the metadata server did not start" >&2; exit 1; }

for i in 0 1 2; do
  "$build/ftmemcached" -p "${ports[$i]}" -l 127.0.0.1 "${user[@]}" \
    --meta "$meta_addr" --node-id $((i + 1)) --fabric "$fabric" \
    --fabric-listen 127.0.0.1 "$@" &
  pids+=($!)
done

# Formed when status lists 3 servers, all up and connected, and each
# serves (scripts/serves.sh).
formed=0
for _ in $(seq 300); do
  if [ "$(ctl status 2>/dev/null | grep -cE '^[0-9]+ +up +up ')" = 3 ] &&
     serves "${ports[0]}" && serves "${ports[1]}" && serves "${ports[2]}"; then
    formed=1; break
  fi
  for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null || { echo "cluster.sh: a server exited during start-up" >&2; exit 1; }; done
  sleep 0.1
done
[ $formed = 1 ] || { echo "cluster.sh: the cluster did not form within 30 s" >&2; ctl status >&2 || true; exit 1; }
ctl status
echo "cluster.sh: memcached on 127.0.0.1:${ports[0]}, :${ports[1]}, :${ports[2]} (any server takes any key);"
echo "cluster.sh: '$build/ftmemcached-ctl --fabric $fabric --meta $meta_addr status' (or digest, get-replica KEY) inspects it. Ctrl-C stops all."

# Until Ctrl-C, or until one of them exits (then stop the rest).
set +e
wait -n "${pids[@]}"
rc=$?
if [ $stopping = 0 ]; then
  echo "cluster.sh: a server exited (status $rc); stopping the others" >&2
  stop_all
  exit 1
fi
