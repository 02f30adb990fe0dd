#!/usr/bin/env bash
# The test suite. Needs RabbitMQ (127.0.0.1:5672) and PostgreSQL (127.0.0.1:5432) running;
# .ci/run starts them when they are not.
#
# 1. everything but the tests that stop a shared service, in parallel (the fault suite's other
#    scenarios after the rest, with their output shown);
# 2. the timed tests, alone: endpoint health and fair share (they measure throughput and
#    latency), and the API beside clients that never read;
# 3. alone, one at a time: the tests that restart RabbitMQ, alarm it, and restart PostgreSQL
#    (tests/shared_services/);
# 4. alone, last, one at a time: the worker on a three-node RabbitMQ cluster whose nodes the
#    tests kill (tests/cluster/). The cluster (scripts/rabbitmq-cluster.sh, ports 5701-5703) is
#    started in the background while step 3 runs and stopped after the suite, also when it
#    fails; the machine's broker is not touched.
#
# Each step prints `[mm:ss] test.sh …` as it starts, and the steps' durations at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
phases_label=test.sh
source scripts/lib/phases.sh
trap phases_summary EXIT

if [ -x tests/oidc/setup.sh ]; then
  phase "OAuth test server (tests/oidc/setup.sh)"
  tests/oidc/setup.sh
fi
phase "1. build and run the unit tests and tests/it in parallel, but the fault suite"
cargo test --lib --bins --test it -- --skip faults::
# The fault suite on its own, so that its "fault suite: …" lines (duplicates included) are shown.
phase "1. the fault suite"
cargo test --test it faults:: -- --nocapture
# Each suite built as a step of its own (cargo would build it first anyway), so that the times
# show the build apart from the tests.
phase "2. build the timed tests (tests/throughput)"
cargo test --no-run --test throughput
phase "2. timed: endpoint health and fair share (tests/throughput)"
cargo test --test throughput -- --test-threads=1
# Timed as well: /healthz within a second for a minute beside 1,000 clients that never read.
phase "2. timed: /healthz beside 1,000 clients that never read"
cargo test --test it api::slow_readers::healthz_from_another_address -- --ignored --nocapture
phase "3. build tests/shared_services and tests/cluster"
cargo test --no-run --test shared_services --test cluster
# The cluster boots (1 to 2 minutes, mostly Erlang starting three nodes and joining them) beside
# step 3, which spends its time waiting for the machine's broker and database to come back; the
# cluster shares no port, node name, cookie or data with them.
phase "3. starting, in the background, the three-node RabbitMQ cluster of step 4"
mkdir -p target
scripts/rabbitmq-cluster.sh start >target/rabbitmq-cluster-start.log 2>&1 &
cluster_start=$!
trap 'kill "$cluster_start" 2>/dev/null || true; scripts/rabbitmq-cluster.sh stop || true; phases_summary' EXIT
phase "3. alone: RabbitMQ restarted and alarmed, PostgreSQL restarted (tests/shared_services)"
cargo test --test shared_services -- --test-threads=1 --nocapture
phase "4. the cluster up"
cluster_status=0
wait "$cluster_start" || cluster_status=$?
cat target/rabbitmq-cluster-start.log
((cluster_status == 0)) || { echo "error: the cluster did not start (exit $cluster_status)" >&2; exit 1; }
phase "4. alone: the cluster's nodes killed under three replicas (tests/cluster)"
cargo test --test cluster -- --test-threads=1 --nocapture
