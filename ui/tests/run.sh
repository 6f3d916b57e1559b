#!/usr/bin/env bash
# Runs the console's browser test: installs playwright-core (from package-lock.json) and
# Debian's Chromium when missing, then `node console.test.mjs`. SIGNALBOX_BIN names the
# binary to test (default ../../target/debug/signalbox, relative to this folder).
set -euo pipefail
cd "$(dirname "$0")"

if [ ! -d node_modules/playwright-core ]; then
  npm ci --no-audit --no-fund
fi

if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y chromium
  else
    echo "Chromium is missing at /usr/bin/chromium; install it with: apt-get install -y chromium" >&2
    exit 1
  fi
fi

set +e
node console.test.mjs
status=$?
exit $status
