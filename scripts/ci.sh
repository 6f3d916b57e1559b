#!/usr/bin/env bash
# What CI runs, in order; run it locally before pushing: scripts/ci.sh
# (installs only what is missing, so it is cheap on a set-up machine)
exec "$(dirname "$0")/../.ci/run"
