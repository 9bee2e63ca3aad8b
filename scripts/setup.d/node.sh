#!/usr/bin/env bash
# Installs the Node.js client's locked npm packages into clients/node/node_modules (grpc-js,
# proto-loader, and the buf CLI that lints the proto). Quiet, and a no-op when already in place.
set -euo pipefail
cd "$(dirname "$0")/../.."
dir=clients/node

if ! command -v npm >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi

# npm ci wipes node_modules each time: skip it while the installed tree matches the lock file.
stamp="$dir/node_modules/.installed-lock.sha256"
want="$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
(cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
echo "$want" >"$stamp"
