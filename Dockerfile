# syntax=docker/dockerfile:1.7
#
# One image holds both binaries:
#   glm-server    the inference server (entrypoint); the operator renders
#                 `glm-server serve ...` for server pods and `glm-server download ...` for
#                 download Jobs (docs/contract.md)
#   glm-operator  the operator; charts/glm-operator runs it with `command: ["glm-operator"]`
#
# CPU image (the default; runs the demo model and CPU inference):
#   docker build -t ghcr.io/glm-dev/glm-server:0.1.0 .
# GPU image (CUDA runtime base, candle built with the `cuda` feature):
#   docker build --build-arg VARIANT=cuda --build-arg CUDA_COMPUTE_CAP=90 \
#     -t ghcr.io/glm-dev/glm-server:0.1.0-cuda .
# ghcr.io/glm-dev/glm-server:0.1.0 is the default server image of the operator
# (glm_crds::DEFAULT_SERVER_IMAGE) and the image of the chart (values.yaml).

ARG VARIANT=cpu
ARG RUST_VERSION=1.95
ARG CUDA_VERSION=12.8.1
ARG UBUNTU_VERSION=22.04

# ---------------------------------------------------------------------------- builders
FROM rust:${RUST_VERSION}-slim-bookworm AS builder-cpu
WORKDIR /src
COPY . .
# Cache mounts keep the registry and target dir between builds; the binaries are copied
# out of the cache mount so later stages can see them.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p glm-server -p glm-operator --bin glm-server --bin glm-operator \
 && mkdir -p /out \
 && cp target/release/glm-server target/release/glm-operator /out/

# candle's CUDA kernels are compiled with nvcc at build time: a -devel base is required.
FROM nvidia/cuda:${CUDA_VERSION}-devel-ubuntu${UBUNTU_VERSION} AS builder-cuda
ARG RUST_VERSION
# 80 = A100, 89 = L40S/L4, 90 = H100/H200.
ARG CUDA_COMPUTE_CAP=90
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl build-essential pkg-config \
 && rm -rf /var/lib/apt/lists/*
RUN curl -sSf https://sh.rustup.rs \
    | sh -s -- -y --profile minimal --default-toolchain ${RUST_VERSION}
ENV PATH=/root/.cargo/bin:${PATH} \
    CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP}
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/root/.cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p glm-server -p glm-operator --bin glm-server --bin glm-operator --features glm-server/cuda \
 && mkdir -p /out \
 && cp target/release/glm-server target/release/glm-operator /out/

# ---------------------------------------------------------------------------- runtimes
FROM debian:bookworm-slim AS runtime-cpu
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*

# The -runtime image carries libcudart, cuBLAS and cuRAND, which candle links against.
FROM nvidia/cuda:${CUDA_VERSION}-runtime-ubuntu${UBUNTU_VERSION} AS runtime-cuda
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*
ENV NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility

# ---------------------------------------------------------------------------- final
FROM builder-${VARIANT} AS builder

FROM runtime-${VARIANT}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="glm-server" \
      org.opencontainers.image.description="GLM inference server and Kubernetes operator" \
      org.opencontainers.image.source="https://github.com/glm-dev/glm-operator" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"

# Non-root, with the uid/gid the chart's securityContext expects (10001). /models is the
# cache mount point (read-only in server pods, written by the download Job).
RUN groupadd --system --gid 10001 glm \
 && useradd --system --uid 10001 --gid glm --home-dir /home/glm --create-home \
      --shell /usr/sbin/nologin glm \
 && mkdir -p /models \
 && chown glm:glm /models

COPY --from=builder /out/glm-server /out/glm-operator /usr/local/bin/

ENV HOME=/home/glm \
    RUST_LOG=info
USER 10001:10001
WORKDIR /home/glm
EXPOSE 8000
# Both binaries handle SIGTERM themselves (the server drains), so no init shim is needed;
# the preStop hook the operator renders uses `sleep` from the base image.
ENTRYPOINT ["glm-server"]
CMD ["--help"]
