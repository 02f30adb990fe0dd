#!/usr/bin/env bash
# Installs the real peers the interop tests run (panva's oidc-provider, and the Standard Webhooks
# verifier `standardwebhooks`; both pinned in package-lock.json) into tests/oidc/node_modules.
# Idempotent: does nothing when node_modules was installed from the current lock file. Needs
# node and npm on PATH.
#
# oidc-provider is pinned to 8.8.1, the last release line that supports Node.js 20 (the machine's
# Node); 9.x runs but warns that it wants Node 22+. Moving to 9.x is a one-line change once Node
# 22 is here (server.mjs works unchanged with 9.13.3).
set -euo pipefail
cd "$(dirname "$0")"

for tool in node npm; do
  if ! command -v "$tool" >/dev/null; then
    echo "tests/oidc/setup.sh: $tool is not installed (the OAuth interop tests need Node.js 20+)" >&2
    exit 1
  fi
done

stamp=node_modules/.installed-from
want="$(sha256sum package-lock.json package.json | sha256sum | cut -d' ' -f1)"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" && -d node_modules/oidc-provider ]]; then
  echo "tests/oidc: node_modules is up to date"
  exit 0
fi

npm ci --no-audit --no-fund --loglevel=error
echo "$want" > "$stamp"
echo "tests/oidc: installed $(node -p "require('./node_modules/oidc-provider/package.json').version" 2>/dev/null || echo '?') of oidc-provider"
