#!/usr/bin/env bash
# A short run of every fuzz target over its seeds (CI's `make fuzz-smoke`): installs
# cargo-fuzz when missing, builds all targets once (unoptimised, so with debug assertions
# and overflow checks, with AddressSanitizer as cargo-fuzz's default: a cold build takes
# half the CPU time of an optimised one), then runs each for FUZZ_SMOKE_SECONDS (default
# 15) from a fresh corpus seeded with fuzz/seeds/<target>/ (and measured-boot's firmware
# logs for firmware_log). Any crash, leak or failed assertion fails the step; the input is left in
# fuzz/artifacts/<target>/. The long campaigns are in fuzz/README.md.
# FUZZ_TARGET_DIR overrides cargo-fuzz's build directory (fuzz/target).
set -euo pipefail
cd "$(dirname "$0")"
seconds=${FUZZ_SMOKE_SECONDS:-15}
build=(--dev)
[ -n "${FUZZ_TARGET_DIR:-}" ] && build+=(--target-dir "$FUZZ_TARGET_DIR")
export RUSTC_BOOTSTRAP=1 TSS2_LOG=${TSS2_LOG:-all+NONE}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
start=$SECONDS
cargo fuzz build "${build[@]}"
echo "fuzz-smoke: build: $((SECONDS - start)) s"
for target in $(cargo fuzz list); do
  corpus=$(mktemp -d)
  seeds=()
  [ -d "seeds/$target" ] && seeds+=("seeds/$target")
  [ "$target" = firmware_log ] && seeds+=(../measured-boot/testdata/eventlogs)
  [ -d "regressions/$target" ] && seeds+=("regressions/$target")
  t=$SECONDS
  if ! cargo fuzz run "${build[@]}" "$target" "$corpus" "${seeds[@]}" -- \
      -max_total_time="$seconds" -print_final_stats=1 >"$corpus.log" 2>&1; then
    tail -n 40 "$corpus.log"
    echo "fuzz-smoke: $target FAILED (input in fuzz/artifacts/$target/)"
    exit 1
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$corpus.log" | tail -n 1)
  echo "fuzz-smoke: $target: ${runs:-?} executions in $((SECONDS - t)) s, no crash"
  rm -rf "$corpus" "$corpus.log"
done
echo "fuzz-smoke: all targets: $((SECONDS - start)) s"
