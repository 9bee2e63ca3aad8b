#!/usr/bin/env bash
# kubectl for tests/test_manifests.py, which renders deploy/ with `kubectl kustomize` (kustomize v4.1+
# is needed: the bundle uses `labels` and components). This machine's image ships kubectl (Debian
# package `kubectl`, with kustomize v5). Debian's own `kubernetes-client` is 1.20 with kustomize v2,
# too old for the bundle, and no PyPI or npm package ships kubectl or kustomize; so this hook only
# installs the image's package when its apt source offers it, and says so when nothing fits.
set -euo pipefail

kustomize_major() {
  kubectl version --client 2>/dev/null | sed -n 's/^Kustomize Version: v\([0-9]*\).*/\1/p'
}

if command -v kubectl >/dev/null 2>&1 && [ "$(kustomize_major)" -ge 4 ] 2>/dev/null; then
  exit 0
fi
command -v kustomize >/dev/null 2>&1 && exit 0
if [ "$(id -u)" = 0 ] && apt-cache policy kubectl 2>/dev/null | grep -q 'Candidate: [0-9]'; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kubectl >/dev/null && exit 0
fi
echo "kubectl.sh: no kubectl with kustomize v4+ (nor kustomize): tests/test_manifests.py will fail" >&2
exit 0
