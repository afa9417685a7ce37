//! GlmDeployment validation against the committed CRD (`crds/glmdeployment.yaml`, the file
//! users `kubectl apply` and the chart ships a copy of), with glm-crds' validator: the
//! structural schema checks and the CEL `x-kubernetes-validations` rules, as the API server
//! would apply them on create.

use std::path::PathBuf;
use std::sync::OnceLock;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::Value;

/// Path of the committed CRD.
pub fn crd_path() -> PathBuf {
    crate::workspace_root()
        .join("crds")
        .join("glmdeployment.yaml")
}

fn committed_crd() -> Result<&'static CustomResourceDefinition, String> {
    static CRD: OnceLock<Result<CustomResourceDefinition, String>> = OnceLock::new();
    CRD.get_or_init(|| {
        let path = crd_path();
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        serde_yaml::from_str(&text).map_err(|e| format!("parsing {}: {e}", path.display()))
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// Validates one GlmDeployment document; `Err` carries every problem, `; `-separated, each
/// starting with the offending field's path.
pub fn validate_glm_deployment(doc: &Value) -> Result<(), String> {
    let crd = committed_crd()?;
    let errors = glm_crds::validate::validate_object_with_crd(crd, doc)
        .map_err(|e| format!("[{}] {e}", e.kind()))?;
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}
