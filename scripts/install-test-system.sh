#!/usr/bin/env bash
# System packages the tests use: Debian's chromium (/usr/bin/chromium) for the leaderboard browser
# tests (tests/test_leaderboard_browser.py, marker `browser`), which are skipped without it.
# Installs as root with apt-get; the browser is driven by the python playwright package with
# executable_path=/usr/bin/chromium, so no browser download is ever needed.
set -euo pipefail
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "chromium is not installed and this is not root with apt-get: the browser tests will be" \
      "skipped (install Debian's chromium as root: apt-get install chromium)" >&2
    exit 0
  fi
fi
/usr/bin/chromium --version || echo "warning: /usr/bin/chromium is installed but does not start" >&2
