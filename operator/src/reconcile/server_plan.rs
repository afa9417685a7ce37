//! Pure decisions of one reconcile about the server, at the reconcile's `now` (from
//! `crate::clock`): which model the spec renders, the replica count to write, the rollout plan
//! (its deadlines are measured against `now`), where the pod template comes from, the status
//! and its Events, whether the autoscaler loop runs, and when to look again.
//!
//! `converge` reads the cluster, calls [`plan_server`], applies the Deployment and Service it
//! returns, reads the autoscaler loop, calls [`plan_status`], and writes what it says.

use std::time::Duration;

use glm_crds::{AutoscalingStatus, GlmDeployment, GlmDeploymentStatus};
use k8s_openapi::{
    api::{
        apps::v1::{Deployment, ReplicaSet},
        core::v1::Pod,
    },
    jiff::Timestamp,
};

use super::{
    deployment::{desired_deployment, desired_replicas, served_model, served_model_of},
    deployment::{DeploymentParams, ServedModel},
    download::DownloadState,
    events::{transition_events, PendingEvent},
    rollout,
    spec_check::unsupported_by_server,
    status::{compute_status, Problem, StatusInputs},
};
use crate::{
    autoscale::{replicas_for_apply, replicas_to_write, ReplicasPlan},
    upgrade::{
        self,
        observe::{observe_deployment, observe_pod, observe_replica_set},
        RolloutInput, RolloutPlan, RolloutPolicy, TemplateSource,
    },
    Error, Result,
};

/// How often a running download is polled for progress (its log is not watched).
pub const DOWNLOAD_POLL: Duration = Duration::from_secs(15);
/// Periodic resync when nothing is in flight.
pub const RESYNC: Duration = Duration::from_secs(300);
/// Rollout deadlines and the surge fallback are measured on pods, which are not watched.
pub const ROLLOUT_POLL: Duration = Duration::from_secs(15);

/// What was read about the server, besides the GlmDeployment.
#[derive(Clone, Debug)]
pub struct ServerObservation<'a> {
    /// The download of the requested model (`Succeeded` for the built-in demo).
    pub download: &'a DownloadState,
    /// The server Deployment before this reconcile's apply.
    pub deployment: Option<&'a Deployment>,
    /// Its ReplicaSets and pods (empty without a Deployment).
    pub replica_sets: &'a [ReplicaSet],
    pub pods: &'a [Pod],
    /// The autoscaler loop's latest decision (`None` before its first round).
    pub autoscaled: Option<i32>,
    /// Image when the spec names none (the operator's `--default-image`).
    pub default_image: &'a str,
    pub now: Timestamp,
}

/// What to do with the server this reconcile.
#[derive(Clone, Debug)]
pub struct ServerPlan {
    /// How `spec.replicas` of the Deployment is written (or left to its owner).
    pub replicas_plan: ReplicasPlan,
    /// The count written into the applied Deployment (`None`: left to its owner).
    pub replicas: Option<i32>,
    /// Template revision the spec asks for (a pending name while the weights are unverified).
    pub revision: String,
    pub rollout: RolloutPlan,
    /// Why nothing is rendered at all: the server cannot run the spec.
    pub unsupported: Option<Problem>,
    /// The Deployment to apply, with the Service; `None`: apply nothing.
    pub deployment: Option<Deployment>,
    /// `(reported, contract)` when the Job reported another directory than the contract's
    /// (served from the contract's; worth a log line).
    pub reported_path_differs: Option<(String, String)>,
}

/// The model the spec's template serves: verified weights of a spec the server can run.
/// `--model` follows the contract (cache dir + verified commit), not the path the Job printed.
pub fn spec_model(
    glmd: &GlmDeployment,
    download: &DownloadState,
    unsupported: Option<&Problem>,
) -> Option<ServedModel> {
    match (download, unsupported) {
        (DownloadState::Succeeded { result, .. }, None) => Some(served_model(glmd, &result.commit)),
        _ => None,
    }
}

/// The model the Deployment is rendered from when the spec's weights are not verified (the
/// plan then keeps or restores a template, and only the other fields come from the spec): the
/// one the observed Deployment serves. Nothing when the plan wants the spec's template: never
/// render an unstamped stand-in for it.
pub fn fallback_model(
    template: &TemplateSource,
    observed: Option<&Deployment>,
) -> Option<ServedModel> {
    match template {
        TemplateSource::Spec => None,
        TemplateSource::Current | TemplateSource::ReplicaSet(_) => {
            observed.and_then(served_model_of)
        }
    }
}

/// The decisions about the server Deployment for one reconcile.
pub fn plan_server(glmd: &GlmDeployment, o: &ServerObservation<'_>) -> Result<ServerPlan> {
    let autoscaling = &glmd.spec.autoscaling;
    let replicas_plan = replicas_for_apply(autoscaling.enabled, glmd.spec.replicas, o.deployment);
    let replicas = replicas_to_write(
        &replicas_plan,
        o.autoscaled,
        o.deployment.is_some(),
        desired_replicas(glmd),
    );
    let image = glmd.spec.server.image.as_deref().unwrap_or(o.default_image);
    let render = |model: &ServedModel| {
        desired_deployment(
            glmd,
            &DeploymentParams {
                image,
                model,
                replicas,
            },
        )
    };
    // What the server cannot run is not rendered at all (its pods would only crash); the
    // cache and the download still proceed.
    let unsupported = unsupported_by_server(glmd);
    let spec = spec_model(glmd, o.download, unsupported.as_ref());
    let reported_path_differs = match (o.download, &spec) {
        (DownloadState::Succeeded { result, .. }, Some(m)) if result.path != m.path => {
            Some((result.path.clone(), m.path.clone()))
        }
        _ => None,
    };
    let mut spec_deployment = spec.as_ref().map(render).transpose()?;
    let revision = spec_deployment
        .as_mut()
        .and_then(rollout::stamp_revision)
        .unwrap_or_else(|| rollout::pending_revision(glmd));
    let policy = RolloutPolicy::try_from(&glmd.spec.rollout)
        .map_err(|e| Error::InvalidSpec(format!("spec.rollout: {e}")))?;
    let observed_deployment = o.deployment.map(observe_deployment);
    let observed_sets: Vec<_> = o.replica_sets.iter().map(observe_replica_set).collect();
    let observed_pods: Vec<_> = o.pods.iter().map(observe_pod).collect();
    let memory = rollout::memory_from_status(glmd.status.as_ref());
    let plan = upgrade::plan(&RolloutInput {
        desired_revision: &revision,
        weights: rollout::weights_state(o.download),
        deployment: observed_deployment.as_ref(),
        replica_sets: &observed_sets,
        pods: &observed_pods,
        policy: &policy,
        memory: &memory,
        now: o.now,
    });
    // Only the template comes from the plan's source; the rest of the Deployment (replicas,
    // strategy, labels) is rendered from the spec, or from the model the Deployment serves
    // while the new weights are not verified yet.
    let base = match spec_deployment {
        Some(d) => Some(d),
        None => fallback_model(&plan.template, o.deployment)
            .map(|m| render(&m))
            .transpose()?,
    };
    let deployment = match unsupported {
        Some(_) => None,
        None => rollout::deployment_to_apply(base, &plan, o.deployment, o.replica_sets),
    };
    Ok(ServerPlan {
        replicas_plan,
        replicas,
        revision,
        rollout: plan,
        unsupported,
        deployment,
        reported_path_differs,
    })
}

/// `status.autoscaling` to write: the loop's last round, else what status said; nothing when
/// autoscaling is off.
pub fn autoscaling_status(
    enabled: bool,
    from_loop: Option<AutoscalingStatus>,
    previous: Option<&GlmDeploymentStatus>,
) -> Option<AutoscalingStatus> {
    if !enabled {
        return None;
    }
    from_loop.or_else(|| previous.and_then(|s| s.autoscaling.clone()))
}

/// What was known after the apply.
#[derive(Clone, Debug)]
pub struct Applied<'a> {
    pub download: &'a DownloadState,
    /// The server Deployment as the apply returned it (or as read, when nothing was applied).
    pub deployment: Option<&'a Deployment>,
    /// See [`autoscaling_status`].
    pub autoscaling: Option<AutoscalingStatus>,
    pub now: Timestamp,
}

/// The status to write and the Events to publish (those the plan carries and those of the
/// conditions that changed).
pub fn plan_status(
    glmd: &GlmDeployment,
    plan: &ServerPlan,
    a: &Applied<'_>,
) -> (GlmDeploymentStatus, Vec<PendingEvent>) {
    let served = a.deployment.and_then(served_model_of);
    let replicas = a
        .deployment
        .and_then(|d| d.spec.as_ref())
        .and_then(|s| s.replicas)
        .or(plan.replicas)
        .unwrap_or_else(|| desired_replicas(glmd));
    let mut status = compute_status(&StatusInputs {
        glmd,
        download: a.download,
        served: served.as_ref(),
        deployment: a.deployment,
        desired_replicas: replicas,
        autoscaling: a.autoscaling.clone(),
        problem: plan.unsupported.as_ref(),
        // Complete: the plan saw the Deployment before this apply; a new replica count on the
        // same template is a scale too.
        scaling: matches!(
            plan.rollout.phase,
            upgrade::Phase::Scaling | upgrade::Phase::Complete
        ),
        now: a.now,
    });
    if plan.unsupported.is_none() {
        rollout::apply_to_status(
            &mut status,
            glmd.status.as_ref(),
            &plan.rollout,
            glmd.metadata.generation,
            a.now,
        );
    }
    let mut events = transition_events(glmd.status.as_ref(), &status);
    if plan.unsupported.is_none() {
        events.extend(rollout::plan_event(&plan.rollout));
    }
    (status, events)
}

/// When to look again: soon while a download or a rollout is under way (neither the log nor
/// the pods are watched), else at the periodic resync.
pub fn next_check(download: &DownloadState, rollout_plan: &RolloutPlan) -> Duration {
    match download {
        DownloadState::Pending { .. } | DownloadState::Running { .. } => DOWNLOAD_POLL,
        _ if rollout::in_flight(rollout_plan) => ROLLOUT_POLL,
        _ => RESYNC,
    }
}

#[cfg(test)]
#[path = "server_plan/tests.rs"]
mod tests;
