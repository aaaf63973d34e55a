# syntax=docker/dockerfile:1
#
# The one k8s-janus container image: the single `janus` binary (controller, web, kubeconfig-sync,
# crd, audit, agent-manifests) on a distroless runtime. The Helm chart runs it as
#   command: ["janus"], args: [<subcommand>, --config, /etc/janus/config.yaml, ...]
# as uid/gid 65532 with a read-only root filesystem (writable: the /tmp emptyDir and, for SQLite,
# /var/lib/janus). crates/janus/tests/chart.rs checks that this file and the chart agree.
#
#   docker build -t opsmode/k8s-janus:0.1.0 --build-arg VERSION=0.1.0 .

# Keep in step with the toolchain the test suite uses (workspace rust-version is the minimum).
ARG RUST_VERSION=1.95

FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
# Only what the build needs (see also .dockerignore).
COPY Cargo.toml Cargo.lock ./
COPY config ./config
COPY crates ./crates
# The RBAC rules `janus agent-manifests` embeds: one source with the chart's templates.
COPY charts/k8s-janus/files/rbac ./charts/k8s-janus/files/rbac
# --no-default-features leaves out the `demo` feature (kubesim and `janus demo`): the production image
# must not contain code that executes host processes for simulated pods. scripts/check-no-sim-binary.sh
# checks such a binary (no demo subcommand, no kubesim symbols or strings).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p janus --no-default-features \
    && install -D -m 0755 target/release/janus /out/janus

# glibc + libgcc, no shell, no package manager; its `nonroot` user is 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="k8s-janus" \
      org.opencontainers.image.description="Just-in-Time kubectl exec access for Kubernetes: controller, web UI and registration tools in one binary" \
      org.opencontainers.image.source="https://github.com/opsmode/k8s-janus" \
      org.opencontainers.image.url="https://github.com/opsmode/k8s-janus" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="opsmode" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=build /out/janus /usr/local/bin/janus
# The chart's `command: ["janus"]` is looked up on this PATH.
ENV PATH=/usr/local/bin:/usr/bin:/bin
# Numeric, so that runAsNonRoot can verify it; the chart's runAsUser/runAsGroup are the same.
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/janus"]
CMD ["--help"]
