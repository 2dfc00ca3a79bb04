#!/usr/bin/env bash
# Lint tier: the code is formatted as rustfmt formats it, clippy finds nothing with warnings
# denied, and the library's docs build without warnings. Installs the rustup components when
# they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
for component in rustfmt clippy; do
  if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
    echo "lint: installing the $component component with rustup"
    rustup component add "$component"
  fi
done
cargo fmt --all -- --check
cargo clippy --release --all-targets -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --lib
echo "lint tier: passed"
