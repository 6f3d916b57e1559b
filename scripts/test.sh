#!/usr/bin/env bash
# Runs every test of the workspace (unit, integration against real servers on loopback,
# end-to-end against the built binary). Uses cargo-nextest when present (faster, one
# process per test), else cargo test.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-1}
scripts/test-deps.sh
status=0
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@" || status=$?
else
  cargo test --workspace --no-fail-fast "$@" || status=$?
fi
# The control plane's API tests again, each test's control state on a real etcd of its own
# (crates/api/tests/it/main.rs: SIGNALBOX_TEST_CONTROL).
echo "== API tests with the control state on etcd"
if cargo nextest --version >/dev/null 2>&1; then
  SIGNALBOX_TEST_CONTROL=etcd cargo nextest run -p signalbox-api --test it --no-fail-fast || status=$?
else
  SIGNALBOX_TEST_CONTROL=etcd cargo test -p signalbox-api --test it --no-fail-fast || status=$?
fi
# The gateway's integration tests once more on the other HTTP/1 front end: the run above used
# the default (`[gateway] http1 = "fast"`), this one hyper's server, so every gateway test
# passes on both paths (crates/gateway/tests/it/main.rs reads SIGNALBOX_GATEWAY_HTTP1).
echo "== gateway integration tests on hyper's HTTP/1 server (SIGNALBOX_GATEWAY_HTTP1=hyper)"
if cargo nextest --version >/dev/null 2>&1; then
  SIGNALBOX_GATEWAY_HTTP1=hyper cargo nextest run -p signalbox-gateway --test it --no-fail-fast "$@" || status=$?
else
  SIGNALBOX_GATEWAY_HTTP1=hyper cargo test -p signalbox-gateway --test it --no-fail-fast "$@" || status=$?
fi
# The console's browser test drives headless Chromium against the real binary.
echo "== browser test (ui/tests)"
cargo build -p signalbox
SIGNALBOX_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/signalbox" ui/tests/run.sh || status=$?
# The three-node loopback cluster (etcd x3, NATS JetStream x3, Signalbox x3) under kill -9
# and restarts of each; prints which checks passed, failed or were skipped (and why).
echo "== cluster test (scripts/cluster-test.sh)"
scripts/cluster-test.sh "${CARGO_TARGET_DIR:-$PWD/target}/debug/signalbox" || status=$?
exit $status
