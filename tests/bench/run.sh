#!/usr/bin/env bash
# Cairn benchmarks, side by side with the device, nbdkit and Ceph RBD.
# Usage: tests/bench/run.sh [--runtime SECONDS] [--size MIB] [--targets a,b,...] [--no-rebuild]
# Installs what it needs (Debian packages), builds Cairn (RelWithDebInfo, no
# sanitizers) in build-bench/, and writes results.md, results.json and
# chart.png to tests/bench/results/<date>/ (not committed).
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
"$top/deploy/deps.sh" bench
build=$top/build-bench
cmake -S "$top" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBUILD_TESTING=OFF >/dev/null
cmake --build "$build" -j"$(nproc)" >/dev/null
out=$top/tests/bench/results/$(date +%Y%m%d-%H%M%S)
# scratch files live on the same disk as the results (the disk under test)
exec /usr/bin/python3 "$top/tests/bench/bench.py" --build "$build" --out "$out" "$@"
