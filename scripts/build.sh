#!/usr/bin/env bash
# Builds ftmemcached out of tree in build/ (configure once, then make).
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
[ -x configure ] && [ configure -nt configure.ac ] || ./autogen.sh
mkdir -p build
cd build
[ -f Makefile ] || ../configure -q
make -j"$(nproc)" --no-print-directory
