#!/usr/bin/env bash
# The whole visavis test suite, as the README gives it. On a fresh Debian machine it first
# installs what it needs: Debian's chromium, coturn and openssl, the npm dev dependencies, and
# schemathesis (PyPI, in .venv-test/).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

# Debian packages: the browser for the web tests, coturn (turnutils_uclient as a real TURN
# client, turnserver for interop), openssl for a test certificate, iproute2 for the network
# namespaces in which browsers of the network tests live (those tests need root), pebble,
# nginx, nftables, iptables and curl (the connectivity lab, e2e/lab/), redis-server and
# haproxy (the cluster tests), and python3-venv for
# schemathesis.
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v turnutils_uclient >/dev/null && command -v turnserver >/dev/null || missing+=(coturn)
command -v openssl >/dev/null || missing+=(openssl)
# The SFU's DTLS and SRTP (str0m's OpenSSL backend) build against the system OpenSSL.
command -v pkg-config >/dev/null || missing+=(pkg-config)
pkg-config --exists openssl 2>/dev/null || missing+=(libssl-dev)
command -v ip >/dev/null || missing+=(iproute2) # network namespaces for the network-drop test
command -v pebble >/dev/null || missing+=(pebble)   # a real ACME server for certificate issuance
command -v nginx >/dev/null || missing+=(nginx)     # the reverse proxy of docs/deploy.md, in front
command -v nft >/dev/null || missing+=(nftables)    # a firewall that lets only TCP 443 out; the lab's NATs
command -v iptables >/dev/null || missing+=(iptables) # the lab's delay: forwarded packets to an NFQUEUE
command -v curl >/dev/null || missing+=(curl)       # the lab's health check inside its namespace
command -v python3 >/dev/null || missing+=(python3) # the lab's delayer (e2e/lab/delay.py)
command -v redis-server >/dev/null || missing+=(redis-server) # the shared store of a cluster
command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || missing+=(haproxy) # its load balancer
python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv) # schemathesis's venv
if [ ${#missing[@]} -gt 0 ]; then
  step "installing Debian packages: ${missing[*]}"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  step "npm ci"
  npm ci --no-audit --no-fund
fi

step "cargo fmt --check"
cargo fmt --all --check
step "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
step "cargo test (cores, codec vectors, server with real WebSocket and TURN clients)"
cargo test --workspace
step "schemathesis: the REST API against its OpenAPI document, on a live server"
scripts/api-conformance.sh
step "tsc --noEmit over web/ (checkJs)"
npx tsc -p tsconfig.json
step "browser tests (Playwright + Debian Chromium)"
npx playwright test
step "all tests passed"
