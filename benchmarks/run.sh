#!/usr/bin/env bash
# One command for the whole benchmark: installs the project (plus plotting), then runs the harness.
# LiteLLM is installed into benchmarks/.venv-litellm by the harness itself, never into the project.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
uv sync --frozen --quiet --group bench
exec .venv/bin/python benchmarks/run.py "$@"
