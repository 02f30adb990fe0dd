#!/usr/bin/env bash
# Validates docker-compose.yml against the Compose specification's JSON schema (no container
# engine runs on CI's machines). check-jsonschema (PyPI) ships the schema; it is installed into
# a virtual environment under target/ on first use; `--install-only` stops there (.ci/run does
# that in the background from its start).
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/tools-venv
if [[ ! -x "$venv/bin/check-jsonschema" ]]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'check-jsonschema==0.39.0'
fi
if [[ ${1:-} == --install-only ]]; then exit 0; fi
"$venv/bin/check-jsonschema" --builtin-schema vendor.compose-spec docker-compose.yml
