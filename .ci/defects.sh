#!/usr/bin/env bash
# Fuzzing (issue #20): fetch cargo-fuzz and libfuzzer-sys (stable toolchain
# with RUSTC_BOOTSTRAP), seed the corpora, then fuzz every target for a
# fixed time: container 15 s, the others 10 s each (45 s; CI's
# budget is 30 min). 16 codegen units instead of cargo-fuzz's 1: the
# instrumented release build of squish and its dependencies is most of this
# step's time, and a smoke run does not need the last few percent of speed.
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
  (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer none -O --codegen-units 16 "$target" "corpus/$target" \
    -- -max_total_time="$secs" -rss_limit_mb=2048)
}
fuzz container 15
fuzz safetensors 10
fuzz recipe 10
fuzz sharded 10
