#!/usr/bin/env bash
# The browser tier: report.html from the demo suite in a real headless Chromium (tests/browser.rs:
# no console messages, one tooltip per model on each chart, the filter, a screenshot that is not
# blank). Installs Debian's `chromium` when it is missing (apt-get; needs root). When it cannot,
# it prints "browser tier SKIPPED: <why>" and exits 0, or fails under CI=true.
# Uses ROBUST_EVAL_BIN as the binary under test when set.
set -euo pipefail
cd "$(dirname "$0")/.."

skip() {
  echo "browser tier SKIPPED: $1"
  if [ "${CI:-}" = "true" ]; then
    echo "browser tier: CI=true, so a skip is a failure" >&2
    exit 1
  fi
  exit 0
}

if ! command -v chromium >/dev/null 2>&1; then
  command -v apt-get >/dev/null 2>&1 || skip "no chromium and no apt-get to install it"
  [ "$(id -u)" = 0 ] || skip "no chromium, and installing it needs root"
  echo "test_browser: installing Debian's chromium (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null || skip "apt-get update failed"
  apt-get install -y -qq -o DPkg::Lock::Timeout=300 chromium >/dev/null \
    || skip "apt-get install chromium failed"
fi

ROBUST_EVAL_REQUIRE_BROWSER=1 cargo test --release --test browser -- --nocapture
