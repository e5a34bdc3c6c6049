#!/usr/bin/env bash
# API docs build without a warning (broken or private intra-doc links, bad
# doc syntax): the library as a dependency reads its docs first (issue 20).
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== rustdoc, warnings denied"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --lib
