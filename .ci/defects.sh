#!/usr/bin/env bash
# Fuzzing (issue #20): fetch cargo-fuzz and libfuzzer-sys (stable toolchain
# with RUSTC_BOOTSTRAP), seed the corpora, then fuzz every target for a
# fixed time: container 12 s, the others 9 s each (39 s; CI's budget is
# 30 min, and the builds before it take most of it). `--dev` builds with
# fuzz/Cargo.toml's dev profile (dependencies unoptimized, squish and the
# parsers at opt-level 1, debug assertions and overflow checks on): the
# instrumented build of squish and its dependencies is most of this step's
# time, and `-O` took twice as long to build.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

if ! command -v cargo-fuzz >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
# Fetch libfuzzer-sys and the other fuzz dependencies up front, so a network
# hiccup fails here, clearly, and not in the middle of a run.
(cd fuzz && cargo fetch)
./fuzz/seed.sh
mkdir -p fuzz/corpus/safetensors fuzz/corpus/recipe fuzz/corpus/sharded
cp tests/data/silero_vad_16k.safetensors fuzz/corpus/safetensors/
cp tests/data/*.toml fuzz/corpus/recipe/

fuzz() {
  local target=$1 secs=$2
  echo "-- fuzz $target (${secs} s)"
  (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run --dev --sanitizer none "$target" "corpus/$target" \
    -- -max_total_time="$secs" -rss_limit_mb=2048)
}
fuzz container 12
fuzz safetensors 9
fuzz recipe 9
fuzz sharded 9
