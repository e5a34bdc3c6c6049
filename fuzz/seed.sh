#!/usr/bin/env bash
# Seeds the fuzz corpus with real containers: the committed model compressed
# by the committed recipe and by quick flags.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p fuzz/corpus/container
# SQUISH_BIN: a squish command already built (CI passes the test build's).
if [ -n "${SQUISH_BIN:-}" ]; then squish() { "$SQUISH_BIN" "$@"; }
else squish() { cargo run --release --quiet --bin squish -- "$@"; }
fi
squish compress tests/data/silero_vad_16k.safetensors \
  --recipe tests/data/silero_vad.toml -o fuzz/corpus/container/vad-recipe.squish --quiet >/dev/null
squish compress tests/data/silero_vad_16k.safetensors \
  --prune 0.9 --int4 -o fuzz/corpus/container/vad-prune-int4.squish --quiet >/dev/null
