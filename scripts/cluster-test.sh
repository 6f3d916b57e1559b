#!/usr/bin/env bash
# The three-node loopback cluster test of issue 15 (scripts/cluster_test.py): a 3-member etcd
# cluster, a 3-server NATS JetStream cluster and three Signalbox nodes; kill -9 and restart a
# node, an etcd member and a NATS server under ingest and gateway traffic, then check that
# nothing acknowledged was lost or duplicated, gateways kept serving, health checks moved and
# routes converged. Prints a summary (PASS / FAIL / SKIP with the reason); non-zero on FAIL.
#
# Usage: scripts/cluster-test.sh [path/to/signalbox] [--keep]
#   default binary: $SIGNALBOX_BIN, else ${CARGO_TARGET_DIR:-target}/debug/signalbox.
#   CLUSTER_TEST_TIMEOUT (seconds, default 420) bounds the whole run.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${SIGNALBOX_BIN:-${CARGO_TARGET_DIR:-$PWD/target}/debug/signalbox}"
extra=()
for a in "$@"; do
  case "$a" in
    --keep) extra+=(--keep) ;;
    *) bin="$a" ;;
  esac
done
[ -x "$bin" ] || { echo "cluster-test: no signalbox binary at $bin (cargo build -p signalbox)" >&2; exit 2; }
command -v etcd >/dev/null || { echo "cluster-test: etcd missing (scripts/test-deps.sh installs etcd-server)" >&2; exit 2; }
command -v nats-server >/dev/null || [ -x /usr/sbin/nats-server ] \
  || { echo "cluster-test: nats-server missing (scripts/test-deps.sh installs it)" >&2; exit 2; }
export PATH="$PATH:/usr/sbin"
# The driver kills its children on exit (and they die with it: PR_SET_PDEATHSIG); the
# timeout sends TERM first so it can clean up, then KILL.
exec timeout -s TERM -k 15 "${CLUSTER_TEST_TIMEOUT:-420}" python3 scripts/cluster_test.py --bin "$bin" "${extra[@]}"
