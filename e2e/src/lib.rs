//! glm-e2e: checks of how platform teams install and run glm-operator.
//!
//! - [`manifest`]: offline type checks of rendered manifests (Helm chart output, kustomize
//!   output, examples): every object must parse as its Kubernetes type with no unknown field;
//!   GlmDeployments are also validated against the CRD schema and its CEL rules.
//! - [`kustomize`]: the small subset of kustomize the GitOps examples use, so the examples
//!   test runs without kubectl (and is cross-checked against `kubectl kustomize` when present).
//! - [`tools`]: finds helm and kubectl (`GLM_HELM`, `GLM_KUBECTL`, `./.tools/bin`, `PATH`).
//! - [`cluster`]: the black-box harness for the end-to-end tests in `tests/cluster.rs`, which
//!   run against the cluster in `KUBECONFIG` when `GLM_E2E=1` and skip with a message otherwise.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod cluster;
pub mod kustomize;
pub mod manifest;
pub mod mistakes;
pub mod tools;
pub mod validate;

use std::path::PathBuf;

/// The workspace root (this crate lives in `<root>/e2e`).
pub fn workspace_root() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.parent().map(PathBuf::from).unwrap_or(here)
}
