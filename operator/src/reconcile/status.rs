//! Pure status computation: observed children -> `GlmDeploymentStatus` with kstatus-style
//! conditions. `lastTransitionTime` only moves when a condition's status flips, so writing the
//! same observation twice is a no-op for the apiserver (no watch event, no reconcile loop).

use glm_crds::{conditions, reasons, GlmDeployment, GlmDeploymentStatus, ModelPhase, ModelStatus};
use k8s_openapi::{
    api::apps::v1::Deployment,
    apimachinery::pkg::apis::meta::v1::{Condition, Time},
    jiff::Timestamp,
};
use kube::ResourceExt;

use super::{
    deployment::ServedModel,
    download::{DownloadState, Progress},
    meta::{endpoint, selector_string},
};

/// A problem the user must fix (invalid spec, missing claim, rejected child).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub reason: &'static str,
    pub message: String,
    pub scope: ProblemScope,
}

/// What a problem says about the conditions besides Degraded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProblemScope {
    /// The spec cannot be honoured at all: every condition carries the problem.
    Spec,
    /// The API server refused a child: the spec and the model are not at fault, so Ready and
    /// ModelReady keep what was last observed; Degraded carries the server's message.
    Child,
    /// The server cannot run the spec (no Deployment is rendered), but the model is fetched:
    /// ModelReady follows the download.
    Server,
}

/// Everything the status is computed from.
#[derive(Clone, Debug)]
pub struct StatusInputs<'a> {
    pub glmd: &'a GlmDeployment,
    pub download: &'a DownloadState,
    /// The model the server Deployment points at, if any.
    pub served: Option<&'a ServedModel>,
    /// The Deployment as the apiserver returned it (with status), if applied.
    pub deployment: Option<&'a Deployment>,
    pub desired_replicas: i32,
    /// `status.autoscaling` (the autoscaler's last round; `None` when autoscaling is off).
    pub autoscaling: Option<glm_crds::AutoscalingStatus>,
    pub problem: Option<&'a Problem>,
    /// The rollout plan says only the pod count of the current revision changes.
    pub scaling: bool,
    pub now: Timestamp,
}

/// Rollout state of the server Deployment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rollout {
    /// No Deployment yet.
    Absent,
    /// All pods updated and available, no old pods left.
    Complete,
    /// Pods are being replaced, scaled or started.
    InProgress(String),
    /// The Deployment controller gave up (progressDeadlineSeconds).
    DeadlineExceeded(String),
}

/// Reads the rollout state of a Deployment against the desired replica count.
pub fn rollout_state(deployment: Option<&Deployment>, desired: i32) -> Rollout {
    let Some(d) = deployment else {
        return Rollout::Absent;
    };
    let Some(s) = &d.status else {
        return Rollout::InProgress("waiting for the Deployment controller".into());
    };
    if let Some(c) = s
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Progressing")
    {
        if c.status == "False" && c.reason.as_deref() == Some("ProgressDeadlineExceeded") {
            return Rollout::DeadlineExceeded(
                c.message
                    .clone()
                    .unwrap_or_else(|| "progress deadline exceeded".into()),
            );
        }
    }
    let generation = d.metadata.generation.unwrap_or(0);
    let observed = s.observed_generation.unwrap_or(0) >= generation;
    let replicas = s.replicas.unwrap_or(0);
    let updated = s.updated_replicas.unwrap_or(0);
    let available = s.available_replicas.unwrap_or(0);
    if observed && updated >= desired && replicas == updated && available >= desired {
        Rollout::Complete
    } else {
        Rollout::InProgress(format!(
            "{updated} of {desired} pods updated, {available} available, {replicas} total"
        ))
    }
}

/// Builds a condition, keeping `lastTransitionTime` when the status did not change.
pub fn condition(
    previous: &[Condition],
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: Timestamp,
) -> Condition {
    let status = if status { "True" } else { "False" }.to_string();
    let last_transition_time = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map_or(Time(now), |c| c.last_transition_time.clone());
    Condition {
        type_: type_.to_string(),
        status,
        reason: reason.to_string(),
        message,
        observed_generation: generation,
        last_transition_time,
    }
}

/// Bytes for people: GiB from 1 GiB up, MiB below (a 40 MB model is not `0.0 GiB`), KiB
/// below 1 MiB.
pub fn human_bytes(bytes: i64) -> String {
    let b = bytes.max(0) as f64;
    if b >= (1u64 << 30) as f64 {
        format!("{:.1} GiB", b / (1u64 << 30) as f64)
    } else if b >= (1u64 << 20) as f64 {
        format!("{:.1} MiB", b / (1u64 << 20) as f64)
    } else {
        format!("{:.1} KiB", b / 1024.0)
    }
}

fn progress_message(p: &Progress) -> String {
    let mut msg = match p.bytes_total {
        Some(total) if total > 0 => format!(
            "{} of {} ({:.0}%)",
            human_bytes(p.bytes_done),
            human_bytes(total),
            100.0 * p.bytes_done as f64 / total as f64
        ),
        _ => format!("{} downloaded", human_bytes(p.bytes_done)),
    };
    if let Some(rate) = p.rate_bytes_per_s {
        msg.push_str(&format!(", {:.0} MB/s", rate / 1e6));
    }
    if let Some(eta) = p.eta_seconds.filter(|e| *e > 0.0) {
        msg.push_str(&format!(", ETA {}m", (eta / 60.0).ceil() as i64));
    }
    msg
}

/// `status.model` from the download state (progress of the same Job is kept between log reads).
fn model_status(
    glmd: &GlmDeployment,
    download: &DownloadState,
    previous: Option<&ModelStatus>,
) -> Option<ModelStatus> {
    let requested = Some(glmd.spec.model.revision.clone());
    let same_job = |job: &str| previous.filter(|m| m.job_name.as_deref() == Some(job));
    match download {
        DownloadState::Absent => previous.cloned(),
        DownloadState::Pending {
            job_name,
            note,
            reruns,
        } => Some(ModelStatus {
            phase: ModelPhase::Pending,
            requested_revision: requested,
            job_name: Some(job_name.clone()),
            result_reruns: (*reruns > 0).then_some(*reruns),
            message: Some(
                note.clone()
                    .unwrap_or_else(|| "download Job created, waiting for its pod".into()),
            ),
            ..ModelStatus::default()
        }),
        DownloadState::Running {
            job_name,
            progress,
            note,
            reruns,
        } => {
            let prev = same_job(job_name);
            Some(ModelStatus {
                phase: ModelPhase::Downloading,
                requested_revision: requested,
                job_name: Some(job_name.clone()),
                result_reruns: (*reruns > 0).then_some(*reruns),
                bytes_done: progress
                    .as_ref()
                    .map(|p| p.bytes_done)
                    .or(prev.and_then(|m| m.bytes_done)),
                bytes_total: progress
                    .as_ref()
                    .and_then(|p| p.bytes_total)
                    .or(prev.and_then(|m| m.bytes_total)),
                message: progress
                    .as_ref()
                    .map(progress_message)
                    .or_else(|| note.clone())
                    .or(prev.and_then(|m| m.message.clone()))
                    .or(Some("downloading".into())),
                ..ModelStatus::default()
            })
        }
        DownloadState::Succeeded { job_name, result } => Some(ModelStatus {
            phase: ModelPhase::Ready,
            requested_revision: requested,
            commit: Some(result.commit.clone()),
            path: Some(result.path.clone()),
            // The built-in demo model has no Job: nothing was downloaded.
            job_name: (!job_name.is_empty()).then(|| job_name.clone()),
            result_reruns: None,
            bytes_done: result.bytes,
            bytes_total: result.bytes,
            message: Some(format!("verified commit {}", result.commit)),
        }),
        DownloadState::Failed { job_name, failure } => Some(ModelStatus {
            phase: ModelPhase::Failed,
            requested_revision: requested,
            job_name: Some(job_name.clone()),
            message: Some(format!("{}: {}", failure.error, failure.message)),
            ..ModelStatus::default()
        }),
    }
}

/// Computes the whole status.
pub fn compute_status(inp: &StatusInputs<'_>) -> GlmDeploymentStatus {
    let glmd = inp.glmd;
    let prev = glmd.status.clone().unwrap_or_default();
    let generation = glmd.metadata.generation;
    let name = glmd.name_any();
    let ns = glmd.namespace().unwrap_or_default();
    let cond = |t: &str, status: bool, reason: &str, message: String| {
        condition(
            &prev.conditions,
            t,
            status,
            reason,
            message,
            generation,
            inp.now,
        )
    };
    let desired = inp.desired_replicas;
    let rollout = rollout_state(inp.deployment, desired);
    let dep_status = inp.deployment.and_then(|d| d.status.as_ref());
    let ready_replicas = dep_status.map_or(prev.ready_replicas, |s| s.ready_replicas.unwrap_or(0));
    let replicas = dep_status.map_or(prev.replicas, |s| s.replicas.unwrap_or(0));
    let updated_replicas =
        dep_status.map_or(prev.updated_replicas, |s| s.updated_replicas.unwrap_or(0));
    let model = model_status(glmd, inp.download, prev.model.as_ref());

    let kept = |t: &str| {
        inp.problem
            .filter(|p| p.scope == ProblemScope::Child)
            .and_then(|_| prev.condition(t).cloned())
    };
    let model_problem = inp.problem.filter(|p| p.scope == ProblemScope::Spec);
    let model_ready = if let Some(c) = kept(conditions::MODEL_READY) {
        c
    } else {
        match (model_problem, inp.download) {
            (Some(p), _) => cond(conditions::MODEL_READY, false, p.reason, p.message.clone()),
            (None, DownloadState::Succeeded { result, .. }) => cond(
                conditions::MODEL_READY,
                true,
                reasons::MODEL_READY,
                format!("commit {} verified at {}", result.commit, result.path),
            ),
            (None, DownloadState::Running { .. }) => cond(
                conditions::MODEL_READY,
                false,
                reasons::DOWNLOADING,
                model
                    .as_ref()
                    .and_then(|m| m.message.clone())
                    .unwrap_or_default(),
            ),
            (None, DownloadState::Failed { failure, .. }) => cond(
                conditions::MODEL_READY,
                false,
                reasons::DOWNLOAD_FAILED,
                format!("{}: {}", failure.error, failure.message),
            ),
            (None, DownloadState::Pending { note, .. }) => cond(
                conditions::MODEL_READY,
                false,
                reasons::DOWNLOAD_PENDING,
                note.clone()
                    .unwrap_or_else(|| "waiting for the download Job to start".into()),
            ),
            (None, DownloadState::Absent) => cond(
                conditions::MODEL_READY,
                false,
                reasons::DOWNLOAD_PENDING,
                "waiting for the download Job to start".into(),
            ),
        }
    };

    let ready = if let Some(c) = kept(conditions::READY) {
        c
    } else {
        match (inp.problem, inp.served) {
            (Some(p), _) => cond(conditions::READY, false, p.reason, p.message.clone()),
            (None, None) => cond(
                conditions::READY,
                false,
                reasons::WAITING_FOR_MODEL,
                "the model is not downloaded yet".into(),
            ),
            (None, Some(_)) if desired == 0 => cond(
                conditions::READY,
                false,
                reasons::SCALED_TO_ZERO,
                "0 replicas requested".into(),
            ),
            (None, Some(_)) => {
                // A scale is not a rollout: the revision keeps serving while pods come and go.
                let scaling = inp.scaling && ready_replicas >= 1 && ready_replicas < desired;
                let ok = inp.deployment.is_some() && (ready_replicas >= desired || scaling);
                let reason = if ok {
                    reasons::REPLICAS_READY
                } else {
                    reasons::REPLICAS_NOT_READY
                };
                let note = if scaling { " (scaling)" } else { "" };
                cond(
                    conditions::READY,
                    ok,
                    reason,
                    format!("{ready_replicas}/{desired} replicas ready{note}"),
                )
            }
        }
    };

    let progressing = match (inp.problem, inp.download, &rollout) {
        (Some(p), _, _) => cond(conditions::PROGRESSING, false, p.reason, p.message.clone()),
        (None, DownloadState::Pending { .. } | DownloadState::Running { .. }, _) => cond(
            conditions::PROGRESSING,
            true,
            reasons::DOWNLOADING,
            format!(
                "downloading {}@{}",
                glmd.spec.model.repo, glmd.spec.model.revision
            ),
        ),
        (None, _, Rollout::InProgress(msg)) => cond(
            conditions::PROGRESSING,
            true,
            reasons::ROLLING_OUT,
            msg.clone(),
        ),
        (None, _, _) => cond(
            conditions::PROGRESSING,
            false,
            reasons::RECONCILED,
            "nothing in progress".into(),
        ),
    };

    let degraded = match (inp.problem, inp.download, &rollout) {
        (Some(p), _, _) => cond(conditions::DEGRADED, true, p.reason, p.message.clone()),
        (None, DownloadState::Failed { failure, .. }, _) => cond(
            conditions::DEGRADED,
            true,
            reasons::DOWNLOAD_FAILED,
            format!("{}: {}", failure.error, failure.message),
        ),
        (None, _, Rollout::DeadlineExceeded(msg)) => cond(
            conditions::DEGRADED,
            true,
            reasons::PROGRESS_DEADLINE_EXCEEDED,
            msg.clone(),
        ),
        (None, _, _) => cond(
            conditions::DEGRADED,
            false,
            reasons::AS_EXPECTED,
            "no problem observed".into(),
        ),
    };

    let served_commit = inp.served.map(|m| m.commit.clone());
    let complete = rollout == Rollout::Complete && inp.problem.is_none();
    let update_revision = if inp.deployment.is_some() {
        served_commit.clone()
    } else {
        prev.update_revision.clone()
    };
    let current_revision = if complete {
        served_commit.clone()
    } else {
        prev.current_revision.clone()
    };
    let last_ready_revision = if complete && ready.status == "True" {
        served_commit.clone()
    } else {
        prev.last_ready_revision.clone()
    };

    GlmDeploymentStatus {
        observed_generation: generation,
        conditions: vec![ready, progressing, degraded, model_ready],
        replicas,
        ready_replicas,
        updated_replicas,
        selector: Some(selector_string(&name)),
        resolved_revision: served_commit.or(prev.resolved_revision.clone()),
        model,
        endpoint: if inp.served.is_some() {
            Some(endpoint(&name, &ns))
        } else {
            prev.endpoint.clone()
        },
        autoscaling: inp.autoscaling.clone(),
        current_revision,
        update_revision,
        last_ready_revision,
        failed_revision: prev.failed_revision.clone(),
        rollout_phase: prev.rollout_phase.clone(),
    }
}

#[cfg(test)]
#[path = "status/tests.rs"]
mod tests;
