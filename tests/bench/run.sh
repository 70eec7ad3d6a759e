#!/usr/bin/env bash
# Cairn benchmarks, side by side with the device, nbdkit and Ceph RBD.
# Usage: tests/bench/run.sh [--runtime SECONDS] [--size MIB] [--targets a,b,...] [--no-rebuild]
#                           [--baseline GIT-REF]
# Installs what it needs (Debian packages), builds Cairn (RelWithDebInfo, no
# sanitizers) in build-bench/, and writes results.md, results.json and
# chart.png to tests/bench/results/<date>/ (not committed).
# --baseline REF also builds commit REF (in build-bench-base/) and adds the
# targets cairn-base and cairn-tcp-base, so two versions are measured in one
# run (name them in --targets, e.g. cairn-base,cairn,cairn-tcp-base,cairn-tcp).
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
"$top/deploy/deps.sh" bench
build=$top/build-bench
cmake -S "$top" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBUILD_TESTING=OFF >/dev/null
cmake --build "$build" -j"$(nproc)" >/dev/null
args=()
while [ $# -gt 0 ]; do
  if [ "$1" = --baseline ]; then
    [ $# -ge 2 ] || { echo "--baseline needs a git ref" >&2; exit 2; }
    base=$top/build-bench-base
    rev=$(git -C "$top" rev-parse --verify "$2^{commit}")
    if [ "$(cat "$base/rev" 2>/dev/null)" != "$rev" ]; then
      rm -rf "$base"
      mkdir -p "$base"
      git -C "$top" archive "$rev" | tar -x -C "$base" --one-top-level=src
      cmake -S "$base/src" -B "$base/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBUILD_TESTING=OFF >/dev/null
      cmake --build "$base/build" -j"$(nproc)" >/dev/null
      echo "$rev" > "$base/rev"
    fi
    args+=(--baseline-build "$base/build")
    shift 2
  else
    args+=("$1")
    shift
  fi
done
out=$top/tests/bench/results/$(date +%Y%m%d-%H%M%S)
# scratch files live on the same disk as the results (the disk under test)
exec /usr/bin/python3 "$top/tests/bench/bench.py" --build "$build" --out "$out" "${args[@]}"
