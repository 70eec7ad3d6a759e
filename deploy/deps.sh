#!/usr/bin/env bash
# Install the Debian 12 packages Cairn needs to build, run and test.
# Usage: deploy/deps.sh [build|run|test|bench]
#   (default: test; bench is test plus Ceph and matplotlib for tests/bench)
set -euo pipefail
what=${1:-test}
build_pkgs=(build-essential cmake pkg-config libuv1-dev liburing-dev libprotobuf-c-dev
            protobuf-c-compiler libraft-dev liblz4-dev libmicrohttpd-dev libjansson-dev
            libgnutls28-dev libsodium-dev libsystemd-dev help2man)
run_pkgs=(libnbd-bin nbd-client libmicrohttpd12 libjansson4 libgnutls30 libsodium23 libsystemd0)
test_pkgs=(clang-format clang libclang-rt-14-dev python3-libnbd python3-pytest fio qemu-utils fuse3 python3-fusepy e2fsprogs iproute2 util-linux nbdkit
           procps psmisc qemu-system-x86 busybox-static cpio kmod xz-utils gnutls-bin
           prometheus chromium chromium-driver python3-selenium python3-jsonschema python3-yaml python3-nacl python3-cryptography
           lintian ansible-core systemd systemd-container mmdebstrap zstd openssh-client)
bench_pkgs=(ceph-mon ceph-osd ceph-common python3-matplotlib valgrind)
pkgs=("${build_pkgs[@]}" "${run_pkgs[@]}")
case $what in
  test) pkgs+=("${test_pkgs[@]}") ;;
  bench) pkgs+=("${test_pkgs[@]}" "${bench_pkgs[@]}") ;;
esac
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo

# libraft: Debian 12's own 0.15 has bugs that can lose a committed entry once
# the MDM runs as more than one voter (docs/raft.md). The 0.22.1 that Debian
# 13 ships (cowsql/raft) fixes them, and bookworm-backports carries it for
# Debian 12: only libraft-dev and libraft0 are taken from there.
raft_version() { dpkg-query -W -f='${Version}' libraft-dev 2>/dev/null || echo 0; }
if ! dpkg --compare-versions "$(raft_version)" ge 0.22.1; then
  . /etc/os-release
  raft_pkgs=(libraft-dev libraft0)
  if [ "${VERSION_CODENAME:-}" = bookworm ]; then
    list=/etc/apt/sources.list.d/cairn-bookworm-backports.list
    if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
      echo "deps: adding Debian's bookworm-backports to $list (for libraft 0.22.1 only)"
      echo "deb http://deb.debian.org/debian bookworm-backports main" | $SUDO tee "$list" >/dev/null
    fi
    raft_pkgs=(libraft-dev/bookworm-backports libraft0/bookworm-backports)
  fi
  echo "deps: installing libraft 0.22.1"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    "${raft_pkgs[@]}" >/dev/null
  if ! dpkg --compare-versions "$(raft_version)" ge 0.22.1; then
    echo "deps: need libraft-dev 0.22.1 or newer; ${PRETTY_NAME:-this system} installed $(raft_version)" >&2
    exit 1
  fi
fi

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
