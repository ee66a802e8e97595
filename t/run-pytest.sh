#!/bin/sh
# automake TESTS entry: run the pytest suites against the freshly built
# ftmemcached. `make check` runs this from the build directory (which may be
# outside the source tree) with $srcdir set; run by hand, it works from the
# build directory too (srcdir defaults to this script's directory's parent).
set -e
builddir=$(pwd)
if [ -z "$srcdir" ]; then
    srcdir=$(cd "$(dirname "$0")/.." && pwd)
fi
srcdir=$(cd "$srcdir" && pwd)
FTM_BUILDDIR=${FTM_BUILDDIR:-$builddir}
export FTM_BUILDDIR
# the source tree may be read-only (make distcheck)
PYTHONDONTWRITEBYTECODE=1
export PYTHONDONTWRITEBYTECODE
if [ -z "$FTM_SERVER" ] && [ ! -x "$FTM_BUILDDIR/ftmemcached" ]; then
    echo "run-pytest.sh: $FTM_BUILDDIR/ftmemcached not built" >&2
    exit 99   # automake: hard error
fi
cd "$srcdir"
exec /usr/bin/python3 -m pytest "$srcdir/t" -q -p no:cacheprovider \
    -o addopts="" -o console_output_style=classic "$@"
