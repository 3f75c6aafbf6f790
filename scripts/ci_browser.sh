#!/usr/bin/env bash
# Debian's Chromium for the browser test of `results site` (tests/test_results_site.py drives it through
# playwright's Python package; playwright's own browser download needs the network, this does not).
# Idempotent: installs only when /usr/bin/chromium is missing. Without apt-get (not Debian or Ubuntu) it says
# so and leaves the test to skip; a failing install fails.
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
    echo "chromium: $(/usr/bin/chromium --version 2>/dev/null || echo present) at /usr/bin/chromium"
    exit 0
fi
if ! command -v apt-get >/dev/null; then
    echo "no apt-get here: the browser test of results site will be skipped (install chromium at /usr/bin/chromium)"
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium
/usr/bin/chromium --version
