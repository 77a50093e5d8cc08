#!/bin/sh
# Runs Chromium inside the test's network namespace (see e2e/netns.js).
exec ip netns exec "$VISAVIS_NETNS" "${CHROMIUM_PATH:-/usr/bin/chromium}" "$@"
