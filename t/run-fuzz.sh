#!/bin/sh
# make check entry: a short bounded libFuzzer run of each fuzz target
# (FTM_FUZZ_SECONDS, default 20 s each). Longer runs: t/fuzz/run.sh SECONDS.
# Exits 77 (skipped) when clang is not installed.
set -eu
top=${srcdir:-$(dirname "$0")/..}
FTM_FUZZ_SECONDS=${FTM_FUZZ_SECONDS:-20} exec sh "$top/t/fuzz/run.sh"
