#!/bin/sh
# Builds the binary-protocol libFuzzer target with clang and runs it for a
# bounded time (default 60 s; first argument overrides). Longer runs: pass
# e.g. 3600, and keep the corpus directory between runs.
#   t/fuzz/run.sh [seconds] [corpus-dir]
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
secs=${1:-${FTM_FUZZ_SECONDS:-60}}
corpus=${2:-${TMPDIR:-/tmp}/ftm-proto-bin-corpus}
out=${TMPDIR:-/tmp}/ftm-proto-bin-fuzz
CXX=${CLANGXX:-clang++}
if ! command -v "$CXX" >/dev/null 2>&1; then
  echo "run.sh: $CXX not found (apt-get install clang); skipping the fuzz run"
  exit 77   # automake's "skipped"
fi
mkdir -p "$corpus"
"$CXX" -std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -I"$top" \
  $(pkg-config --cflags libxxhash jemalloc 2>/dev/null) \
  "$top/t/fuzz/proto_bin_fuzz.cc" \
  "$top/src/proto_bin.cc" "$top/src/sasl.cc" "$top/src/auth_file.cc" \
  "$top/src/proto_util.cc" "$top/src/execute.cc" "$top/src/store.cc" \
  "$top/src/clock.cc" \
  $(pkg-config --libs libsasl2 libxxhash jemalloc) -lpthread -o "$out"
# A few seeds: a valid get, set, incr and a stat.
printf '\000\003\200\000\000\001\000\000\000\000\000\000\000\001\000\000\000\000\000\000\000\000\000\000\000\000k' \
  > "$corpus/seed-get"
printf '\000\377\200\001\000\001\010\000\000\000\000\000\000\012\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000kv' \
  > "$corpus/seed-set"
printf '\004\010set x 0 0 3\r\na b\r\nget x\r\n' > "$corpus/seed-auth"
exec "$out" -max_total_time="$secs" -max_len=4096 -timeout=10 "$corpus"
