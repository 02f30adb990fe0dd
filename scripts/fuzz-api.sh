#!/usr/bin/env bash
# Fuzzes the running API with schemathesis (PyPI) against the OpenAPI document it serves: no
# answer may be a 5xx, and every answer (errors included: the contract's
# {"errors":[{"message","field"}]}) must have a documented status and match its schema.
#
# Starts target/debug/webhook-worker as role `all` on a free port, with a
# throwaway SQLite database, an encryption key and one API token, all from environment variables,
# against the machine's RabbitMQ (AMQP_URL, default amqp://guest:guest@127.0.0.1:5672/%2f) under
# a unique queue prefix, whose queues are deleted afterwards. Role `all`, not `api`, because its
# worker declares the queues: redrive reads `<prefix>.dead`, and a broker that cannot answer is
# a 503, which this fuzzing counts as a failure. schemathesis lives in a venv under target/.
#
# The binary is the one the test build makes for tests/it (`cargo test --no-run --test it`), with
# the features the tests unify in (`test-hooks`, whose only hook is in message handling, not in
# the API): `cargo build --bin webhook-worker` would compile the crate and a dozen of its
# dependencies a second time, with other features (2.5 CPU-minutes in CI, which runs the tests
# next).
#
# FUZZ_MAX_EXAMPLES (default 100) bounds the examples per operation (about 30 s on 2 cores);
# FUZZ_PHASES (default examples,coverage,fuzzing) may add `stateful` (about 5 minutes).
# `--install-only` installs schemathesis and stops: .ci/run does that in the background from its
# start, since the install is minutes of waiting on PyPI and seconds of CPU.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=$PWD/target/fuzz-venv
version=4.32.5
if [[ ! -x "$venv/bin/schemathesis" ]] || ! "$venv/bin/schemathesis" --version | grep -q "$version"; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$version"
fi
if [[ ${1:-} == --install-only ]]; then exit 0; fi
cargo test --no-run --quiet --test it

work=$(mktemp -d)
server=""
cleanup() {
  if [[ -n "$server" ]]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  rm -rf "$work"
  if command -v rabbitmqctl >/dev/null; then
    local queue
    for queue in $(rabbitmqctl -q list_queues name </dev/null 2>/dev/null | grep "^$prefix\\." || true); do
      rabbitmqctl -q delete_queue "$queue" </dev/null >/dev/null 2>&1 || true
    done
  fi
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
prefix="fuzz$port$$"
token="whk_fuzz_$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
hash=$(printf %s "$token" | sha256sum | cut -d' ' -f1)

WEBHOOK_WORKER__DATABASE__URL="sqlite://$work/fuzz.db" \
WEBHOOK_WORKER__DATABASE__ENCRYPTION_KEY="$(python3 -c 'import base64, os; print(base64.b64encode(os.urandom(32)).decode())')" \
WEBHOOK_WORKER__AMQP__URL="${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}" \
WEBHOOK_WORKER__AMQP__PREFIX="$prefix" \
WEBHOOK_WORKER__API__LISTEN="127.0.0.1:$port" \
WEBHOOK_WORKER__API__TOKENS="[{account_id=\"fuzz\", token_sha256=\"$hash\"}]" \
WEBHOOK_WORKER__LOG__LEVEL=warn \
  target/debug/webhook-worker run --role all >"$work/server.log" 2>&1 &
server=$!

base="http://127.0.0.1:$port"
for _ in $(seq 60); do
  if curl -fsS "$base/healthz" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$server" 2>/dev/null; then cat "$work/server.log" >&2; exit 1; fi
  sleep 0.5
done

status=0
# From the scratch directory, where schemathesis leaves its cache.
(cd "$work" && timeout 300 "$venv/bin/schemathesis" run "$base/openapi.json" \
  --header "Authorization: Bearer $token" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --max-examples "${FUZZ_MAX_EXAMPLES:-100}" \
  --phases "${FUZZ_PHASES:-examples,coverage,fuzzing}" \
  --seed "${FUZZ_SEED:-1}" \
  --workers 2 \
  --request-timeout 10 \
  --warnings off) \
  || status=$?
if [[ $status -ne 0 ]]; then
  echo "--- server log" >&2
  tail -n 50 "$work/server.log" >&2
fi
exit "$status"
