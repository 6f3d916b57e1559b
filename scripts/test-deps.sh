#!/usr/bin/env bash
# Installs the system packages the tests drive when they are missing: dnsmasq (the real DNS
# server of the DNS-discovery tests), Chromium and Node.js (the console's browser test),
# curl. As root it installs them with apt-get; otherwise it names what to install and fails.
set -euo pipefail
missing=()
[ -x /usr/sbin/dnsmasq ] || [ -x /usr/bin/dnsmasq ] || missing+=(dnsmasq-base)
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v node >/dev/null && command -v npm >/dev/null || missing+=(nodejs npm)
command -v curl >/dev/null || missing+=(curl)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "== installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
else
  echo "the tests need: ${missing[*]} (as root: apt-get install -y ${missing[*]})" >&2
  exit 1
fi
