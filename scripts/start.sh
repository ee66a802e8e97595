#!/usr/bin/env bash
# README's first command: installs what is needed, builds, and runs a local
# ftmemcached cluster in the foreground (scripts/cluster.sh: a metadata
# server and 3 data servers, memcached ports 11211-11213 on 127.0.0.1, 2
# copies of every key). Ctrl-C stops all of them. Extra arguments go to
# every data server (see man/ftmemcached.1).
#
#   bash scripts/start.sh [ftmemcached flags...]
#   bash scripts/start.sh --standalone [flags...]   one server on :11211, no cluster
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
bash "$top/scripts/deps.sh" build
bash "$top/scripts/build.sh"
if [ "${1:-}" = --standalone ]; then
  shift
  if (exec 3<>/dev/tcp/127.0.0.1/11211) 2>/dev/null; then
    echo "start.sh: 127.0.0.1:11211 is already in use (a stock memcached service? 'systemctl stop memcached')" >&2
    exit 1
  fi
  user=(); [ "$(id -u)" = 0 ] && user=(-u root)
  echo "start.sh: standalone ftmemcached listening on 127.0.0.1:11211 (Ctrl-C to stop)"
  exec "$top/build/ftmemcached" -p 11211 -l 127.0.0.1 "${user[@]}" "$@"
fi
exec bash "$top/scripts/cluster.sh" "$@"
