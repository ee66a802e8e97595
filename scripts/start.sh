#!/usr/bin/env bash
# README's first command: installs what is needed, builds, and runs
# ftmemcached in the foreground on 127.0.0.1:11211 (Ctrl-C stops it).
# Extra arguments are passed to ftmemcached (see man/ftmemcached.1).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
bash "$top/scripts/deps.sh" build
bash "$top/scripts/build.sh"
if (exec 3<>/dev/tcp/127.0.0.1/11211) 2>/dev/null; then
  echo "start.sh: 127.0.0.1:11211 is already in use (a stock memcached service? 'systemctl stop memcached')" >&2
  exit 1
fi
user=(); [ "$(id -u)" = 0 ] && user=(-u root)
echo "start.sh: ftmemcached listening on 127.0.0.1:11211 (Ctrl-C to stop)"
exec "$top/build/ftmemcached" -p 11211 -l 127.0.0.1 "${user[@]}" "$@"
