#!/usr/bin/env bash
# Runs the security and abuse suite alone (CI runs it with every other test through
# scripts/test.sh): the probes of every port, the decoders under bombs and mutations, access
# control, smuggling and slowloris, kill -9 durability and the role matrix. docs/security.md
# says what each limit defends against.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-1}
filter='test(/security::|abuse::|params::|faults::|ingest::tests|access::|kill|durab|refus|smuggl|slow/)'
exec cargo nextest run --workspace --no-fail-fast -E "$filter" "$@"
