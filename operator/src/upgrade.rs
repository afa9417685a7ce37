//! Zero-drop rolling upgrades: a pure state machine from observed Deployment, ReplicaSets and
//! Pods to the next step, the strategy to render, status fields, conditions and Events.
//!
//! A *revision* is an opaque name for one rendered pod template (model commit, image,
//! server arguments): [`template_revision`] computes it, and the controller stores it in
//! the pod template's [`TEMPLATE_REVISION_ANNOTATION`], from where the Deployment controller
//! copies it into every ReplicaSet and Pod.
//!
//! # Phases
//! 1. **WaitingForWeights**: the spec names a revision whose weights are not yet downloaded
//!    and verified. The Deployment keeps its current template (old pods keep serving).
//! 2. **Rolling**: the template is applied; Kubernetes replaces pods under
//!    `maxSurge`/`maxUnavailable`. New pods receive traffic only once `/ready` passes.
//! 3. **OneAtATime**: a new pod stays Pending as Unschedulable (no spare GPU for the surge)
//!    for `surge_fallback_after` while old pods still hold GPUs: the strategy switches to
//!    maxSurge 0 / maxUnavailable 1 so old pods are replaced one at a time instead of
//!    deadlocking. Sticky until the rollout completes.
//! 4. **RollingBack**: a new pod was not ready within `progress_deadline` (or the Deployment
//!    reports ProgressDeadlineExceeded): the template of the last revision that was Ready is
//!    restored from its ReplicaSet, the failed revision is remembered and not retried until
//!    the spec names another revision.
//! 5. **Complete** / **Failed** (deadline exceeded with nothing to roll back to).
//!
//! # Integration (controller call sites)
//! Wired in `reconcile::converge` with the glue in `reconcile::rollout`. In reconcile, after the download Job's state is known and before the Deployment is
//! applied: build a [`RolloutInput`] (see [`observe`] for the k8s conversions) with the
//! memory from status, call [`plan`], then
//! * render the pod template per [`RolloutPlan::template`] (`Spec`: from the GlmDeployment,
//!   with [`TEMPLATE_REVISION_ANNOTATION`] = [`template_revision`] of it; `Current`: the
//!   observed Deployment's; `ReplicaSet(name)`: [`rollback_template`] of that ReplicaSet)
//!   and the strategy per [`RolloutPlan::strategy`] via [`deployment_strategy`] (always, so
//!   a fallback and its end both land);
//! * store [`RolloutPlan::memory`] (status: currentRevision, updateRevision,
//!   lastReadyRevision; plus `failedRevision` and `phase`, e.g. as status fields or one
//!   annotation holding the serde JSON of [`RolloutMemory`]);
//! * set the `Progressing` and `Degraded` conditions from the plan and publish
//!   [`RolloutPlan::event`] when present (emitted on phase transitions only).

pub mod observe;
mod plan;

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use serde::{Deserialize, Serialize};

pub use observe::{
    deployment_strategy, rollback_template, template_revision, TEMPLATE_REVISION_ANNOTATION,
};
pub use plan::plan;

/// A rollout budget as Kubernetes takes it: a count or a percentage of replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    Count(u32),
    Percent(u32),
}

impl Budget {
    pub fn is_zero(&self) -> bool {
        matches!(self, Self::Count(0) | Self::Percent(0))
    }

    /// Parses `IntOrString` ("25%" or 2); negative or malformed values are errors.
    pub fn from_int_or_string(v: &IntOrString) -> Result<Self, UpgradeError> {
        match v {
            IntOrString::Int(n) => u32::try_from(*n)
                .map(Self::Count)
                .map_err(|_| UpgradeError::Budget(n.to_string())),
            IntOrString::String(s) => {
                let parsed = match s.strip_suffix('%') {
                    Some(p) => p.trim().parse().map(Self::Percent),
                    None => s.trim().parse().map(Self::Count),
                };
                parsed.map_err(|_| UpgradeError::Budget(s.clone()))
            }
        }
    }

    pub fn to_int_or_string(self) -> IntOrString {
        match self {
            Self::Count(n) => IntOrString::Int(i32::try_from(n).unwrap_or(i32::MAX)),
            Self::Percent(p) => IntOrString::String(format!("{p}%")),
        }
    }
}

/// `spec.rollout` as the state machine needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutPolicy {
    pub max_surge: Budget,
    pub max_unavailable: Budget,
    pub progress_deadline: Duration,
    /// How long a surge pod may stay Unschedulable before falling back to one at a time
    /// (gives a cluster autoscaler a chance to add a GPU node first).
    pub surge_fallback_after: Duration,
}

impl Default for RolloutPolicy {
    fn default() -> Self {
        Self {
            max_surge: Budget::Count(1),
            max_unavailable: Budget::Count(0),
            progress_deadline: Duration::from_secs(3600),
            surge_fallback_after: Duration::from_secs(60),
        }
    }
}

impl TryFrom<&glm_crds::RolloutSpec> for RolloutPolicy {
    type Error = UpgradeError;

    fn try_from(spec: &glm_crds::RolloutSpec) -> Result<Self, Self::Error> {
        let policy = Self {
            max_surge: Budget::from_int_or_string(&spec.max_surge)?,
            max_unavailable: Budget::from_int_or_string(&spec.max_unavailable)?,
            progress_deadline: Duration::from_secs(
                u64::try_from(spec.progress_deadline_seconds).unwrap_or(0),
            ),
            ..Self::default()
        };
        if policy.max_surge.is_zero() && policy.max_unavailable.is_zero() {
            return Err(UpgradeError::BothZero);
        }
        Ok(policy)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpgradeError {
    #[error("invalid rollout budget {0:?}: want a non-negative count or percentage")]
    Budget(String),
    #[error("maxSurge and maxUnavailable cannot both be 0")]
    BothZero,
}

impl UpgradeError {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Budget(_) => "invalid_budget",
            Self::BothZero => "both_budgets_zero",
        }
    }
}

/// Weights of the desired revision in the model cache (the download Job's outcome).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WeightsState {
    /// Downloaded and verified (or the revision's model did not change).
    Ready,
    Pending,
    Failed {
        message: String,
    },
}

/// The Deployment as observed (see [`observe::observe_deployment`]).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ObservedDeployment {
    /// [`TEMPLATE_REVISION_ANNOTATION`] of its pod template.
    pub template_revision: Option<String>,
    pub generation: i64,
    pub observed_generation: i64,
    /// `spec.replicas`.
    pub replicas: u32,
    /// `status.replicas`: all pods, old and new.
    pub status_replicas: u32,
    pub updated_replicas: u32,
    pub ready_replicas: u32,
    pub available_replicas: u32,
    /// The Deployment's own Progressing condition says ProgressDeadlineExceeded.
    pub deadline_exceeded: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ObservedReplicaSet {
    pub name: String,
    /// [`TEMPLATE_REVISION_ANNOTATION`] of its pod template.
    pub revision: Option<String>,
    /// The `pod-template-hash` label, which its pods carry too.
    pub pod_template_hash: String,
    /// `deployment.kubernetes.io/revision`.
    pub k8s_revision: u64,
    pub replicas: u32,
    pub ready_replicas: u32,
    pub created: Timestamp,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ObservedPod {
    pub name: String,
    pub pod_template_hash: Option<String>,
    /// `status.phase` ("Pending", "Running", ...).
    pub phase: String,
    pub ready: bool,
    /// PodScheduled=False with reason Unschedulable: since when, and the scheduler's message.
    pub unschedulable: Option<(Timestamp, String)>,
    pub created: Timestamp,
    pub terminating: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    WaitingForWeights,
    Rolling,
    OneAtATime,
    RollingBack,
    Complete,
    /// The template is the current (completed) revision and only the pod count changes: a
    /// scale, not a rollout. Ready stays True while some pods of the revision are available.
    Scaling,
    Failed,
}

/// What the state machine remembers between reconciles (persisted in status).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutMemory {
    /// Revision all pods ran after the last completed rollout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_revision: Option<String>,
    /// Revision being rolled out (equals current when complete).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_revision: Option<String>,
    /// Last revision whose rollout completed with every replica ready: the rollback target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_ready_revision: Option<String>,
    /// Revision that missed its deadline and was rolled back; not retried while the spec
    /// still names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_revision: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
}

pub struct RolloutInput<'a> {
    /// Revision the spec asks for ([`template_revision`] of the template rendered from it).
    pub desired_revision: &'a str,
    pub weights: WeightsState,
    pub deployment: Option<&'a ObservedDeployment>,
    pub replica_sets: &'a [ObservedReplicaSet],
    pub pods: &'a [ObservedPod],
    pub policy: &'a RolloutPolicy,
    pub memory: &'a RolloutMemory,
    pub now: Timestamp,
}

/// What changes this reconcile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Weights of the revision are not ready: leave the Deployment's template alone.
    WaitForWeights {
        revision: String,
    },
    /// Put the spec's template (this revision) into the Deployment.
    ApplyTemplate {
        revision: String,
    },
    /// A rollout is under way; nothing to change.
    Wait,
    /// Switch the strategy to maxSurge 0 / maxUnavailable 1 (see module docs).
    FallbackNoSurge {
        reason: String,
    },
    /// Restore the template of `replica_set`, which runs `to_revision`.
    Rollback {
        to_revision: String,
        replica_set: String,
    },
    Done,
}

/// Where the Deployment's pod template comes from this reconcile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateSource {
    /// Render it from the GlmDeployment spec.
    Spec,
    /// Keep the Deployment's current template; with no Deployment, do not create it yet.
    Current,
    /// Copy this ReplicaSet's `spec.template` (drop its `pod-template-hash` label).
    ReplicaSet(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Strategy {
    pub max_surge: Budget,
    pub max_unavailable: Budget,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConditionUpdate {
    /// `Progressing` or `Degraded`.
    pub type_: &'static str,
    pub status: bool,
    pub reason: &'static str,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventNote {
    pub warning: bool,
    pub reason: &'static str,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutPlan {
    pub action: Action,
    pub phase: Phase,
    pub template: TemplateSource,
    pub strategy: Strategy,
    pub memory: RolloutMemory,
    pub progressing: ConditionUpdate,
    pub degraded: ConditionUpdate,
    pub event: Option<EventNote>,
}

/// Stable condition and Event reasons of rollouts.
pub mod reasons {
    pub use glm_crds::reasons::{
        AS_EXPECTED, DOWNLOAD_FAILED, PROGRESS_DEADLINE_EXCEEDED, ROLLING_OUT, SCALING,
        UNSCHEDULABLE, WAITING_FOR_MODEL,
    };
    pub const ROLLOUT_STARTED: &str = "RolloutStarted";
    pub const ROLLOUT_COMPLETE: &str = "RolloutComplete";
    pub const SURGE_UNSCHEDULABLE: &str = "SurgeUnschedulable";
    pub const ROLLING_BACK: &str = "RollingBack";
    pub const ROLLED_BACK: &str = "RolledBack";
    pub const NO_ROLLBACK_TARGET: &str = "NoRollbackTarget";
}

#[cfg(test)]
mod tests;
