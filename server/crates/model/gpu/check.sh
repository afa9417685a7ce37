#!/usr/bin/env bash
# Every GPU check of the model crate, as ONE device call (<= 8 minutes from a bare machine
# with CUDA 13, PyTorch and transformers, no Rust). Run from the repo root:
#
#   bash server/crates/model/gpu/check.sh [gpu-bin]
#
# gpu-bin/ holds binaries built with the cuda feature on a machine with the CUDA toolkit
# (server/crates/model/gpu/build.sh makes and collects them; carry the folder):
#   glm-bench, golden, glm4moelite_golden (integration test binaries), glm_model (lib tests).
# Prints: the goldens on cuda:0 (f32 within 1e-3, bf16 within 6e-2, greedy tokens equal),
# batch == solo and chunked == one-shot on the device, the paged-attention kernel against its
# Rust reference on the device, and glm-bench on random weights of real shapes at batch
# 1/8/64 against the HBM bound and transformers on the same GPU and weights.
set -uo pipefail
BIN=${1:-gpu-bin}
OUT=${OUT:-/tmp/glm-gpu-out}
mkdir -p "$OUT"
export GLM_FIXTURES="$PWD/server/fixtures" GLM_TEST_DEVICE=cuda:0 RUST_LOG=warn
step() { printf '\n=== %s (%s)\n' "$1" "$(date -u +%H:%M:%S)"; }
fail=0
run() { timeout "$1" "${@:2}" || { echo "FAILED ($?): ${*:2}"; fail=1; }; }

step "device"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv

for dtype in float32 auto; do
  step "goldens, batch == solo, chunked == one-shot on cuda:0 ($dtype)"
  for t in golden glm4moelite_golden; do
    GLM_TEST_DTYPE=$dtype run 120 "$BIN/$t" --test-threads 1 --nocapture
  done
done

step "paged-attention kernel vs its Rust reference on cuda:0"
run 60 "$BIN/glm_model" paged --test-threads 1 --nocapture

HBM=${HBM_GBPS:-3350}
bench() { # name arch layers
  local dir=/tmp/rand-$1
  step "random $2 weights, $3 layers ($1)"
  run 240 python3 server/crates/model/gpu/random_model.py --arch "$2" --layers "$3" --out "$dir"
  run 120 "$BIN/glm-bench" --model "$dir" --device cuda:0 --batches 1,8,64 \
    --prompt-len 128 --decode-steps 32 --batch-prompt-len 32 --hbm-gbps "$HBM" --repeat 1
  run 120 python3 server/crates/model/benches/hf_baseline.py --model "$dir" --device cuda \
    --dtype bfloat16 --batches 1,8,64 --prompt-len 128 --decode-steps 32
  rm -rf "$dir"
}
# The whole of GLM-4.7-Flash (47 layers, ~60 GB of bf16) does not fit the machine's 64 GiB
# disk beside the rest; a layer is a layer: per-layer figures carry to the full depth.
bench flash flash "${FLASH_LAYERS:-12}"
bench air air "${AIR_LAYERS:-4}"

step "done: $([ $fail = 0 ] && echo all passed || echo SOME FAILED)"
exit $fail
