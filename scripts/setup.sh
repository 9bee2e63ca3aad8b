#!/usr/bin/env bash
# Installs everything the project needs on a fresh machine, from the project's own files:
# uv (pinned), the locked Python dependencies into .venv, and the tools the tests use.
set -euo pipefail
cd "$(dirname "$0")/.."

UV_VERSION=0.13.9
export UV_PYTHON_DOWNLOADS=never UV_NO_PROGRESS=1

if ! command -v uv >/dev/null 2>&1 || [ "$(uv --version | cut -d' ' -f2)" != "$UV_VERSION" ]; then
  python3 -m pip install --quiet --disable-pip-version-check "uv==$UV_VERSION"
fi

# --frozen: install exactly what uv.lock says, so a fresh machine gets what CI got.
uv sync --frozen --quiet

for hook in scripts/setup.d/*.sh; do
  [ -e "$hook" ] && bash "$hook"
done
exit 0
