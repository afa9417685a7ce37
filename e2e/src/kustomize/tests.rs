use std::fs;

use serde_json::json;

use super::*;

fn write(dir: &Path, name: &str, text: &str) {
    let p = dir.join(name);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, text).unwrap();
}

const BASE_OBJ: &str = "apiVersion: serving.glm.dev/v1alpha1
kind: GlmDeployment
metadata:
  name: glm
spec:
  model:
    repo: zai-org/GLM-4.5-Air
  server:
    extraArgs: [\"--a\"]
  replicas: 1
";

#[test]
fn overlay_applies_patches_namespace_labels_and_annotations() {
    let tmp = std::env::temp_dir().join(format!("glm-kustomize-{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    write(&tmp, "base/glm.yaml", BASE_OBJ);
    write(&tmp, "base/kustomization.yaml", "resources: [glm.yaml]\n");
    write(
        &tmp,
        "overlay/kustomization.yaml",
        "apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources: [../base]
namespace: prod
labels:
  - pairs: {env: prod}
commonAnnotations: {team: ml}
patches:
  - path: more.yaml
  - target: {kind: GlmDeployment, name: glm}
    patch: |-
      - op: replace
        path: /spec/replicas
        value: 3
",
    );
    write(
        &tmp,
        "overlay/more.yaml",
        "apiVersion: serving.glm.dev/v1alpha1
kind: GlmDeployment
metadata:
  name: glm
spec:
  model:
    revision: v2
  server:
    extraArgs: [\"--b\"]
",
    );
    let out = build(&tmp.join("overlay")).unwrap();
    assert_eq!(out.len(), 1);
    let o = &out[0];
    assert_eq!(o["metadata"]["namespace"], "prod");
    assert_eq!(o["metadata"]["labels"]["env"], "prod");
    assert_eq!(o["metadata"]["annotations"]["team"], "ml");
    assert_eq!(o["spec"]["model"]["repo"], "zai-org/GLM-4.5-Air");
    assert_eq!(o["spec"]["model"]["revision"], "v2");
    // Lists are replaced, not appended, as kustomize does for custom resources.
    assert_eq!(o["spec"]["server"]["extraArgs"], json!(["--b"]));
    assert_eq!(o["spec"]["replicas"], 3);
    assert_eq!(find_kustomizations(&tmp).len(), 2);
    fs::remove_dir_all(&tmp).unwrap();
}

#[test]
fn unsupported_fields_and_unmatched_patches_are_errors() {
    let tmp = std::env::temp_dir().join(format!("glm-kustomize-bad-{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    write(&tmp, "a/glm.yaml", BASE_OBJ);
    write(
        &tmp,
        "a/kustomization.yaml",
        "resources: [glm.yaml]\nnamePrefix: x-\n",
    );
    assert_eq!(build(&tmp.join("a")).unwrap_err().kind(), "unsupported");
    write(
        &tmp,
        "b/kustomization.yaml",
        "resources: [../a/glm.yaml]\npatches:\n  - target: {kind: GlmDeployment, name: other}\n    patch: '{\"spec\": {\"replicas\": 2}}'\n",
    );
    assert_eq!(build(&tmp.join("b")).unwrap_err().kind(), "patch");
    fs::remove_dir_all(&tmp).unwrap();
}

#[test]
fn merge_patch_follows_rfc_7386() {
    let mut t = json!({"a": "b", "c": {"d": "e", "f": "g"}});
    merge_patch(&mut t, &json!({"a": "z", "c": {"f": null}}));
    assert_eq!(t, json!({"a": "z", "c": {"d": "e"}}));
}

#[test]
fn json6902_add_replace_remove() {
    let mut t = json!({"spec": {"l": [1, 2], "m": {"k": 1}}});
    json6902(
        &mut t,
        &[
            json!({"op": "add", "path": "/spec/l/-", "value": 3}),
            json!({"op": "replace", "path": "/spec/m/k", "value": 2}),
            json!({"op": "remove", "path": "/spec/l/0"}),
            json!({"op": "add", "path": "/spec/m/a~1b", "value": true}),
        ],
    )
    .unwrap();
    assert_eq!(
        t,
        json!({"spec": {"l": [2, 3], "m": {"k": 2, "a/b": true}}})
    );
    assert!(json6902(
        &mut t,
        &[json!({"op": "replace", "path": "/spec/m/zz", "value": 1})]
    )
    .is_err());
    assert!(json6902(
        &mut t,
        &[json!({"op": "move", "path": "/spec/m/k", "from": "/x"})]
    )
    .is_err());
}
