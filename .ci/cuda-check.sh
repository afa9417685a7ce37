#!/usr/bin/env bash
# Compile-checks (and lints) glm-model's `cuda` feature on a machine without a GPU: candle's
# and cudarc's build scripts need nvcc, which comes from PyPI (../shared/reference/TOOLCHAIN.md).
# A separate target dir keeps the feature switch from rebuilding the main one.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv-cuda
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q --disable-pip-version-check \
  'nvidia-cuda-nvcc==13.5.37' 'nvidia-cuda-runtime==13.5.*' nvidia-cuda-cccl 'nvidia-cuda-crt==13.5.*'
cu=$(echo "$PWD/$venv"/lib/python3*/site-packages/nvidia/cu13)
export PATH="$cu/bin:$PATH" CUDA_HOME="$cu" CUDA_PATH="$cu" CUDARC_CUDA_VERSION=13040 CUDA_COMPUTE_CAP=90
cargo clippy -p glm-model --features cuda --all-targets --target-dir target/cuda-check -- -D warnings
