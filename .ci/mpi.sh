#!/usr/bin/env bash
# Distributed runs over MPI (feature `mpi`): installs Open MPI and libclang,
# runs the scenarios of tests/mpi.rs under mpirun at 1, 2 and 3 ranks (more
# ranks than cores: --oversubscribe), checks that every run passed and that
# the digests are the same at every rank count, and runs
# `squish compress` under mpirun against the one-process container.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

if command -v apt-get >/dev/null 2>&1; then
  need=()
  for p in openmpi-bin libopenmpi-dev libclang-dev; do
    dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
  done
  if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq || true
    apt-get install -y --no-install-recommends "${need[@]}"
  fi
fi

# Every command selects the whole workspace, the same features and a
# dev-target (test or example), so the dependencies keep one feature set and
# are built once for all three commands.
# (`squish-cli/mpi` makes the command detect mpirun; it turns on `squish/mpi`.)
features="squish/mpi,squish-cli/mpi"
echo "== mpi: clippy with the feature (the targets that have mpi code; the rest
# were linted without it)"
cargo clippy --workspace --features "$features" --lib --bins --test mpi \
  --example distributed -- -D warnings
echo "== mpi: build"
cargo build --release --workspace --features "$features" --bin squish --example distributed
bin=$(cargo test --release --workspace --features "$features" --test mpi --no-run --message-format=json \
  | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -1)
[ -x "$bin" ] || { echo "mpi test binary not found"; exit 1; }

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mpirun_() { timeout 900 mpirun --allow-run-as-root --oversubscribe "$@"; }
export OMPI_MCA_rmaps_base_oversubscribe=1
out=$(mktemp -d)
for np in 1 2 3; do
  echo "== mpi: scenarios at $np ranks"
  mpirun_ -np "$np" "$bin" | tee "$out/np$np.txt"
  sed "s/ np=$np / /" "$out/np$np.txt" > "$out/digests$np.txt"
done
grep -q DISAGREE "$out"/np*.txt && { echo "ranks disagree"; exit 1; }
diff "$out/digests1.txt" "$out/digests2.txt"
diff "$out/digests1.txt" "$out/digests3.txt"
echo "digests identical at 1, 2 and 3 ranks"

echo "== mpi: squish compress under mpirun is byte-identical to one process"
"$bin" --write-model "$out/model.safetensors"
"$bin" --write-model "$out/nan.safetensors" --nan
target/release/squish --threads 1 compress "$out/model.safetensors" --int8 --prune 0.5 --quiet -o "$out/one.squish"
for np in 2 3; do
  mpirun_ -np "$np" target/release/squish --threads 1 compress "$out/model.safetensors" \
    --int8 --prune 0.5 --quiet -o "$out/np$np.squish"
  cmp "$out/one.squish" "$out/np$np.squish"
done
echo "== mpi: a failing rank fails every rank and writes nothing"
if mpirun_ -np 3 target/release/squish --threads 1 compress "$out/nan.safetensors" \
    --int8 --quiet -o "$out/bad.squish" 2> "$out/bad.txt"; then
  echo "expected a failure"; exit 1
fi
cat "$out/bad.txt"
[ ! -e "$out/bad.squish" ]
# (mpirun may stop the other ranks once one exits: at least one reports.)
grep -q 'error: rank .* failed on layer1.weight' "$out/bad.txt" \
  || { echo "expected a RankFailed error naming layer1.weight"; exit 1; }
rm -rf "$out"
echo "mpi OK"
