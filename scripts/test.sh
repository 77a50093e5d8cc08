#!/usr/bin/env bash
# The whole visavis test suite, as the README gives it. On a fresh Debian machine it first
# installs what it needs: Chromium (Debian's package) and the npm dev dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

if [ ! -x /usr/bin/chromium ]; then
  step "installing Debian's chromium"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium
fi
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  step "npm ci"
  npm ci --no-audit --no-fund
fi

step "cargo fmt --check"
cargo fmt --all --check
step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
step "cargo test (core, protocol, server with real WebSocket clients)"
cargo test --workspace --locked
step "tsc --noEmit over web/ (checkJs)"
npx tsc -p tsconfig.json
step "browser tests (Playwright + Debian Chromium)"
npx playwright test
step "all tests passed"
