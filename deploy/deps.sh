#!/usr/bin/env bash
# Install the Debian 12 packages Cairn needs to build, run and test.
# Usage: deploy/deps.sh [build|run|test|bench]
#   (default: test; bench is test plus Ceph and matplotlib for tests/bench)
set -euo pipefail
what=${1:-test}
build_pkgs=(build-essential cmake pkg-config libuv1-dev liburing-dev libprotobuf-c-dev
            protobuf-c-compiler libraft-dev liblz4-dev libmicrohttpd-dev libjansson-dev
            libgnutls28-dev libsodium-dev)
run_pkgs=(libnbd-bin nbd-client libmicrohttpd12 libjansson4 libgnutls30 libsodium23)
test_pkgs=(clang-format clang libclang-rt-14-dev python3-libnbd python3-pytest fio qemu-utils fuse3 e2fsprogs iproute2 util-linux nbdkit
           procps psmisc qemu-system-x86 busybox-static cpio kmod xz-utils gnutls-bin
           prometheus chromium chromium-driver python3-selenium python3-jsonschema python3-yaml python3-nacl python3-cryptography)
bench_pkgs=(ceph-mon ceph-osd ceph-common python3-matplotlib valgrind)
pkgs=("${build_pkgs[@]}" "${run_pkgs[@]}")
case $what in
  test) pkgs+=("${test_pkgs[@]}") ;;
  bench) pkgs+=("${test_pkgs[@]}" "${bench_pkgs[@]}") ;;
esac
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
