#!/usr/bin/env bash
# The REST API held to its OpenAPI document: starts the `visavis` binary on a loopback port
# with API credentials, and runs schemathesis (PyPI, pinned, in .venv-test/) against the document
# it serves at /api/v1/openapi.json: requests generated from the document, valid and invalid,
# single and chained through its links, every answer checked against it (status, headers,
# body schema, the error body, authentication, methods). Exits non-zero on any mismatch.
# Part of scripts/test.sh; needs python3 with venv (Debian: python3-venv).
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
venv=.venv-test
if [ "$("$venv/bin/st" --version 2>/dev/null)" != "st, version $SCHEMATHESIS_VERSION" ]; then
  echo "installing schemathesis $SCHEMATHESIS_VERSION into $venv/"
  python3 -m venv --clear "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

cargo build --quiet --bin visavis
work=$(mktemp -d)
secret=$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')
NO_COLOR=1 RUST_LOG=visavis=info,visavis_server=warn target/debug/visavis --listen 127.0.0.1:0 --no-turn \
  --api-key vv_conformance --api-secret "$secret" --data-dir "$work/data" >"$work/log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null; rm -rf "$work"' EXIT
addr=""
for _ in $(seq 100); do
  addr=$(sed -n 's|.*serving http://\([0-9.]*:[0-9]*\).*|\1|p' "$work/log" | head -n 1)
  [ -n "$addr" ] && break
  kill -0 "$server" 2>/dev/null || { cat "$work/log"; exit 1; }
  sleep 0.1
done
[ -n "$addr" ] || { echo "visavis did not start:"; cat "$work/log"; exit 1; }

# From the work directory, so that Hypothesis keeps its example database out of the repository.
repo=$PWD
(cd "$work" && "$repo/$venv/bin/st" --config-file "$repo/scripts/schemathesis.toml" run \
  "http://$addr/api/v1/openapi.json" \
  --header "Authorization: Bearer $secret" \
  --max-examples "${SCHEMATHESIS_EXAMPLES:-50}" \
  --workers 1 \
  --no-color)
