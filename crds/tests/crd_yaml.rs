//! `crds/glmdeployment.yaml` must be exactly what `crdgen` prints.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;

const COMMITTED: &str = include_str!("../glmdeployment.yaml");

#[test]
fn committed_crd_yaml_is_current() {
    let generated = glm_crds::crd_yaml().unwrap();
    assert!(
        generated == COMMITTED,
        "crds/glmdeployment.yaml is stale; regenerate it with:\n    \
         cargo run -p glm-crds --bin crdgen > crds/glmdeployment.yaml"
    );
}

#[test]
fn crd_has_subresources_columns_and_short_name() {
    let crd: CustomResourceDefinition = serde_yaml::from_str(COMMITTED).unwrap();
    assert_eq!(
        crd.metadata.name.as_deref(),
        Some("glmdeployments.serving.glm.dev")
    );
    assert_eq!(crd.spec.scope, "Namespaced");
    assert_eq!(crd.spec.names.short_names, Some(vec!["glmd".to_string()]));
    let v = &crd.spec.versions[0];
    assert_eq!(v.name, "v1alpha1");
    let sub = v.subresources.as_ref().unwrap();
    assert!(sub.status.is_some());
    let scale = sub.scale.as_ref().unwrap();
    assert_eq!(scale.spec_replicas_path, ".spec.replicas");
    assert_eq!(scale.status_replicas_path, ".status.replicas");
    assert_eq!(
        scale.label_selector_path.as_deref(),
        Some(".status.selector")
    );
    let cols: Vec<&str> = v
        .additional_printer_columns
        .as_ref()
        .unwrap()
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(cols, ["Ready", "Replicas", "Model", "Revision", "Age"]);
    // No `$ref`: the apiserver only accepts inlined structural schemas.
    assert!(!COMMITTED.contains("$ref"));
}
