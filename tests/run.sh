#!/usr/bin/env bash
# Check formatting, build Cairn with ASan+UBSan and run every test through ctest.
# Usage: tests/run.sh [ctest args...]
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
"$top/deploy/deps.sh" test
"$top/tests/check_format.sh"
build=${CAIRN_TEST_BUILD:-$top/build-test}
# the daemons once more without sanitizers: the overload test measures their
# memory as it is in production
plain=$build-plain
cmake -S "$top" -B "$plain" -DCAIRN_WERROR=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBUILD_TESTING=OFF >/dev/null
cmake --build "$plain" -j"$(nproc)"
cmake -S "$top" -B "$build" -DCAIRN_ASAN=ON -DCAIRN_WERROR=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCAIRN_PLAIN_BUILD="$plain" >/dev/null
cmake --build "$build" -j"$(nproc)"
# every parser that reads a peer's or a disk's bytes, under libFuzzer (15 s
# per target, about 2.5 minutes with its build; docs/fuzzing.md)
"$top/tests/fuzz/run.sh"
cd "$build"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$top/tests/lsan.supp}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
ctest --output-on-failure --timeout 900 "$@"
