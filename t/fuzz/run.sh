#!/bin/sh
# Builds the libFuzzer targets with clang (AddressSanitizer and UBSan) and
# runs each for a bounded time (default 60 s each; first argument or
# FTM_FUZZ_SECONDS overrides):
#   proto_text_fuzz   text and meta protocol (src/proto_text.cc, proto_meta.cc)
#   proto_bin_fuzz    binary protocol, SASL and -Y text authentication
#   repl_log_fuzz     replication log entries (replication/effect.h decode)
#   control_msg_fuzz  control messages and cluster maps
#                     (replication/control_msg.h, partition_map.h decode)
# Each target reads its committed seeds (t/fuzz/corpus/TARGET) and keeps
# what it finds in CORPUS-ROOT/ftm-fuzz-corpus/TARGET (second argument,
# default $TMPDIR or /tmp); keep that between runs. A crash or failed check
# leaves crash-* in the current directory and fails the run.
#   t/fuzz/run.sh [seconds] [corpus-root] [target...]
#   t/fuzz/run.sh seeds    rewrites t/fuzz/corpus/{repl_log,control_msg}_fuzz
#                          from the real encoders (t/fuzz/make_seeds.cc)
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
if [ "${1:-}" = --compile ]; then  # internal: run.sh --compile OUT SRC CXX FLAGS
  o="$2/obj/$(echo "$3" | tr / _).o"
  if [ -f "$o" ] && [ -f "$o.d" ]; then
    stale=0
    for f in $(sed -e 's/^[^:]*://' -e 's/\\$//' "$o.d"); do
      [ "$f" -nt "$o" ] && { stale=1; break; }
    done
    [ $stale = 0 ] && exit 0
  fi
  # shellcheck disable=SC2086  # flag list split on purpose
  exec "$4" $5 -fsanitize=fuzzer-no-link,address,undefined -MMD -MF "$o.d" \
    -c "$top/$3" -o "$o"
fi
mode=run
if [ "${1:-}" = seeds ]; then mode=seeds; shift; fi
secs=${1:-${FTM_FUZZ_SECONDS:-60}}
root=${2:-${TMPDIR:-/tmp}}
[ $# -ge 2 ] && shift 2 || shift $#
targets=${*:-proto_text_fuzz proto_bin_fuzz repl_log_fuzz control_msg_fuzz}
# Objects and binaries per source tree: several checkouts may fuzz at once.
out=${TMPDIR:-/tmp}/ftm-fuzz-$(printf '%s' "$top" | cksum | cut -d' ' -f1)
CXX=${CLANGXX:-clang++}
if ! command -v "$CXX" >/dev/null 2>&1; then
  echo "run.sh: $CXX not found (apt-get install clang); skipping the fuzz run"
  exit 77   # automake's "skipped"
fi

# What each target links (the .cc files of the libraries in src/local.mk,
# rdma/local.mk and replication/local.mk that it reaches). The protocol
# targets compile cluster routing in but never reach it: ctx.cluster stays
# null. control_msg.cc holds ControlChannel too, hence rdma/.
proto="src/proto_util.cc src/proto_text.cc src/proto_text_store.cc
  src/proto_text_route.cc src/forward_plan.cc src/proto_meta.cc
  src/proto_meta_flags.cc src/proto_bin.cc src/sasl.cc src/auth_file.cc
  src/clock.cc src/store.cc src/execute.cc"
rdma="rdma/cluster_secret.cc rdma/connection.cc rdma/fabric_domain.cc
  rdma/fabric_info.cc rdma/handshake.cc rdma/listener.cc rdma/memory_region.cc
  rdma/peer_identity.cc rdma/progress.cc rdma/region_descriptor.cc
  rdma/status.cc"
cluster="replication/control_msg.cc replication/partition_map.cc $rdma"
sources() {  # sources TARGET
  case $1 in
    proto_*) echo "$proto" ;;
    repl_log_fuzz) echo replication/effect.cc ;;
    control_msg_fuzz) echo "$cluster" ;;
    make_seeds) echo "$cluster replication/effect.cc" ;;
  esac
}
# shellcheck disable=SC2046  # flag lists split on purpose
cflags="-std=c++20 -O1 -g -fno-sanitize-recover=undefined -I$top
  $(pkg-config --cflags libxxhash jemalloc libfabric 2>/dev/null)"
libs="$(pkg-config --libs libsasl2 libxxhash jemalloc libfabric libcrypto) -lpthread"

# Every source once (objects in $out/obj, reused while newer than the
# source and every header it included: the --compile branch at the top),
# then each target: link, run.
mkdir -p "$out/obj"
all=
for t in $targets; do all="$all $(sources "$t")"; done
[ $mode = seeds ] && all="$all $(sources make_seeds)"
# shellcheck disable=SC2086
all=$(printf '%s\n' $all | sort -u)
echo "run.sh: compiling (or reusing) $(echo "$all" | wc -l) sources for: $targets"
# shellcheck disable=SC2086
printf '%s\n' $all | xargs -P "$(nproc 2>/dev/null || echo 2)" -I{} \
  sh "$0" --compile "$out" {} "$CXX" "$cflags"
objs() { for s in $(sources "$1"); do printf '%s ' "$out/obj/$(echo "$s" | tr / _).o"; done; }

if [ $mode = seeds ]; then
  # shellcheck disable=SC2046,SC2086
  "$CXX" $cflags -fsanitize=address,undefined "$top/t/fuzz/make_seeds.cc" \
    $(objs make_seeds) $libs -o "$out/make_seeds"
  mkdir -p "$top/t/fuzz/corpus/repl_log_fuzz" "$top/t/fuzz/corpus/control_msg_fuzz"
  "$out/make_seeds" "$top/t/fuzz/corpus"
  echo "run.sh: seeds written under $top/t/fuzz/corpus"
  exit 0
fi

rc=0
for t in $targets; do
  echo "run.sh: building $t"
  # shellcheck disable=SC2046,SC2086
  "$CXX" $cflags -fsanitize=fuzzer,address,undefined "$top/t/fuzz/$t.cc" \
    $(objs "$t") $libs -o "$out/$t"
  work=$root/ftm-fuzz-corpus/$t
  mkdir -p "$work"
  echo "run.sh: running $t for $secs s (corpus $work, seeds t/fuzz/corpus/$t)"
  # Run every target even if one finds something; fail if any did.
  "$out/$t" -max_total_time="$secs" -max_len=4096 -timeout=10 \
    -print_final_stats=1 "$work" "$top/t/fuzz/corpus/$t" || rc=1
done
exit $rc
