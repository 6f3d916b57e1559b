#!/usr/bin/env bash
# Runs the console's browser tests: installs playwright-core (from package-lock.json) and
# Debian's Chromium when missing, then `node console.test.mjs` and `node demo.test.mjs` (the
# troubleshooting loop on `signalbox demo`); both run, and the script fails if either fails. SIGNALBOX_BIN names the
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
console_status=$?
node demo.test.mjs
demo_status=$?
echo "console.test.mjs: exit $console_status; demo.test.mjs: exit $demo_status"
[ "$console_status" = 0 ] && [ "$demo_status" = 0 ]
