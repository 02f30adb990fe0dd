# Multi-stage build: a release binary on a small Debian runtime, run as a non-root user.
#   docker build -t webhook-worker .
#   docker run --rm -e WEBHOOK_WORKER__AMQP__URL=amqp://... -e WEBHOOK_WORKER__DATABASE__URL=postgres://... webhook-worker
# The two base images are build arguments so that a machine without a registry can build with
# images of its own (scripts/container-smoke.sh does); the defaults are the public ones.
ARG RUST_IMAGE=rust:1.95-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY config ./config
COPY migrations ./migrations
COPY tests ./tests
# Without the release profile's line tables (kept for profiling on a developer's machine): they
# are most of the binary's 126 MB, and the image has no use for them.
RUN CARGO_PROFILE_RELEASE_DEBUG=false cargo build --release --locked --bin webhook-worker

FROM ${RUNTIME_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/webhook-worker --create-home webhook-worker
COPY --from=build /src/target/release/webhook-worker /usr/local/bin/webhook-worker
USER webhook-worker
WORKDIR /var/lib/webhook-worker
# Containers: listen on all interfaces; configure the rest through WEBHOOK_WORKER__* variables.
ENV WEBHOOK_WORKER__API__LISTEN=0.0.0.0:8080
EXPOSE 8080
# The image has no curl: the binary asks its own /readyz (on api.listen, via loopback).
HEALTHCHECK --interval=10s --timeout=6s --start-period=20s --retries=3 \
  CMD ["webhook-worker", "healthcheck"]
ENTRYPOINT ["webhook-worker"]
CMD ["run"]
