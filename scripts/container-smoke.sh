#!/usr/bin/env bash
# Builds the Dockerfile's image on a machine with no container registry and no Docker engine,
# then runs it as a container would and checks that it works:
#
# 1. base images made here: a Debian bookworm rootfs from debootstrap (slimmed like
#    debian:bookworm-slim) imported as the runtime image, and a builder image on it with gcc and
#    this machine's Rust toolchain (`rustc --print sysroot`) copied in;
# 2. `buildah build` of the Dockerfile with them as RUST_IMAGE / RUNTIME_IMAGE (chroot
#    isolation, vfs storage: what works on this machine kind; podman's runtime cannot set
#    rlimits here);
# 3. the image's entry point run from its rootfs, as the image's user, as PID 1 of a fresh PID
#    namespace, with the image's environment plus WEBHOOK_WORKER__* variables only (no file),
#    against the machine's RabbitMQ (a unique queue prefix) and PostgreSQL (a database of its
#    own): /readyz answers 200, the image's HEALTHCHECK command exits 0, a webhook made through
#    the API receives a published event with a good signature (the image's own `listen`), and
#    SIGTERM ends it with exit status 0; none of the secrets it was given shows in any output.
#
# Needs root (buildah, chroot, namespaces), `rustc` on PATH (its toolchain goes into the
# builder), Debian's archive, crates.io, RabbitMQ on 127.0.0.1:5672 (guest/guest) and PostgreSQL
# on 127.0.0.1:5432 (trust, user postgres, TLS). Installs buildah and debootstrap from Debian
# when they are missing. The builder (not the image) also trusts the machine's own CAs from
# /usr/local/share/ca-certificates, as the machine's cargo does. 10 to 13 minutes on 2 cores,
# most of it the release build. Everything lives in target/container-smoke/ (about 4 GB at the
# peak: vfs copies every layer in full) and is removed at the end but for the logs; so are the
# database, and the queues and the exchange it caused to be declared. SMOKE_KEEP_BASES=1 keeps
# the two base images for the next run (saves about 2.5 minutes); DEBIAN_MIRROR picks another
# Debian mirror.
#
# .ci/run makes the image beside its other steps: `--build-only` makes the base images and the
# image (steps 1 and 2) and stops, keeping them; a later `--reuse-build` run checks that image
# (step 3; it builds what is missing first) and removes everything at the end as usual.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
started=$SECONDS
step() { printf '[%4ds] %s\n' "$((SECONDS - started))" "$*"; }
# A check that held: counted for the closing "N passed, N failed" line.
passed=0
ok() { passed=$((passed + 1)); step "ok: $*"; }
fail() { echo "container-smoke: $*" >&2; exit 1; }

build_only=0 reuse_build=0
case "${1:-}" in
  "") ;;
  --build-only) build_only=1 ;;
  --reuse-build) reuse_build=1 ;;
  *) fail "unknown argument '$1' (expected none, --build-only or --reuse-build)" ;;
esac
[[ $# -le 1 ]] || fail "one argument at most"
# Whether the base images stay after this run: for the next run, or for the run a --build-only
# one prepares (which keeps the image too).
keep_bases=0
if [[ ${SMOKE_KEEP_BASES:-0} == 1 || $build_only == 1 ]]; then keep_bases=1; fi

[[ $(id -u) -eq 0 ]] || fail "needs root (buildah with vfs storage, chroot, PID namespaces)"
work=$repo/target/container-smoke
logs=$work/logs
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
runtime_image=localhost/webhook-worker-smoke/debian:bookworm-slim
image=localhost/webhook-worker:smoke
export BUILDAH_ISOLATION=chroot
# Storage of our own under target/, so that nothing of the machine's is touched or filled.
bh() { buildah --root "$work/storage" --runroot "$work/run" --storage-driver vfs "$@"; }

if [[ ${SMOKE_KEEP_BASES:-0} != 1 && $reuse_build != 1 ]]; then rm -rf "$work"; fi
rm -rf "$logs" "$work/scratch"
mkdir -p "$logs" "$work/scratch"
free_gb=$(df --output=avail -BG "$work" | tail -1 | tr -dc 0-9)
((free_gb >= 8)) || fail "only ${free_gb} GB free under $work: it uses about 4 GB; 8 are asked for, to leave others room"

missing=()
command -v buildah >/dev/null || missing+=(buildah)
command -v debootstrap >/dev/null || missing+=(debootstrap)
if ((${#missing[@]})); then
  step "installing ${missing[*]} from Debian"
  { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
      --no-install-recommends "${missing[@]}"; } >"$logs/apt.log" 2>&1 \
    || { tail -n 20 "$logs/apt.log" >&2; fail "could not install ${missing[*]}"; }
fi
for tool in rustc unshare nsenter curl psql rabbitmqctl python3 sha256sum; do
  command -v "$tool" >/dev/null || fail "$tool is needed"
done
rust_version=$(rustc --version | cut -d' ' -f2)
builder_image=localhost/webhook-worker-smoke/rust:$rust_version-bookworm

worker="" worker_pid="" listener="" database="" prefix=""
cleanup() {
  local status=$?
  if [[ -n $worker_pid ]] && kill -0 "$worker_pid" 2>/dev/null; then
    kill -KILL "$worker_pid" 2>/dev/null || true
  fi
  if [[ -n $worker ]]; then wait "$worker" 2>/dev/null || true; fi
  if [[ -n $listener ]]; then
    kill "$listener" 2>/dev/null || true
    wait "$listener" 2>/dev/null || true
  fi
  # Every container in this storage is one of ours (a failed build leaves its own too).
  bh rm --all >/dev/null 2>&1 || true
  if [[ $build_only != 1 || $status != 0 ]]; then bh rmi "$image" >/dev/null 2>&1 || true; fi
  if [[ $keep_bases != 1 ]]; then
    bh rmi --all --force >/dev/null 2>&1 || true
    rm -rf "$work/storage" "$work/run"
  fi
  rm -rf "$work/scratch"
  if [[ -n $database ]]; then
    psql -h 127.0.0.1 -U postgres -d test -qc "DROP DATABASE IF EXISTS $database WITH (FORCE)" \
      >/dev/null 2>&1 || true
  fi
  if [[ -n $prefix ]]; then
    local queue
    for queue in $(rabbitmqctl -q list_queues name </dev/null 2>/dev/null | grep "^$prefix\\." || true); do
      rabbitmqctl -q delete_queue "$queue" </dev/null >/dev/null 2>&1 || true
    done
    # rabbitmqctl has no command for exchanges; this is RabbitMQ's own internal call for it.
    rabbitmqctl -q eval "rabbit_exchange:delete(rabbit_misc:r(<<\"/\">>, exchange, <<\"$prefix.events\">>), false, <<\"container-smoke\">>)." \
      </dev/null >/dev/null 2>&1 || true
  fi
  if ((status != 0)); then
    echo "container-smoke: FAILED (logs in $logs)" >&2
    echo "container-smoke: $passed passed, 1 failed"
  fi
}
trap cleanup EXIT

# --- 1. The base images -----------------------------------------------------------------------

if ! bh inspect --type image "$runtime_image" >/dev/null 2>&1; then
  step "debootstrap: Debian bookworm (minbase) from $mirror"
  rootfs=$work/scratch/debian
  debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$logs/debootstrap.log" 2>&1 \
    || { tail -n 20 "$logs/debootstrap.log" >&2; fail "debootstrap failed"; }
  # As debian:bookworm-slim has it: updates and security sources, no documentation, manuals or
  # translations (now or from later installs), no package lists or downloaded packages.
  rm -f "$rootfs/etc/apt/sources.list"
  cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${mirror%/debian}/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/man/*
EOF
  # And apt keeps no caches or downloaded packages behind a RUN, as the official image's
  # /etc/apt/apt.conf.d/docker-* settings do; without them the image would carry 60 MB of
  # /var/cache/apt that the public base does not.
  cat >"$rootfs/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
  echo 'Acquire::Languages "none";' >"$rootfs/etc/apt/apt.conf.d/docker-no-languages"
  echo 'Acquire::GzipIndexes "true";' >"$rootfs/etc/apt/apt.conf.d/docker-gzip-indexes"
  echo 'Apt::AutoRemove::SuggestsImportant "false";' >"$rootfs/etc/apt/apt.conf.d/docker-autoremove-suggests"
  find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
  rm -rf "$rootfs"/usr/share/{info,locale,man}/* "$rootfs"/var/lib/apt/lists/* \
    "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/log/*.log
  tar -C "$rootfs" -cf "$work/scratch/debian.tar" .
  rm -rf "$rootfs"
  ctr=$(bh from scratch)
  bh add "$ctr" "$work/scratch/debian.tar" / >/dev/null
  bh config --cmd bash --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$ctr"
  bh commit --quiet --rm "$ctr" "$runtime_image" >/dev/null
  rm -f "$work/scratch/debian.tar"
fi

if ! bh inspect --type image "$builder_image" >/dev/null 2>&1; then
  step "builder image: gcc and this machine's Rust $rust_version"
  ctr=$(bh from --pull=never "$runtime_image")
  # ca-certificates: cargo fetches from crates.io over TLS; gcc and libc6-dev: crates that
  # compile C (ring, mimalloc, SQLite).
  bh run "$ctr" -- sh -c 'apt-get update -q && apt-get install -y -q --no-install-recommends \
      ca-certificates gcc libc6-dev && rm -rf /var/lib/apt/lists/*' >"$logs/builder.log" 2>&1 \
    || { tail -n 20 "$logs/builder.log" >&2; fail "the builder's packages did not install"; }
  # The machine's own certificate authorities too, as for its own cargo: where the way out goes
  # through a TLS-inspecting proxy (as on these machines), crates.io is reached only so.
  # Only the builder gets them; the image that ships trusts Debian's set alone.
  if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
    bh copy "$ctr" /usr/local/share/ca-certificates/ /usr/local/share/ca-certificates/ >/dev/null
    bh run "$ctr" -- update-ca-certificates >>"$logs/builder.log" 2>&1
  fi
  # The toolchain itself, without its documentation (800 MB the build never reads).
  sysroot=$(rustc --print sysroot)
  mnt=$(bh mount "$ctr")
  mkdir -p "$mnt/usr/local/rust"
  tar -C "$sysroot" --exclude=./share/doc -cf - . | tar -C "$mnt/usr/local/rust" -xf -
  bh umount "$ctr" >/dev/null
  bh config --env CARGO_HOME=/usr/local/cargo \
    --env PATH=/usr/local/cargo/bin:/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    "$ctr"
  inside=$(bh run "$ctr" -- rustc --version)
  [[ $inside == "$(rustc --version)" ]] || fail "the builder's rustc is '$inside'"
  bh commit --quiet --rm "$ctr" "$builder_image" >/dev/null
fi

# --- 2. The image -----------------------------------------------------------------------------

if [[ $reuse_build == 1 ]] && bh inspect --type image "$image" >/dev/null 2>&1; then
  step "image $image: the one a --build-only run made"
else
  step "buildah build (release build of the project inside the builder; about 6 minutes)"
  # --format docker: OCI image configs have no HEALTHCHECK, and the check below runs it.
  bh build --pull=never --format docker \
    --build-arg RUST_IMAGE="$builder_image" --build-arg RUNTIME_IMAGE="$runtime_image" \
    -t "$image" -f Dockerfile . >"$logs/build.log" 2>&1 \
    || { tail -n 40 "$logs/build.log" >&2; fail "buildah build failed"; }
fi
size=$(bh images --format '{{.Size}}' "$image")
if [[ $build_only == 1 ]]; then
  step "built: $image ($size), on the base images $runtime_image, $builder_image"
  exit 0
fi

# --- 3. Run it as a container would -----------------------------------------------------------

ctr=$(bh from --pull=never "$image")
rootfs=$(bh mount "$ctr")
step "image $image: $size (rootfs $(du -sh "$rootfs" | cut -f1), of which the binary $(du -sh "$rootfs/usr/local/bin/webhook-worker" | cut -f1))"
config() { bh inspect --type image --format "$1" "$image"; }
mapfile -t image_env < <(config '{{range .Docker.Config.Env}}{{println .}}{{end}}')
mapfile -t entrypoint < <(config '{{range .Docker.Config.Entrypoint}}{{println .}}{{end}}')
mapfile -t cmd < <(config '{{range .Docker.Config.Cmd}}{{println .}}{{end}}')
mapfile -t healthcheck < <(config '{{if .Docker.Config.Healthcheck}}{{range .Docker.Config.Healthcheck.Test}}{{println .}}{{end}}{{end}}')
user=$(config '{{.Docker.Config.User}}')
workdir=$(config '{{.Docker.Config.WorkingDir}}')
[[ ${healthcheck[0]:-} == CMD ]] || fail "the image has no HEALTHCHECK CMD (got '${healthcheck[*]}')"
# The image's user, resolved in the image's own /etc/passwd as a runtime does.
ids=$(awk -F: -v user="$user" '$1 == user { print $3, $4 }' "$rootfs/etc/passwd")
read -r uid gid <<<"$ids"
[[ -n ${uid:-} && $uid -ne 0 ]] || fail "the image's user '$user' is not a non-root user of the image"
# What a runtime gives every container (with the host's network, as here).
cp /etc/hosts /etc/resolv.conf "$rootfs/etc/"

prefix="smoke$$$(date +%s)"
database="webhook_smoke_$$_$(date +%s)"
random_hex() { od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'; }
token="whk_smoke_$(random_hex 16)"
secret="whsec_smoke_$(random_hex 16)"
key=$(head -c 32 /dev/urandom | base64)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
psql -h 127.0.0.1 -U postgres -d test -v ON_ERROR_STOP=1 -qc "CREATE DATABASE $database" >/dev/null
settings=(
  "WEBHOOK_WORKER__AMQP__URL=amqp://guest:guest@127.0.0.1:5672/%2f"
  "WEBHOOK_WORKER__AMQP__PREFIX=$prefix"
  "WEBHOOK_WORKER__DATABASE__URL=postgres://postgres@127.0.0.1:5432/$database?sslmode=require"
  "WEBHOOK_WORKER__DATABASE__ENCRYPTION_KEY=$key"
  # Loopback and a free port rather than the image's 0.0.0.0:8080: this container shares the
  # machine's network (and its port 8080) with everyone else on it.
  "WEBHOOK_WORKER__API__LISTEN=127.0.0.1:$port"
  "WEBHOOK_WORKER__API__TOKENS=[{account_id=\"smoke\", token_sha256=\"$(printf %s "$token" | sha256sum | cut -d' ' -f1)\"}]"
  "WEBHOOK_WORKER__DELIVERY__ALLOW_HTTP=true"
  "WEBHOOK_WORKER__DELIVERY__ALLOW_NETWORKS=[\"127.0.0.0/8\"]"
)
# Commands get only the image's environment and the settings (`env -i "${in_image[@]}" …`),
# and run in the image's root, as its user, in its working directory (`unshare "${as_user[@]}"`).
# Background ones are started without a shell function, so that $! is the process itself.
in_image=("${image_env[@]}" "${settings[@]}")
as_user=(--root="$rootfs" --wd="$workdir" --setuid "$uid" --setgid "$gid")

step "starting '${entrypoint[*]} ${cmd[*]}' as $user ($uid:$gid), PID 1 of a new PID namespace"
env -i "${in_image[@]}" unshare --pid --fork --kill-child --mount-proc "${as_user[@]}" \
  "${entrypoint[@]}" "${cmd[@]}" >"$logs/worker.log" 2>&1 &
worker=$!
for _ in $(seq 50); do
  worker_pid=$(tr -d " " 2>/dev/null <"/proc/$worker/task/$worker/children" || true)
  [[ -n $worker_pid ]] && break
  sleep 0.1
done
[[ -n $worker_pid ]] || fail "the worker did not start"
read -r _ host_pid ns_pid < <(grep '^NSpid:' "/proc/$worker_pid/status")
read -r _ real_uid _ < <(grep '^Uid:' "/proc/$worker_pid/status")
[[ $host_pid == "$worker_pid" && $ns_pid == 1 ]] || fail "the worker is not PID 1 of its namespace"
[[ $real_uid == "$uid" ]] || fail "the worker runs as uid $real_uid"
ok "the worker is PID 1 of its PID namespace, as uid $uid"

base=http://127.0.0.1:$port
ready=""
for _ in $(seq 120); do
  if curl -fsS -o /dev/null "$base/readyz" 2>/dev/null; then ready=1; break; fi
  kill -0 "$worker" 2>/dev/null || break
  sleep 0.5
done
[[ -n $ready ]] || { tail -n 30 "$logs/worker.log" >&2; fail "/readyz never answered 200"; }
ok "/readyz answers 200"

# The HEALTHCHECK, run the way a runtime runs it: inside the container's namespaces and root.
exec_in_worker=(nsenter --target "$worker_pid" --pid --mount --root --wd --setuid "$uid" --setgid "$gid")
env -i "${in_image[@]}" "${exec_in_worker[@]}" "${healthcheck[@]:1}" >"$logs/healthcheck.log" 2>&1 \
  || { cat "$logs/healthcheck.log" >&2; fail "the HEALTHCHECK command failed against the ready worker"; }
if env -i "${in_image[@]}" "${exec_in_worker[@]}" "${healthcheck[@]:1}" --url http://127.0.0.1:9/readyz >/dev/null 2>&1; then
  fail "the HEALTHCHECK command exits 0 with nothing to ask"
fi
ok "HEALTHCHECK '${healthcheck[*]:1}' exits 0 (and 1 against a closed port)"

# A receiver that checks signatures: the image's own `listen`, as the image's user.
env -i "${in_image[@]}" WEBHOOK_SECRET="$secret" unshare "${as_user[@]}" "${entrypoint[@]}" listen --port 0 \
  >"$logs/listen.log" 2>&1 &
listener=$!
receiver=""
for _ in $(seq 50); do
  receiver=$(grep -o 'http://127\.0\.0\.1:[0-9]*/' "$logs/listen.log" || true)
  [[ -n $receiver ]] && break
  sleep 0.1
done
[[ -n $receiver ]] || { cat "$logs/listen.log" >&2; fail "the receiver did not start"; }

# The token and the secret go in files, not on command lines or in the output.
umask 077
printf 'Authorization: Bearer %s\n' "$token" >"$work/scratch/auth"
printf '{"url":"%s","enabled_events":["*"],"secret":"%s"}' "$receiver" "$secret" >"$work/scratch/webhook.json"
status=$(curl -sS -o "$logs/created.json" -w '%{http_code}' -X POST "$base/v1/webhooks" \
  -H @"$work/scratch/auth" -H 'Content-Type: application/json' --data @"$work/scratch/webhook.json")
[[ $status == 201 ]] || { cat "$logs/created.json" >&2; fail "POST /v1/webhooks answered $status"; }
ok "webhook created through the API for $receiver"

published=$(env -i "${in_image[@]}" unshare "${as_user[@]}" "${entrypoint[@]}" publish --account-id smoke)
event_id=$(awk '$1 == "published" && $2 == "event" { print $3 }' <<<"$published")
[[ -n $event_id ]] || fail "publish said: $published"
delivered=""
for _ in $(seq 60); do
  if grep -qF " $event_id attempt 1 signature ok " "$logs/listen.log"; then delivered=1; break; fi
  sleep 0.5
done
[[ -n $delivered ]] || { cat "$logs/listen.log" >&2; tail -n 30 "$logs/worker.log" >&2; fail "event $event_id did not arrive signed"; }
ok "event $event_id delivered, signature ok"

kill -TERM "$worker_pid"
exited=""
for _ in $(seq 140); do
  if ! kill -0 "$worker" 2>/dev/null; then exited=1; break; fi
  sleep 0.5
done
[[ -n $exited ]] || fail "no exit within 70 s of SIGTERM"
code=0
wait "$worker" || code=$?
worker="" worker_pid=""
[[ $code == 0 ]] || { tail -n 30 "$logs/worker.log" >&2; fail "SIGTERM: exit status $code"; }
ok "SIGTERM: exit status 0"
# Everything the processes printed and the API answered: none of the secrets they were given.
if grep -rqF -e "$token" -e "$secret" -e "$key" "$logs"; then fail "a secret was printed (see $logs)"; fi
ok "no secret in any output"
step "image $size; $((SECONDS - started)) s in all"
echo "container-smoke: $passed passed, 0 failed"
