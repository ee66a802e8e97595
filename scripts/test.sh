#!/usr/bin/env bash
# README's second command: installs what is needed, builds, and runs every
# test (`make check`: GoogleTest unit tests and the pytest suites), then
# prints each suite's log and one closing line "N passed, N failed".
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
bash "$top/scripts/deps.sh" test || exit 1
bash "$top/scripts/build.sh" || exit 1
cd "$top/build"
status=0
make -j"$(nproc)" --no-print-directory check >/dev/null 2>&1 || status=$?

passed=0; failed=0
for trs in $(find t -name '*.trs' | sort); do
  log=${trs%.trs}.log
  echo "=================== ${log}"
  tail -n 60 "$log"
  # GoogleTest: "[  PASSED  ] N tests." / "[  FAILED  ] N tests,"
  p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$log" | tail -n1)
  f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$log" | tail -n1)
  # pytest: "=== 12 passed, 1 failed, 2 skipped in 3.2s ==="
  last=$(grep -E '[0-9]+ (passed|failed)' "$log" | grep -E ' in [0-9.]+s' | tail -n1 || true)
  if [ -n "$last" ]; then
    p=$(grep -oE '[0-9]+ passed' <<<"$last" | cut -d' ' -f1)
    f=$(( $(grep -oE '[0-9]+ failed' <<<"$last" | cut -d' ' -f1 || echo 0) + $(grep -oE '[0-9]+ error' <<<"$last" | cut -d' ' -f1 || echo 0) ))
  fi
  # a suite that crashed before reporting counts as one failure
  if grep -q '^:test-result: FAIL' "$trs" && [ "${f:-0}" = 0 ]; then f=1; fi
  passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0}))
done
[ "$status" = 0 ] || [ "$failed" != 0 ] || failed=1
echo "$passed passed, $failed failed"
exit "$status"
