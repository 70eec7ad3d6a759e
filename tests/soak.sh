#!/usr/bin/env bash
# Randomized fault soak against a verifying load; see tests/soak.py.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
"$top/deploy/deps.sh" test
build=${CAIRN_BUILD:-$top/build}
cmake -S "$top" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j"$(nproc)" >/dev/null
CAIRN_BUILD=$build exec /usr/bin/python3 "$top/tests/soak.py" "$@"
