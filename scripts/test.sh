#!/usr/bin/env bash
# README's second command: installs what is needed, builds, and runs every
# test, then prints each suite's log and one closing line "N passed, N failed".
#   1. `make check` in build/: GoogleTest unit tests, the pytest suites, the
#      bounded fuzz runs.
#   2. The unit tests again in build-asan/, built with
#      --enable-sanitizers=address,undefined (any report fails the test),
#      and the standalone protocol pytest suites against that build's
#      ftmemcached (a server killed by a report fails its test).
#      FTM_SKIP_SANITIZERS=1 skips this stage.
#   3. The store and replication unit tests in build-tsan/, built with
#      --enable-sanitizers=thread (any report fails the test; the reasoned
#      suppressions are in t/sanitizers/tsan.supp). FTM_SKIP_TSAN=1 skips it;
#      FTM_TSAN_CLUSTER=1 adds the in-process cluster tests (see below).
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
bash "$top/scripts/deps.sh" test || exit 1
bash "$top/scripts/build.sh" || exit 1
jobs=$(nproc)

status=0
cd "$top/build"
make -j"$jobs" --no-print-directory check >/dev/null 2>&1 || status=$?

run_logged() {  # run_logged NAME CMD...: NAME.log and NAME.trs as automake writes them
  local name=$1 r; shift
  if "$@" >"$name.log" 2>&1; then r=PASS; else r=FAIL; status=1; fi
  echo ":test-result: $r" >"$name.trs"
}

# Unit tests whose ASan+UBSan builds run in stage 2, and the protocol suites
# (one server per test, no cluster) run against its ftmemcached: about
# 2 minutes on 2 cores, most of it the suites' own expiry sleeps.
sanitized=(t/unit_store t/unit_proto t/unit_bin t/unit_rdma t/unit_replication)
protocol_suites=(test_getset test_cas test_incrdecr test_noreply test_expire
  test_flush test_touch_gat test_meta_get test_meta_set test_meta_delete
  test_meta_arith test_errors test_stats test_pipeline test_binary
  test_sasl_auth test_udp test_concurrency test_differential)
if [ "${FTM_SKIP_SANITIZERS:-0}" != 1 ]; then
  mkdir -p "$top/build-asan"
  cd "$top/build-asan"
  [ -f Makefile ] || ../configure -q --enable-sanitizers=address,undefined || exit 1
  if make -j"$jobs" --no-print-directory "${sanitized[@]}" ftmemcached >build.log 2>&1; then
    for t in "${sanitized[@]}"; do
      run_logged "$t" env ASAN_OPTIONS=detect_leaks=1 "./$t"
    done
    run_logged t/protocol-pytest env FTM_BUILDDIR="$top/build-asan" \
      PYTHONDONTWRITEBYTECODE=1 /usr/bin/python3 -m pytest -q -p no:cacheprovider \
      -o addopts="" $(printf "$top/t/%s.py " "${protocol_suites[@]}")
  else
    echo "test.sh: the sanitizer build failed:"; tail -n 30 build.log
    status=1
  fi
fi

# Stage 3: ThreadSanitizer. MALLOC_CONF=narenas:1: jemalloc's fork handler
# locks every mutex of every arena, more than the 64 TSan's deadlock
# detector tracks per thread (t/unit_replication forks its secondaries);
# for the same reason a TSan build keeps items in that one arena too
# (src/store.cc, item_mallocx_flags).
# The filtered-out store tests are single-threaded bulk loops (nothing for
# TSan to check) that take minutes under it. FTM_TSAN_CLUSTER=1 adds the
# tests that run whole in-process clusters with heartbeats and a failure
# detector: they give no TSan report, but under TSan's slowdown on a busy
# 2-core host heartbeats arrive later than the detectors' 100 ms floor, so
# healthy nodes get declared failed and the tests fail on timing.
tsan_tests=(t/unit_store t/unit_replication t/unit_snapshot)
[ "${FTM_TSAN_CLUSTER:-0}" = 1 ] && tsan_tests+=(t/unit_replication_manager t/unit_cluster)
tsan_filter=-Store.EvictionKeepsMemoryUnderLimit:Store.EvictionWithoutCasPrefersOlderItems:Store.ManyKeysStayFindable
if [ "${FTM_SKIP_TSAN:-0}" != 1 ]; then
  mkdir -p "$top/build-tsan"
  cd "$top/build-tsan"
  [ -f Makefile ] || ../configure -q --enable-sanitizers=thread || exit 1
  if make -j"$jobs" --no-print-directory "${tsan_tests[@]}" >build.log 2>&1; then
    for t in "${tsan_tests[@]}"; do
      run_logged "$t" env MALLOC_CONF=narenas:1 GTEST_FILTER="$tsan_filter" \
        TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=$top/t/sanitizers/tsan.supp" \
        "./$t"
    done
  else
    echo "test.sh: the ThreadSanitizer build failed:"; tail -n 30 build.log
    status=1
  fi
fi

passed=0; failed=0
summarize() {  # summarize DIR LABEL: print each suite's log, add up its counts
  local dir=$1 label=$2 trs log p f last
  for trs in $(cd "$dir" && find t -name '*.trs' | sort); do
    log=$dir/${trs%.trs}.log
    echo "=================== ${label}${trs%.trs}"
    tail -n 60 "$log"
    # GoogleTest: "[  PASSED  ] N tests." / "[  FAILED  ] N tests,"
    p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$log" | tail -n1)
    f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$log" | tail -n1)
    # pytest: "=== 12 passed, 1 failed, 2 skipped in 3.2s ==="
    last=$(grep -E '[0-9]+ (passed|failed)' "$log" | grep -E ' in [0-9.]+s' | tail -n1 || true)
    if [ -n "$last" ]; then
      p=$(grep -oE '[0-9]+ passed' <<<"$last" | cut -d' ' -f1)
      f=$(( $(grep -oE '[0-9]+ failed' <<<"$last" | cut -d' ' -f1 || echo 0) + \
            $(grep -oE '[0-9]+ error' <<<"$last" | cut -d' ' -f1 || echo 0) ))
    fi
    # a suite that crashed before reporting counts as one failure
    if grep -q '^:test-result: FAIL' "$dir/$trs" && [ "${f:-0}" = 0 ]; then f=1; fi
    passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0}))
  done
}
summarize "$top/build" ""
[ -d "$top/build-asan/t" ] && summarize "$top/build-asan" "asan+ubsan: "
[ -d "$top/build-tsan/t" ] && summarize "$top/build-tsan" "tsan: "
[ "$status" = 0 ] || [ "$failed" != 0 ] || failed=1
echo "$passed passed, $failed failed"
exit "$status"
