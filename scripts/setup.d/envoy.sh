#!/usr/bin/env bash
# Envoy's protobuf API in its own venv (.venv-envoy) for the deploy/envoy schema test: xds-protos
# bundles old opentelemetry protos that would clobber the main venv's. Pinned; a no-op when current.
set -euo pipefail
cd "$(dirname "$0")/../.."
requirements=tests/tools/envoy-requirements.txt
stamp=.venv-envoy/.installed-requirements.sha256
want="$(sha256sum "$requirements" | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
uv venv --quiet --python "$(command -v python3)" .venv-envoy
uv pip install --quiet --python .venv-envoy/bin/python -r "$requirements"
echo "$want" >"$stamp"
