#!/usr/bin/env bash
# Runs every test of the workspace (unit, integration against real servers on loopback,
# end-to-end against the built binary). Uses cargo-nextest when present (faster, one
# process per test), else cargo test.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-1}
if cargo nextest --version >/dev/null 2>&1; then
  exec cargo nextest run --workspace --no-fail-fast "$@"
else
  exec cargo test --workspace --no-fail-fast "$@"
fi
