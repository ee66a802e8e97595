#!/bin/sh
# Builds the libFuzzer targets with clang and runs each for a bounded time
# (default 60 s each; first argument or FTM_FUZZ_SECONDS overrides):
#   proto_bin_fuzz   binary protocol, SASL and -Y text authentication
#   proto_text_fuzz  text and meta protocol
# Each target keeps its own corpus directory under the corpus root (second
# argument); keep it between runs. Longer runs: t/fuzz/run.sh 3600.
#   t/fuzz/run.sh [seconds] [corpus-root]
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
secs=${1:-${FTM_FUZZ_SECONDS:-60}}
root=${2:-${TMPDIR:-/tmp}}
out=${TMPDIR:-/tmp}
CXX=${CLANGXX:-clang++}
if ! command -v "$CXX" >/dev/null 2>&1; then
  echo "run.sh: $CXX not found (apt-get install clang); skipping the fuzz run"
  exit 77   # automake's "skipped"
fi
# What the parsers link against: src/local.mk's libftm_proto_a_SOURCES and
# libftm_store_a_SOURCES (the .cc files). Cluster routing is compiled in but
# never reached: WorkerContext::cluster stays null.
srcs="proto_util.cc proto_text.cc proto_text_store.cc proto_text_route.cc
  forward_plan.cc proto_meta.cc proto_meta_flags.cc proto_bin.cc sasl.cc
  auth_file.cc clock.cc store.cc execute.cc"
files=
for f in $srcs; do files="$files $top/src/$f"; done

build() {  # build NAME: t/fuzz/NAME.cc -> $out/ftm-NAME
  echo "run.sh: building $1"
  # shellcheck disable=SC2046,SC2086  # flag lists split on purpose
  "$CXX" -std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined \
    -fno-sanitize-recover=undefined -I"$top" \
    $(pkg-config --cflags libxxhash jemalloc 2>/dev/null) \
    "$top/t/fuzz/$1.cc" $files \
    $(pkg-config --libs libsasl2 libxxhash jemalloc) -lpthread -o "$out/ftm-$1"
}

run() {  # run NAME CORPUS
  echo "run.sh: running $1 for $secs s (corpus $2)"
  "$out/ftm-$1" -max_total_time="$secs" -max_len=4096 -timeout=10 \
    "$2"
}

build proto_bin_fuzz
build proto_text_fuzz

# Seeds. Binary target: byte 0 = options, byte 1 = read chunk size, then a
# valid get, a set, and a -Y text authentication.
bin=$root/ftm-proto-bin-corpus
mkdir -p "$bin"
printf '\000\003\200\000\000\001\000\000\000\000\000\000\000\001\000\000\000\000\000\000\000\000\000\000\000\000k' \
  > "$bin/seed-get"
printf '\000\377\200\001\000\001\010\000\000\000\000\000\000\012\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000\000kv' \
  > "$bin/seed-set"
printf '\004\010set x 0 0 3\r\na b\r\nget x\r\n' > "$bin/seed-auth"
# Text target: byte 0 = read chunk size (low 4 bits) and -R (high 4 bits),
# then the request bytes.
text=$root/ftm-proto-text-corpus
mkdir -p "$text"
printf '\067get a b\r\n' > "$text/seed-get"
printf '\067set k 0 0 1\r\nv\r\n' > "$text/seed-set"
printf '\067mg k v t\r\n' > "$text/seed-mg"
printf '\067ms k 2 T0\r\nhi\r\n' > "$text/seed-ms"
printf '\067ma k N0 J5\r\n' > "$text/seed-ma"

# Run both even if the first finds something; fail if either did.
rc=0
run proto_bin_fuzz "$bin" || rc=1
run proto_text_fuzz "$text" || rc=1
exit $rc
