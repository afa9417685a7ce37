#!/usr/bin/env bash
# Builds the binaries gpu/check.sh runs, with the cuda feature, into gpu-bin/ (an ignored
# folder to carry to the GPU machine). Needs the CUDA toolkit's libraries to link (libcuda,
# cuBLAS, cuRAND, NVRTC): the nvidia/cuda -devel image (see the Dockerfile's builder-cuda).
set -euo pipefail
cd "$(dirname "$0")/../../../.."
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
mkdir -p gpu-bin
msg=$(cargo test --release -p glm-model --features cuda --no-run --message-format json)
cargo build --release -p glm-model --features cuda --bin glm-bench
cp target/release/glm-bench gpu-bin/
# Test executables: golden, glm4moelite_golden and the lib's unit tests (glm_model).
echo "$msg" | python3 -c '
import json, shutil, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable"):
        name = m["target"]["name"]
        if name in ("golden", "glm4moelite_golden", "glm_model"):
            shutil.copy(m["executable"], "gpu-bin/" + name)
            print("gpu-bin/" + name)
'
