#!/usr/bin/env bash
# README's second command: installs what is needed, builds, and runs every
# test, then prints each suite's log and one closing line "N passed, N failed".
#   1. `make check` in build/: GoogleTest unit tests, the pytest suites, the
#      bounded fuzz runs.
#   2. The unit tests again in build-asan/, built with
#      --enable-sanitizers=address,undefined (any report fails the test).
#      FTM_SKIP_SANITIZERS=1 skips this stage.
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
bash "$top/scripts/deps.sh" test || exit 1
bash "$top/scripts/build.sh" || exit 1
jobs=$(nproc)

status=0
cd "$top/build"
make -j"$jobs" --no-print-directory check >/dev/null 2>&1 || status=$?

# Unit tests whose ASan+UBSan builds run in stage 2.
sanitized=(t/unit_store t/unit_proto t/unit_bin t/unit_rdma t/unit_replication)
if [ "${FTM_SKIP_SANITIZERS:-0}" != 1 ]; then
  mkdir -p "$top/build-asan"
  cd "$top/build-asan"
  [ -f Makefile ] || ../configure -q --enable-sanitizers=address,undefined || exit 1
  if make -j"$jobs" --no-print-directory "${sanitized[@]}" >build.log 2>&1; then
    for t in "${sanitized[@]}"; do  # logs and .trs files as automake writes them
      if ASAN_OPTIONS=detect_leaks=1 "./$t" >"$t.log" 2>&1; then r=PASS; else r=FAIL; status=1; fi
      echo ":test-result: $r" >"$t.trs"
    done
  else
    echo "test.sh: the sanitizer build failed:"; tail -n 30 build.log
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
[ "$status" = 0 ] || [ "$failed" != 0 ] || failed=1
echo "$passed passed, $failed failed"
exit "$status"
