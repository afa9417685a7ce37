//! glm-crds: the `GlmDeployment` custom resource (`serving.glm.dev/v1alpha1`, short name `glmd`)
//! and the constants the operator, the examples and the e2e tests share.
//!
//! # Public API
//!
//! | item | what |
//! |---|---|
//! | [`GlmDeployment`] | the resource (kube `CustomResource`); `GlmDeployment::crd()` via [`kube::CustomResourceExt`] |
//! | [`GlmDeploymentSpec`] | `.spec`: [`ModelSpec`] (+ [`DownloadSpec`], [`SecretKeyRef`]), [`ServerSpec`] ([`ToolCallParser`], [`ReasoningParser`], [`Dtype`]), [`ResourcesSpec`], [`CacheSpec`] ([`AccessMode`]), `replicas`, [`AutoscalingSpec`], [`RolloutSpec`] |
//! | [`GlmDeploymentStatus`] | `.status`: conditions, replica counts, `resolvedRevision`, [`ModelStatus`] ([`ModelPhase`]), `endpoint`, [`AutoscalingStatus`], rollout revisions |
//! | [`crd_yaml`] | the CRD as YAML, exactly what `cargo run -p glm-crds --bin crdgen` prints and `crds/glmdeployment.yaml` holds |
//! | [`model_dir`] | `/models/OWNER--NAME` for a repo (the contract's cache layout) |
//! | constants | [`API_GROUP`], [`API_VERSION`], [`KIND`], [`FIELD_MANAGER`], [`labels`], [`conditions`], [`reasons`], defaults |
//! | `validate` (feature `validate`) | `validate::validate_object(crd_yaml: &str, obj: &serde_json::Value) -> Result<Vec<String>, SchemaError>` (empty = valid), `validate_glm_deployment(obj)`, `validate_object_with_crd(&crd, obj)`, `validate_against_schema(&schema, obj) -> Vec<String>`: check an object as the apiserver would (CEL rules after defaulting, types, required, unknown fields, enums, minimums, patterns); every message starts with the field path |
//!
//! Field names are camelCase in YAML (`spec.server.toolCallParser`); the Rust fields are the
//! snake_case equivalents.

mod spec;
mod status;

#[cfg(feature = "validate")]
pub mod validate;

pub use spec::*;
pub use status::*;

use kube::CustomResourceExt;

/// API group of the resource.
pub const API_GROUP: &str = "serving.glm.dev";
/// API version (without group).
pub const API_VERSION: &str = "v1alpha1";
/// Kind.
pub const KIND: &str = "GlmDeployment";
/// Plural resource name.
pub const PLURAL: &str = "glmdeployments";
/// The one server-side-apply field manager for every write the operator makes.
pub const FIELD_MANAGER: &str = "glm-operator";
/// Image used when `spec.server.image` is empty (the operator's `--default-image` wins).
pub const DEFAULT_SERVER_IMAGE: &str = "ghcr.io/glm-dev/glm-server:0.1.0";
/// Extended resource requested for GPUs unless `spec.resources.gpuResourceName` says otherwise.
pub const DEFAULT_GPU_RESOURCE: &str = "nvidia.com/gpu";
/// Port (named `http`) the server listens on and the Service exposes.
pub const SERVER_PORT: i32 = 8000;
/// Where the cache volume is mounted, in the download Job and (read-only) in the server.
pub const MODELS_MOUNT: &str = "/models";
/// Reserved `spec.model.repo` for the built-in deterministic demo model (`glm-server serve
/// --model demo`): no cache claim, no download Job; for CPU clusters, tests and trials.
pub const DEMO_REPO: &str = "glm-dev/demo";
/// `--model` value, and `status.resolvedRevision`, of the built-in demo model.
pub const DEMO_MODEL: &str = "demo";

/// Label keys and values put on every child object; the selector uses `instance` + `deployment`.
pub mod labels {
    /// `app.kubernetes.io/name`.
    pub const NAME: &str = "app.kubernetes.io/name";
    /// Value of [`NAME`] on every object the operator creates.
    pub const NAME_VALUE: &str = "glm-server";
    /// `app.kubernetes.io/instance`: the GlmDeployment's name.
    pub const INSTANCE: &str = "app.kubernetes.io/instance";
    /// `app.kubernetes.io/managed-by`.
    pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
    /// Value of [`MANAGED_BY`].
    pub const MANAGED_BY_VALUE: &str = "glm-operator";
    /// `app.kubernetes.io/component`: `server`, `download` or `cache`.
    pub const COMPONENT: &str = "app.kubernetes.io/component";
    /// `serving.glm.dev/deployment`: the GlmDeployment's name.
    pub const DEPLOYMENT: &str = "serving.glm.dev/deployment";
    /// `serving.glm.dev/revision`: the resolved commit a server pod or download Job serves.
    pub const REVISION: &str = "serving.glm.dev/revision";
    /// `serving.glm.dev/download-key`: short hash of what a download Job fetches.
    pub const DOWNLOAD_KEY: &str = "serving.glm.dev/download-key";
}

/// Annotation keys.
pub mod annotations {
    /// On a download Job: `metadata.generation` of the GlmDeployment that created it, so a failed
    /// Job is retried once the spec changes and never in a loop.
    pub const GENERATION: &str = "serving.glm.dev/generation";
    /// On a download Job: the requested revision (branch, tag or sha).
    pub const REQUESTED_REVISION: &str = "serving.glm.dev/requested-revision";
}

/// Condition types in `status.conditions` (kstatus-compatible).
pub mod conditions {
    /// Serving: enough ready replicas on the current model.
    pub const READY: &str = "Ready";
    /// Something is changing (download, rollout, scaling).
    pub const PROGRESSING: &str = "Progressing";
    /// The spec cannot be honoured or a step failed; needs attention.
    pub const DEGRADED: &str = "Degraded";
    /// The requested model revision is downloaded and verified in the cache.
    pub const MODEL_READY: &str = "ModelReady";
}

/// Stable CamelCase reasons, used in conditions and Events (tests and users grep for them).
pub mod reasons {
    pub const INVALID_SPEC: &str = "InvalidSpec";
    pub const CACHE_CLAIM_NOT_FOUND: &str = "CacheClaimNotFound";
    pub const CHILD_REJECTED: &str = "ChildRejected";
    pub const DOWNLOAD_PENDING: &str = "DownloadPending";
    pub const DOWNLOADING: &str = "Downloading";
    pub const DOWNLOAD_STARTED: &str = "DownloadStarted";
    pub const DOWNLOAD_SUCCEEDED: &str = "DownloadSucceeded";
    pub const DOWNLOAD_FAILED: &str = "DownloadFailed";
    pub const DOWNLOAD_RETRIED: &str = "DownloadRetried";
    pub const MODEL_READY: &str = "ModelReady";
    pub const WAITING_FOR_MODEL: &str = "WaitingForModel";
    pub const ROLLING_OUT: &str = "RollingOut";
    /// Only the pod count of the current revision changes (Ready stays True).
    pub const SCALING: &str = "Scaling";
    /// A pod waits for the scheduler (the message is the scheduler's).
    pub const UNSCHEDULABLE: &str = "Unschedulable";
    /// The server cannot run what the spec asks for (e.g. tensor parallelism).
    pub const UNSUPPORTED_BY_SERVER: &str = "UnsupportedByServer";
    pub const REPLICAS_READY: &str = "ReplicasReady";
    pub const REPLICAS_NOT_READY: &str = "ReplicasNotReady";
    pub const PROGRESS_DEADLINE_EXCEEDED: &str = "ProgressDeadlineExceeded";
    pub const SCALED_TO_ZERO: &str = "ScaledToZero";
    pub const AS_EXPECTED: &str = "AsExpected";
    pub const RECONCILED: &str = "Reconciled";
}

/// The CRD rendered as YAML: what `crdgen` prints and `crds/glmdeployment.yaml` holds.
pub fn crd_yaml() -> Result<String, serde_yaml::Error> {
    serde_yaml::to_string(&GlmDeployment::crd())
}

/// Cache directory of a repo per docs/contract.md: `/models/OWNER--NAME`.
pub fn model_dir(repo: &str) -> String {
    format!("{MODELS_MOUNT}/{}", repo.replace('/', "--"))
}
