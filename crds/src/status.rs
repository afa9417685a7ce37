//! `GlmDeployment.status`: what the operator observed. Written only by the operator, with
//! server-side apply on the status subresource.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Observed state.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GlmDeploymentStatus {
    /// `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Progressing`, `Degraded`, `ModelReady` (see [`crate::conditions`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Server pods (the scale subresource reads this).
    #[serde(default)]
    pub replicas: i32,
    /// Server pods passing `/ready`.
    #[serde(default)]
    pub ready_replicas: i32,
    /// Server pods on the current pod template.
    #[serde(default)]
    pub updated_replicas: i32,
    /// Label selector of the server pods (the scale subresource reads this).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Commit sha of the model the server Deployment points at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_revision: Option<String>,
    /// Download progress of the requested revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelStatus>,
    /// In-cluster URL of the OpenAI-compatible API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Last autoscaling decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<AutoscalingStatus>,
    /// Template revision (hash of model, image and arguments; pod template annotation
    /// `serving.glm.dev/template-revision`) all ready pods run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_revision: Option<String>,
    /// Template revision the Deployment's pod template has (differs from current while
    /// rolling out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_revision: Option<String>,
    /// Last template revision that was fully rolled out and Ready (rollback target).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_ready_revision: Option<String>,
    /// Template revision whose rollout missed its deadline and was rolled back; not retried while the
    /// spec still names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_revision: Option<String>,
    /// Phase of the rollout state machine (WaitingForWeights, Rolling, OneAtATime,
    /// RollingBack, Complete, Failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout_phase: Option<String>,
}

/// Download state of the requested revision.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelStatus {
    /// Where the download is.
    pub phase: ModelPhase,
    /// Requested revision (branch, tag or sha) this status is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_revision: Option<String>,
    /// Commit sha the requested revision resolved to (once downloaded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// Verified directory in the cache (once downloaded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Name of the download Job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_name: Option<String>,
    /// Times the Job was run again because its result was lost (capped; then Degraded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_reruns: Option<i32>,
    /// Bytes downloaded so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_done: Option<i64>,
    /// Bytes of the whole revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_total: Option<i64>,
    /// Human-readable detail (progress, or the error and what to do).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Download phases.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ModelPhase {
    /// Job created, no pod running yet.
    #[default]
    Pending,
    /// Job pod running.
    Downloading,
    /// Verified in the cache.
    Ready,
    /// Job failed; see `message`.
    Failed,
}

/// Last autoscaling decision.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutoscalingStatus {
    /// Replicas the autoscaler wants.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_replicas: Option<i32>,
    /// Total load (waiting + running requests) at the last decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_metric: Option<f64>,
    /// When replicas last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scale_time: Option<Time>,
    /// Why (stable CamelCase).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl GlmDeploymentStatus {
    /// The condition of the given type, if present.
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }

    /// Whether the condition of the given type is `True`.
    pub fn is_true(&self, type_: &str) -> bool {
        self.condition(type_).is_some_and(|c| c.status == "True")
    }
}
