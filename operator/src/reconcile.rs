//! One reconcile of a GlmDeployment: the I/O shell around the pure builders in `reconcile/*`.
//!
//! Order: check the spec -> cache PVC -> download Job (created once per requested model) ->
//! once the Job succeeded, the server Deployment and the Service -> status (SSA on the status
//! subresource, skipped when unchanged) -> Events for what changed.

pub mod deployment;
pub mod download;
pub mod download_policy;
pub mod events;
pub mod job;
pub mod meta;
pub mod pvc;
pub mod rollout;
pub mod server_plan;
pub mod service;
pub mod spec_check;
pub mod status;

use std::{fmt::Debug, time::Duration};

use glm_crds::{reasons, GlmDeployment, API_GROUP, API_VERSION, FIELD_MANAGER, KIND};
use k8s_openapi::{
    api::{
        apps::v1::{Deployment, ReplicaSet},
        batch::v1::Job,
        core::v1::{PersistentVolumeClaim, Pod, Service},
    },
    jiff::Timestamp,
};
use kube::{
    api::{DeleteParams, ListParams, LogParams, Patch, PatchParams},
    runtime::controller::Action,
    Api, Resource, ResourceExt,
};
use serde::{de::DeserializeOwned, Serialize};
use tracing::{debug, warn};

use self::{
    deployment::desired_replicas,
    download::{DownloadResult, DownloadState},
    events::{transition_events, PendingEvent},
    job::{desired_job, job_name, JobParams},
    meta::{name_ns, selector_string},
    pvc::{cache_claim_name, desired_pvc},
    server_plan::{
        autoscaling_status, next_check, plan_server, plan_status, Applied, ServerObservation,
        RESYNC,
    },
    service::desired_service,
    spec_check::check_spec,
    status::{compute_status, Problem, ProblemScope, StatusInputs},
};
use crate::{
    autoscale::{
        autoscaler_wanted,
        runner::{ObjectKey, ScaleLoopConfig},
        ReplicasPlan,
    },
    controller::Context,
    Error, Result,
};

/// A missing existingClaim is not watched; look again after this.
const CLAIM_RETRY: Duration = Duration::from_secs(60);

/// Reconciles one GlmDeployment.
pub async fn reconcile_glmd(glmd: &GlmDeployment, ctx: &Context) -> Result<Action> {
    let (name, ns) = name_ns(glmd)?;
    // The one read of the clock: every decision of this reconcile sees the same instant.
    let now = ctx.clock.now();
    let problems = check_spec(glmd);
    if !problems.is_empty() {
        let err = Error::InvalidSpec(problems.join("; "));
        return report_problem(glmd, ctx, &ns, &err, now).await;
    }
    match converge(glmd, ctx, &name, &ns, now).await {
        Err(e) if e.needs_user_action() => report_problem(glmd, ctx, &ns, &e, now).await,
        other => other,
    }
}

/// Writes `Degraded` (and the other conditions) for a problem only the user can fix, publishes a
/// Warning Event when it is new, and waits: no children are created from a broken spec.
async fn report_problem(
    glmd: &GlmDeployment,
    ctx: &Context,
    ns: &str,
    err: &Error,
    now: Timestamp,
) -> Result<Action> {
    // A spec we cannot honour must not keep scaling on stale settings.
    ctx.autoscaler.stop(&ObjectKey {
        namespace: ns.to_string(),
        name: glmd.name_any(),
    });
    let problem = Problem {
        reason: err.reason(),
        message: err.to_string(),
        scope: match err {
            Error::ChildRejected { .. } => ProblemScope::Child,
            _ => ProblemScope::Spec,
        },
    };
    warn!(reason = problem.reason, message = %problem.message, "cannot honour the spec");
    let status = compute_status(&StatusInputs {
        glmd,
        download: &DownloadState::Absent,
        served: None,
        deployment: None,
        desired_replicas: desired_replicas(glmd),
        autoscaling: glmd.status.as_ref().and_then(|s| s.autoscaling.clone()),
        problem: Some(&problem),
        scaling: false,
        now,
    });
    let events = transition_events(glmd.status.as_ref(), &status);
    patch_status(glmd, ctx, ns, &status).await?;
    publish(glmd, ctx, events).await;
    Ok(match err {
        Error::CacheClaimNotFound(_) => Action::requeue(CLAIM_RETRY),
        Error::InvalidSpec(_) => Action::await_change(),
        _ => Action::requeue(RESYNC),
    })
}

async fn converge(
    glmd: &GlmDeployment,
    ctx: &Context,
    name: &str,
    ns: &str,
    now: Timestamp,
) -> Result<Action> {
    let client = ctx.client.clone();
    let mut events = Vec::new();

    // 1 and 2. The cache and the download; the built-in demo model needs neither: the
    //    server generates it in the pod.
    let download = if glmd.spec.model.is_builtin_demo() {
        builtin_demo_download()
    } else {
        let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
        match desired_pvc(glmd)? {
            Some(pvc) => {
                apply(&pvcs, &pvc).await?;
            }
            None => {
                let claim = cache_claim_name(glmd);
                if pvcs.get_opt(&claim).await?.is_none() {
                    return Err(Error::CacheClaimNotFound(claim));
                }
            }
        }
        observe_download(glmd, ctx, ns, now, &mut events).await?
    };

    // 3. The server. What its pod template becomes is the rollout plan's decision
    //    (`crate::upgrade`): a new revision's weights download while the old pods keep serving,
    //    a rollout that misses its deadline is rolled back to the last Ready ReplicaSet.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let observed = deployments.get_opt(name).await?;
    let (replica_sets, server_pods) = match &observed {
        Some(_) => list_server_objects(ctx, ns, name).await?,
        None => (Vec::new(), Vec::new()),
    };
    let key = ObjectKey {
        namespace: ns.to_string(),
        name: name.to_string(),
    };
    let plan = plan_server(
        glmd,
        &ServerObservation {
            download: &download,
            deployment: observed.as_ref(),
            replica_sets: &replica_sets,
            pods: &server_pods,
            autoscaled: ctx.autoscaler.desired_replicas(&key),
            default_image: &ctx.config.default_image,
            now,
        },
    )?;
    if let ReplicasPlan::OmitForeignOwner(manager) = &plan.replicas_plan {
        debug!(%manager, "replicas owned by another manager; leaving them alone");
    }
    if let Some((reported, contract)) = &plan.reported_path_differs {
        warn!(%reported, %contract, "the download Job reported another directory than the contract's");
    }
    debug!(action = ?plan.rollout.action, phase = ?plan.rollout.phase, revision = %plan.revision, "rollout plan");
    let deployment = match &plan.deployment {
        Some(desired) => {
            let applied = apply(&deployments, desired).await?;
            let services: Api<Service> = Api::namespaced(client.clone(), ns);
            apply_service(&services, &desired_service(glmd)?).await?;
            Some(applied)
        }
        None => observed,
    };
    let autoscaling = &glmd.spec.autoscaling;
    if autoscaler_wanted(autoscaling.enabled, deployment.is_some()) {
        let config = ScaleLoopConfig::from_spec(
            autoscaling,
            name.to_string(),
            selector_string(name),
            glmd.uid(),
        );
        ctx.autoscaler.ensure(key.clone(), config);
    } else {
        ctx.autoscaler.stop(&key);
    }

    // 4. Status and Events.
    let (status, status_events) = plan_status(
        glmd,
        &plan,
        &Applied {
            download: &download,
            deployment: deployment.as_ref(),
            autoscaling: autoscaling_status(
                autoscaling.enabled,
                ctx.autoscaler.status(&key).map(|s| s.to_status()),
                glmd.status.as_ref(),
            ),
            now,
        },
    );
    events.extend(status_events);
    patch_status(glmd, ctx, ns, &status).await?;
    publish(glmd, ctx, events).await;
    Ok(Action::requeue(next_check(&download, &plan.rollout)))
}

/// Creates the download Job when missing and reads its state (progress, result or failure).
/// The built-in demo model is "downloaded" by definition: `--model demo`.
fn builtin_demo_download() -> DownloadState {
    DownloadState::Succeeded {
        job_name: String::new(),
        result: DownloadResult {
            commit: glm_crds::DEMO_MODEL.into(),
            path: glm_crds::DEMO_MODEL.into(),
            bytes: None,
        },
    }
}

async fn observe_download(
    glmd: &GlmDeployment,
    ctx: &Context,
    ns: &str,
    now: Timestamp,
    events: &mut Vec<PendingEvent>,
) -> Result<DownloadState> {
    let job_name = job_name(glmd);
    let previous = glmd.status.as_ref().and_then(|s| s.model.as_ref());
    // Already verified and recorded: the cache keeps it, the Job need not exist any more.
    if let Some(result) = download_policy::recorded_result(previous, &job_name) {
        return Ok(DownloadState::Succeeded { job_name, result });
    }
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), ns);
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let job = jobs.get_opt(&job_name).await?;
    let job_pods = match &job {
        Some(_) => list_job_pods(&pods, &job_name).await?,
        None => Vec::new(),
    };
    // The log is best effort: progress, or the result/error when the message was lost.
    let log = match download_policy::log_wanted(job.as_ref(), &job_pods) {
        Some(pod) => {
            let lp = LogParams {
                container: Some(job::CONTAINER.into()),
                tail_lines: Some(20),
                ..LogParams::default()
            };
            match pods.logs(&pod, &lp).await {
                Ok(log) => Some(log),
                Err(e) => {
                    debug!(error = %e, pod, "cannot read the download log");
                    None
                }
            }
        }
        None => None,
    };
    let decision = download_policy::decide(&download_policy::DownloadObservation {
        job_name: &job_name,
        job: job.as_ref(),
        pods: &job_pods,
        log: log.as_deref(),
        generation: glmd.metadata.generation.unwrap_or(0),
        previous,
        now,
    });
    match decision.action {
        download_policy::JobAction::Keep => {}
        download_policy::JobAction::Create => {
            let image = glmd
                .spec
                .server
                .image
                .as_deref()
                .unwrap_or(&ctx.config.default_image);
            apply(&jobs, &desired_job(glmd, &JobParams { image })?).await?;
            events.push(PendingEvent::normal(
                reasons::DOWNLOAD_STARTED,
                "Download",
                format!(
                    "downloading {}@{} (Job {job_name})",
                    glmd.spec.model.repo, glmd.spec.model.revision
                ),
            ));
        }
        download_policy::JobAction::Delete => {
            jobs.delete(&job_name, &DeleteParams::background()).await?;
        }
    }
    events.extend(decision.event);
    if let DownloadState::Succeeded { .. } = &decision.state {
        prune_download_jobs(glmd, &jobs, &job_name).await;
    }
    Ok(decision.state)
}

/// Deletes the download Jobs older than the last [`download_policy::KEEP_DOWNLOAD_JOBS`];
/// best effort (a failure only leaves a Job behind until the next reconcile).
async fn prune_download_jobs(glmd: &GlmDeployment, jobs: &Api<Job>, current: &str) {
    let selector = meta::child_labels(&glmd.name_any(), "download")
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let lp = ListParams::default().labels(&selector);
    let list = match jobs.list(&lp).await {
        Ok(l) => l.items,
        Err(e) => {
            debug!(error = %e, "cannot list download Jobs");
            return;
        }
    };
    let names = download_policy::jobs_to_prune(&list, current, download_policy::KEEP_DOWNLOAD_JOBS);
    for name in names {
        match jobs.delete(&name, &DeleteParams::background()).await {
            Ok(_) => debug!(job = %name, "deleted an old download Job"),
            Err(e) => debug!(job = %name, error = %e, "cannot delete an old download Job"),
        }
    }
}

/// The server Deployment's ReplicaSets and Pods (by its selector labels), for the rollout plan.
async fn list_server_objects(
    ctx: &Context,
    ns: &str,
    name: &str,
) -> Result<(Vec<ReplicaSet>, Vec<Pod>)> {
    let lp = ListParams::default().labels(&selector_string(name));
    let sets: Api<ReplicaSet> = Api::namespaced(ctx.client.clone(), ns);
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    Ok((sets.list(&lp).await?.items, pods.list(&lp).await?.items))
}

/// Pods of a Job (the Job controller labels them `job-name=<job>`).
async fn list_job_pods(pods: &Api<Pod>, job_name: &str) -> Result<Vec<Pod>, kube::Error> {
    let lp = ListParams::default().labels(&format!("job-name={job_name}"));
    Ok(pods.list(&lp).await?.items)
}

/// Server-side apply of a child under the operator's field manager (forced: the operator owns
/// these fields). An apiserver refusal (422) becomes [`Error::ChildRejected`].
async fn apply<K>(api: &Api<K>, obj: &K) -> Result<K>
where
    K: Resource<DynamicType = ()> + Serialize + DeserializeOwned + Clone + Debug,
{
    let name = obj
        .meta()
        .name
        .clone()
        .ok_or(Error::MissingObjectKey("metadata.name"))?;
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch(&name, &params, &Patch::Apply(obj))
        .await
        .map_err(|e| match e {
            kube::Error::Api(status)
                if crate::error::refused_content(status.code, &status.message) =>
            {
                Error::ChildRejected {
                    kind: kind_of::<K>(),
                    name,
                    message: status.message,
                }
            }
            other => Error::Kube(other),
        })
}

/// Applies the Service; when server-side apply cannot merge with someone's hand edit (a port
/// changed with `kubectl patch` is another manager's list entry, and ours then duplicates
/// its name), puts the operator's ports and selector back with a replace and applies again.
async fn apply_service(api: &Api<Service>, desired: &Service) -> Result<Service> {
    match apply(api, desired).await {
        Err(Error::ChildRejected { name, message, .. }) => {
            let Some(current) = api.get_opt(&name).await? else {
                return Err(Error::ChildRejected {
                    kind: "Service",
                    name,
                    message,
                });
            };
            warn!(service = %name, %message, "server-side apply cannot merge a hand edit; replacing");
            let repaired = service::repaired(&current, desired);
            let params = kube::api::PostParams {
                field_manager: Some(FIELD_MANAGER.into()),
                ..kube::api::PostParams::default()
            };
            api.replace(&name, &params, &repaired)
                .await
                .map_err(|e| match e {
                    kube::Error::Api(s) if crate::error::refused_content(s.code, &s.message) => {
                        Error::ChildRejected {
                            kind: "Service",
                            name: name.clone(),
                            message: s.message,
                        }
                    }
                    other => Error::Kube(other),
                })?;
            apply(api, desired).await
        }
        other => other,
    }
}

fn kind_of<K: Resource<DynamicType = ()>>() -> &'static str {
    // Static names keep `Error` free of allocations for the common kinds.
    match K::kind(&()).as_ref() {
        "PersistentVolumeClaim" => "PersistentVolumeClaim",
        "Job" => "Job",
        "Deployment" => "Deployment",
        "Service" => "Service",
        _ => "object",
    }
}

/// Writes the status with SSA on the status subresource, unless nothing changed.
async fn patch_status(
    glmd: &GlmDeployment,
    ctx: &Context,
    ns: &str,
    status: &glm_crds::GlmDeploymentStatus,
) -> Result<()> {
    if glmd.status.as_ref() == Some(status) {
        return Ok(());
    }
    let api: Api<GlmDeployment> = Api::namespaced(ctx.client.clone(), ns);
    let body = serde_json::json!({
        "apiVersion": format!("{API_GROUP}/{API_VERSION}"),
        "kind": KIND,
        "status": status,
    });
    api.patch_status(
        &glmd.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(body),
    )
    .await?;
    Ok(())
}

/// Publishes Events; a failure is logged, never fatal (the status already says it all).
async fn publish(glmd: &GlmDeployment, ctx: &Context, events: Vec<PendingEvent>) {
    let reference = glmd.object_ref(&());
    for ev in events {
        if let Err(e) = ctx.recorder.publish(&ev.into_event(), &reference).await {
            warn!(error = %e, "cannot publish event");
        }
    }
}

#[cfg(test)]
#[path = "reconcile/mock_tests.rs"]
mod mock_tests;
#[cfg(test)]
#[path = "reconcile/rollout_mock_tests.rs"]
mod rollout_mock_tests;
