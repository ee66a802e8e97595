#!/usr/bin/env bash
# Installs the Debian 12 packages ftmemcached needs. Run as root.
#   scripts/deps.sh build   - to build and run the server
#   scripts/deps.sh test    - also what the test suites and benchmarks use
# Skips apt entirely when everything is already installed.
set -euo pipefail
build_pkgs=(g++ make autoconf automake libtool pkg-config
            libevent-dev libjemalloc-dev libxxhash-dev libfabric-dev libfabric-bin libssl-dev
            libgtest-dev libbenchmark-dev libsasl2-dev libsasl2-modules
            netcat-openbsd)
test_pkgs=(python3 python3-pytest python3-pymemcache python3-pylibmc
           memcached libmemcached-tools iproute2 nftables man-db clang)
pkgs=("${build_pkgs[@]}")
[ "${1:-build}" = test ] && pkgs+=("${test_pkgs[@]}")

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "deps.sh: missing packages (${missing[*]}); run as root to install them" >&2
  exit 1
fi
echo "deps.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
