#!/usr/bin/env bash
# Build the libFuzzer targets (clang, in build-fuzz) and run each for SECONDS
# (default 15) from its seed corpus, one after another. Fails if any target
# finds a crash, a leak or a sanitizer report; the input that did it is
# left in build-fuzz/artifacts/. New inputs found go to build-fuzz/corpus/,
# not to the committed corpus.
# Usage: tests/fuzz/run.sh [SECONDS] [TARGET...]
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
secs=${1:-15}
shift || true
build=${CAIRN_FUZZ_BUILD:-$top/build-fuzz}
CC=clang cmake -S "$top" -B "$build" -DCAIRN_FUZZ=ON -DBUILD_TESTING=OFF \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j"$(nproc)" >/dev/null
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(fuzz_frame fuzz_mdm_msgs fuzz_mdm_sessions fuzz_sds_msgs fuzz_sdc_msgs fuzz_nbd fuzz_nbd_conn
           fuzz_store fuzz_saved_map fuzz_raft fuzz_auth)
fi
mkdir -p "$build/artifacts"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
failed=()
for t in "${targets[@]}"; do
  work="$build/corpus/$t"
  mkdir -p "$work"
  echo "fuzz: $t for ${secs}s"
  if ! "$build/tests/fuzz/$t" -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 \
      -print_final_stats=1 -artifact_prefix="$build/artifacts/$t-" \
      "$work" "$top/tests/fuzz/corpus/$t" >"$build/$t.log" 2>&1; then
    echo "fuzz: $t FAILED (see $build/$t.log)"
    tail -n 40 "$build/$t.log"
    failed+=("$t")
  else
    grep -E "^#[0-9]+.*(DONE|cov:)" "$build/$t.log" | tail -n 1 || true
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: failed: ${failed[*]}"
  exit 1
fi
