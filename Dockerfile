# syntax=docker/dockerfile:1
#
# Entrepot's two images, from one Cargo workspace:
#   --target entrepot           the runner (data plane), ENTRYPOINT /usr/local/bin/entrepot
#   --target entrepot-operator  the operator,            ENTRYPOINT /usr/local/bin/entrepot-operator
# scripts/build-images.sh builds and tags both; docs/images.md says what is in them.
#
# One Dockerfile rather than one per crate: the operator links the runner's library, so one
# builder stage compiles the shared dependency graph once for both images, and the build
# context has to be the workspace root either way.
#
# Base images are pinned by tag and digest. The builder's Debian release (bookworm) must be
# the runtime's (debian12): the binaries link against the builder's glibc, and
# tests/tests/images.rs checks the pairing. Bump both together.

ARG RUST_IMAGE=rust:1.95.0-slim-bookworm@sha256:d7482085ff5b415f84dba5647ae71606650bdef00db7aeb69f4b3d170c3e4082
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot@sha256:9dac0a79194e45a7da0158a9c6da57b217585af0786db3845d1f0ec1a0dd182f

# --- builder: both release binaries ------------------------------------------------------
FROM ${RUST_IMAGE} AS builder
ARG TARGETPLATFORM
WORKDIR /src
COPY . .
# Cache mounts keep the crates.io downloads and the target directory between builds (one
# target directory per platform: artifacts of two architectures must not mix). The
# binaries are copied out of the cache mount, which is not part of the image.
RUN --mount=type=cache,id=entrepot-cargo-registry,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,id=entrepot-cargo-git,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,id=entrepot-target-${TARGETPLATFORM},target=/src/target,sharing=locked \
    cargo build --release --locked -p entrepot -p entrepot-operator \
    && mkdir -p /out/data \
    && cp target/release/entrepot target/release/entrepot-operator /out/

# --- the runner --------------------------------------------------------------------------
FROM ${RUNTIME_IMAGE} AS entrepot
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="entrepot" \
      org.opencontainers.image.description="Entrepot runner: moves retail records from sources through a durable queue and mappings to targets" \
      org.opencontainers.image.source="https://github.com/entrepot-io/entrepot" \
      org.opencontainers.image.url="https://github.com/entrepot-io/entrepot" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="Entrepot maintainers" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=builder /out/entrepot /usr/local/bin/entrepot
# The queue's directory, owned by the runtime user, for `docker run` without a volume; in
# a pod the operator mounts the queue's volume claim here (--data-dir).
COPY --from=builder --chown=65532:65532 /out/data /var/lib/entrepot
# In a container the defaults are the data directory above and every interface; the
# operator passes all three as flags anyway.
ENV ENTREPOT_DATA_DIR=/var/lib/entrepot \
    ENTREPOT_LISTEN=0.0.0.0:8080 \
    ENTREPOT_ADMIN_LISTEN=0.0.0.0:9090
USER 65532:65532
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/entrepot"]
CMD ["--help"]

# --- the operator ------------------------------------------------------------------------
FROM ${RUNTIME_IMAGE} AS entrepot-operator
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="entrepot-operator" \
      org.opencontainers.image.description="Entrepot's Kubernetes operator: turns Connectors, Mappings, SyncFlows and ReconcileSchedules into runner workloads" \
      org.opencontainers.image.source="https://github.com/entrepot-io/entrepot" \
      org.opencontainers.image.url="https://github.com/entrepot-io/entrepot" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="Entrepot maintainers" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=builder /out/entrepot-operator /usr/local/bin/entrepot-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/entrepot-operator"]
CMD ["--help"]
