#!/usr/bin/env bash
# A local Kubernetes for the end-to-end tests: the real v1.28.7 control plane and the stand-in
# kubelet from ../shared/k8s (see its README), pods run as local processes on 127.0.0.x with
# the glm-server binary of this workspace standing in for the server image.
#
#   e2e/local-cluster.sh up      start (idempotent; a running cluster is reused), print KUBECONFIG
#   e2e/local-cluster.sh down    stop the stand-in kubelet (its pods) and the control plane
#   e2e/local-cluster.sh status  what runs
#
# The e2e crate runs `up` itself when GLM_E2E=1 and no cluster is configured (no KUBECONFIG,
# no ~/.kube/config). Environment:
#   KUBEBUILDER_ASSETS   kube-apiserver/-controller-manager/-scheduler binaries, or the
#                        ../shared/k8s folder (default) whose controlplane.sh unpacks its own
#   GLM_E2E_STATE        state folder (default target/e2e-cluster): etcd, PKI, pod logs, PVCs
#   GLM_SERVER_BIN       the binary behind the server image (default target/debug/glm-server)
#   API_PORT, ETCD_PORT, ETCD_PEER_PORT   passed to controlplane.sh (6443, 2379, 2380)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${GLM_E2E_STATE:-$ROOT/target/e2e-cluster}"
K8S_DIR="$ROOT/../shared/k8s"
ASSETS="${KUBEBUILDER_ASSETS:-}"
if [[ -n "$ASSETS" && -x "$ASSETS/controlplane.sh" ]]; then
  # The shared folder itself: its script unpacks the compressed binaries.
  K8S_DIR="$ASSETS"
  ASSETS=""
fi
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
SERVER_BIN="${GLM_SERVER_BIN:-$TARGET/debug/glm-server}"
export CP_DIR="$STATE/cp"
KUBECONFIG_PATH="$CP_DIR/admin.kubeconfig"
KUBELET_STATE="$STATE/standin"
KUBELET_PID="$STATE/standin.pid"
KUBELET_OUT="$STATE/standin.out"
NODE="glm-e2e-0"

log() { printf '[local-cluster] %s\n' "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }

controlplane() {
  if [[ -n "$ASSETS" ]]; then
    KUBEBUILDER_ASSETS="$ASSETS" "$K8S_DIR/controlplane.sh" "$@"
  else
    env -u KUBEBUILDER_ASSETS "$K8S_DIR/controlplane.sh" "$@"
  fi
}

kubelet_running() {
  local p
  p="$(cat "$KUBELET_PID" 2>/dev/null)" && kill -0 "$p" 2>/dev/null
}

up() {
  [[ -x "$K8S_DIR/controlplane.sh" ]] || die "no control plane scripts in $K8S_DIR (set KUBEBUILDER_ASSETS)"
  [[ -x "$SERVER_BIN" ]] || die "$SERVER_BIN missing: run \`cargo build -p glm-server --bin glm-server\` (or set GLM_SERVER_BIN)"
  mkdir -p "$STATE"
  if ! KUBECONFIG="$KUBECONFIG_PATH" kubectl get --raw /readyz >/dev/null 2>&1; then
    log "starting the control plane (state in $CP_DIR)"
    # 9>&-: the daemons must not inherit the lock, or it is never released.
    controlplane start >"$STATE/controlplane.out" 2>&1 9>&- || {
      tail -20 "$STATE/controlplane.out" >&2
      die "control plane did not start; logs in $CP_DIR/logs"
    }
  fi
  if ! kubelet_running; then
    log "starting the stand-in kubelet (node $NODE, state in $KUBELET_STATE)"
    : >"$KUBELET_OUT"
    # The server image and the `glm-server` command both run this workspace's binary; the
    # server binds 0.0.0.0, rewritten to each pod's own loopback IP.
    setsid python3 -u "$K8S_DIR/standin_kubelet.py" \
      --kubeconfig "$KUBECONFIG_PATH" \
      --node "$NODE:cpu=16,memory=64Gi,pods=110,nvidia.com/gpu=4" \
      --image "*glm-server*=$SERVER_BIN" \
      --exec-map "glm-server=$SERVER_BIN" \
      --bind-any-to-pod-ip \
      --pass-env 'GLM_*' --pass-env 'HF_*' \
      --backoff-base 1 --backoff-max 10 \
      --state-dir "$KUBELET_STATE" \
      --on-exit delete \
      >"$KUBELET_OUT" 2>"$STATE/standin.err" </dev/null 9>&- &
    echo $! >"$KUBELET_PID"
    for _ in $(seq 1 120); do
      grep -q 'STANDIN READY' "$KUBELET_OUT" 2>/dev/null && break
      kubelet_running || { tail -20 "$STATE/standin.err" >&2; die "stand-in kubelet exited"; }
      sleep 0.5
    done
    grep -q 'STANDIN READY' "$KUBELET_OUT" || die "stand-in kubelet not ready after 60 s"
  fi
  echo "export KUBECONFIG=$KUBECONFIG_PATH"
}

down() {
  if kubelet_running; then
    local p
    p="$(cat "$KUBELET_PID")"
    kill -INT "$p"
    for _ in $(seq 1 120); do kill -0 "$p" 2>/dev/null || break; sleep 0.25; done
    kill -0 "$p" 2>/dev/null && kill -KILL "$p"
    log "stand-in kubelet (pid $p) stopped"
  fi
  rm -f "$KUBELET_PID"
  controlplane stop 9>&- || true
}

status() {
  if kubelet_running; then echo "standin-kubelet: running pid $(cat "$KUBELET_PID")"; else echo "standin-kubelet: not running"; fi
  controlplane status
}

cmd="${1:-up}"
mkdir -p "$STATE"
# One caller at a time: test processes start in parallel and may all ask for the cluster.
exec 9>"$STATE/.lock"
flock 9
case "$cmd" in
  up) up ;;
  down) down ;;
  status) status ;;
  kubeconfig) echo "$KUBECONFIG_PATH" ;;
  *) echo "usage: $0 up|down|status|kubeconfig" >&2; exit 2 ;;
esac
