#!/usr/bin/env bash
# The test suite. Needs RabbitMQ (127.0.0.1:5672) and PostgreSQL (127.0.0.1:5432) running;
# .ci/run starts them when they are not.
#
# 1. everything but the tests that stop a shared service, in parallel (the fault suite's other
#    scenarios after the rest, with their output shown);
# 2. the timed tests, alone: endpoint health and fair share (they measure throughput and
#    latency), and the API beside clients that never read;
# 3. alone, last, one at a time: the tests that restart RabbitMQ, alarm it, and restart
#    PostgreSQL (tests/shared_services/).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -x tests/oidc/setup.sh ]; then
  tests/oidc/setup.sh
fi
cargo test --lib --bins --test it -- --skip faults::
# The fault suite on its own, so that its "fault suite: …" lines (duplicates included) are shown.
cargo test --test it faults:: -- --nocapture
cargo test --test throughput -- --test-threads=1
# Timed as well: /healthz within a second for a minute beside 1,000 clients that never read.
cargo test --test it api::slow_readers::healthz_from_another_address -- --ignored --nocapture
cargo test --test shared_services -- --test-threads=1 --nocapture
