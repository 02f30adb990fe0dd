#!/usr/bin/env bash
# A three-node RabbitMQ cluster on this machine, from the installed RabbitMQ, for the cluster
# tests and for trying the worker against a cluster. The machine's own broker (5672, its node
# name, cookie and data) is left untouched: these nodes have names, ports, data directories and
# an Erlang cookie of their own, and no management plugin.
#
#   scripts/rabbitmq-cluster.sh start          start the three nodes (joined into one cluster)
#   scripts/rabbitmq-cluster.sh stop           stop them and delete their data
#   scripts/rabbitmq-cluster.sh kill N         SIGKILL node N (1, 2 or 3): a node lost
#   scripts/rabbitmq-cluster.sh restart N      start node N again (it rejoins the cluster)
#   scripts/rabbitmq-cluster.sh status         the cluster's running nodes
#   scripts/rabbitmq-cluster.sh urls           the AMQP URLs, comma-separated (for amqp.url)
#   scripts/rabbitmq-cluster.sh ctl N ARGS...  rabbitmqctl ARGS against node N, e.g.
#                                              ctl 1 list_queues name leader members
#
# Node N is `wwcN@<short hostname>`, AMQP on port 5700+N, Erlang distribution on 25700+N.
# CLUSTER_DIR (default /tmp/webhook-worker-cluster) holds their data, logs and cookie;
# CLUSTER_PORT_BASE (default 5700) moves the AMQP ports (distribution: +20000).
set -euo pipefail

dir=${CLUSTER_DIR:-/tmp/webhook-worker-cluster}
base=${CLUSTER_PORT_BASE:-5700}
host=$(hostname -s)
server=/usr/lib/rabbitmq/bin/rabbitmq-server
ctl=/usr/lib/rabbitmq/bin/rabbitmqctl
[[ -x $server ]] || server=$(command -v rabbitmq-server)
[[ -x $ctl ]] || ctl=$(command -v rabbitmqctl)

die() { echo "rabbitmq-cluster: $*" >&2; exit 1; }
node_name() { echo "wwc$1@$host"; }
amqp_port() { echo $((base + $1)); }

# The environment one node runs (and is spoken to) with. HOME carries the cluster's own cookie.
node_env() {
  local n=$1 home=$dir/node$1
  echo HOME="$dir" \
    RABBITMQ_NODENAME="$(node_name "$n")" \
    RABBITMQ_NODE_PORT="$(amqp_port "$n")" \
    RABBITMQ_DIST_PORT=$((base + 20000 + n)) \
    RABBITMQ_MNESIA_BASE="$home/mnesia" \
    RABBITMQ_LOG_BASE="$home/log" \
    RABBITMQ_PID_FILE="$home/pid" \
    RABBITMQ_CONFIG_FILE="$home/rabbitmq.conf" \
    RABBITMQ_ADVANCED_CONFIG_FILE="$home/advanced.config" \
    RABBITMQ_ENABLED_PLUGINS_FILE="$home/enabled_plugins" \
    RABBITMQ_FEATURE_FLAGS_FILE="$home/feature_flags" \
    RABBITMQ_QUORUM_DIR="$home/quorum" \
    RABBITMQ_STREAM_DIR="$home/stream"
}

ctl() { # node, args...
  local n=$1; shift
  env $(node_env "$n") "$ctl" -n "$(node_name "$n")" "$@"
}

prepare() {
  local n=$1 home=$dir/node$1
  mkdir -p "$home/log" "$home/mnesia"
  cat >"$home/rabbitmq.conf" <<CONF
listeners.tcp.default = 127.0.0.1:$(amqp_port "$n")
loopback_users.guest = true
# As on a machine with room: a test alarms the broker itself when it wants one.
vm_memory_high_watermark.absolute = 2GB
disk_free_limit.absolute = 50MB
CONF
  echo "[]." >"$home/advanced.config"
  echo "[]." >"$home/enabled_plugins"
}

start_node() {
  local n=$1
  if ctl "$n" -q ping >/dev/null 2>&1; then return 0; fi
  prepare "$n"
  env $(node_env "$n") "$server" -detached >/dev/null 2>&1 \
    || die "node $n did not start (logs in $dir/node$n/log)"
  # await_startup fails at once while the node is not yet registered with epmd: ask again.
  for _ in $(seq 60); do
    if ctl "$n" -q await_startup --timeout 5 >/dev/null 2>&1; then return 0; fi
    sleep 1
  done
  die "node $n did not come up (logs in $dir/node$n/log)"
}

joined() { # node: whether it is in node 1's cluster
  ctl 1 -q cluster_status --formatter json 2>/dev/null | grep -q "\"$(node_name "$1")\""
}

start() {
  mkdir -p "$dir"
  if [[ ! -f $dir/.erlang.cookie ]]; then
    head -c 32 /dev/urandom | base64 | tr -dc A-Za-z0-9 >"$dir/.erlang.cookie"
    chmod 400 "$dir/.erlang.cookie"
  fi
  for n in 1 2 3; do start_node "$n"; done
  for n in 2 3; do
    if ! joined "$n"; then
      ctl "$n" -q stop_app
      ctl "$n" -q join_cluster "$(node_name 1)"
      ctl "$n" -q start_app
    fi
  done
  status
}

stop() {
  for n in 1 2 3; do
    ctl "$n" -q stop >/dev/null 2>&1 || kill_node "$n"
  done
  rm -rf "$dir"
}

kill_node() {
  local n=$1 pid
  pid=$(cat "$dir/node$n/pid" 2>/dev/null) || return 0
  kill -KILL "$pid" 2>/dev/null || true
  # Gone when its AMQP port stops answering.
  for _ in $(seq 100); do
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$(amqp_port "$n")") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  die "node $n still answers after SIGKILL"
}

status() {
  ctl 1 -q cluster_status --formatter json 2>/dev/null \
    | python3 -c 'import json,sys; s=json.load(sys.stdin); print("running:", " ".join(sorted(s["running_nodes"])))' \
    || { for n in 1 2 3; do ctl "$n" -q cluster_status >/dev/null 2>&1 && { ctl "$n" -q cluster_status; return; }; done; die "no node answers"; }
}

urls() {
  local out=()
  for n in 1 2 3; do out+=("amqp://guest:guest@127.0.0.1:$(amqp_port "$n")/%2f"); done
  (IFS=,; echo "${out[*]}")
}

case ${1:-} in
  start) start ;;
  stop) stop ;;
  kill) [[ ${2:-} =~ ^[123]$ ]] || die "kill N: N is 1, 2 or 3"; kill_node "$2" ;;
  restart) [[ ${2:-} =~ ^[123]$ ]] || die "restart N: N is 1, 2 or 3"; start_node "$2" ;;
  status) status ;;
  urls) urls ;;
  ctl) [[ ${2:-} =~ ^[123]$ ]] || die "ctl N ARGS: N is 1, 2 or 3"; n=$2; shift 2; ctl "$n" "$@" ;;
  *) die "usage: $0 start|stop|kill N|restart N|status|urls|ctl N ARGS" ;;
esac
