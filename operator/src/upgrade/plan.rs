//! The rollout state machine itself (see the module docs of `upgrade`).

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use super::reasons::*;
use super::{
    Action, Budget, ConditionUpdate, EventNote, ObservedDeployment, ObservedPod,
    ObservedReplicaSet, Phase, RolloutInput, RolloutPlan, Strategy, TemplateSource, WeightsState,
};

const PROGRESSING: &str = glm_crds::conditions::PROGRESSING;
const DEGRADED: &str = glm_crds::conditions::DEGRADED;

/// Everything `plan` decides before the common finishing (strategy, memory, event gating).
struct Step {
    action: Action,
    phase: Phase,
    template: TemplateSource,
    progressing: (bool, &'static str, String),
    degraded: Option<(&'static str, String)>,
    event: Option<EventNote>,
}

fn warning(reason: &'static str, message: &str) -> Option<EventNote> {
    Some(EventNote {
        warning: true,
        reason,
        message: message.to_string(),
    })
}

fn normal(reason: &'static str, message: &str) -> Option<EventNote> {
    Some(EventNote {
        warning: false,
        reason,
        message: message.to_string(),
    })
}

/// The next rollout step for one GlmDeployment.
pub fn plan(input: &RolloutInput<'_>) -> RolloutPlan {
    let desired = input.desired_revision;
    let previous = input.memory;
    let mut memory = previous.clone();
    // The failure is remembered only while the spec still names the failed revision, and
    // only while a Deployment exists to hold the restored template: after the Deployment
    // (and with it the old ReplicaSets) is deleted, the spec is all that can be rendered.
    let held = previous.failed_revision.as_deref() == Some(desired)
        && previous.last_ready_revision.is_some()
        && input.deployment.is_some();
    if !held {
        memory.failed_revision = None;
    }
    let target = match (held, previous.last_ready_revision.as_deref()) {
        (true, Some(last_ready)) => last_ready,
        _ => desired,
    };

    let step = match input.deployment {
        None => start(input, desired, &mut memory),
        Some(d) if d.template_revision.as_deref() != Some(target) => {
            if held {
                rollback(
                    input,
                    target,
                    desired,
                    "the Deployment runs another revision",
                )
            } else {
                start(input, desired, &mut memory)
            }
        }
        Some(d) => {
            memory.update_revision = Some(target.to_string());
            progress(input, d, target, held, &mut memory)
        }
    };
    if matches!(step.action, Action::Rollback { .. }) {
        memory.failed_revision = Some(desired.to_string());
        memory.update_revision = Some(target_of(&step.action).to_string());
    }

    let degraded = match (&step.degraded, held) {
        (Some((reason, message)), _) => (true, *reason, message.clone()),
        (None, true) => (
            true,
            ROLLED_BACK,
            format!(
                "revision {desired} missed its progress deadline and was rolled back; \
                 serving {target}; change the spec to retry"
            ),
        ),
        (None, false) => (false, AS_EXPECTED, "rollout healthy".to_string()),
    };
    let strategy = if step.phase == Phase::OneAtATime {
        Strategy {
            max_surge: Budget::Count(0),
            max_unavailable: Budget::Count(1),
        }
    } else {
        Strategy {
            max_surge: input.policy.max_surge,
            max_unavailable: input.policy.max_unavailable,
        }
    };
    // Events mark transitions; reconciles repeat, Events must not.
    let transition =
        previous.phase != Some(step.phase) || previous.update_revision != memory.update_revision;
    memory.phase = Some(step.phase);
    RolloutPlan {
        action: step.action,
        phase: step.phase,
        template: step.template,
        strategy,
        memory,
        progressing: ConditionUpdate {
            type_: PROGRESSING,
            status: step.progressing.0,
            reason: step.progressing.1,
            message: step.progressing.2,
        },
        degraded: ConditionUpdate {
            type_: DEGRADED,
            status: degraded.0,
            reason: degraded.1,
            message: degraded.2,
        },
        event: step.event.filter(|_| transition),
    }
}

fn target_of(action: &Action) -> &str {
    match action {
        Action::Rollback { to_revision, .. } => to_revision,
        _ => "",
    }
}

/// The Deployment does not run `desired` yet: gate on weights, then apply the template.
fn start(input: &RolloutInput<'_>, desired: &str, memory: &mut super::RolloutMemory) -> Step {
    let serving = input
        .deployment
        .and_then(|d| d.template_revision.clone())
        .unwrap_or_else(|| "nothing".to_string());
    match &input.weights {
        WeightsState::Pending => Step {
            action: Action::WaitForWeights {
                revision: desired.to_string(),
            },
            phase: Phase::WaitingForWeights,
            template: TemplateSource::Current,
            progressing: (
                true,
                WAITING_FOR_MODEL,
                format!(
                    "downloading and verifying the weights of {desired}; {serving} keeps serving"
                ),
            ),
            degraded: None,
            event: None,
        },
        WeightsState::Failed { message } => Step {
            action: Action::Wait,
            phase: Phase::Failed,
            template: TemplateSource::Current,
            progressing: (
                false,
                DOWNLOAD_FAILED,
                format!("weights of {desired}: {message}"),
            ),
            degraded: Some((
                DOWNLOAD_FAILED,
                format!("weights of {desired} failed: {message}; {serving} keeps serving"),
            )),
            event: warning(DOWNLOAD_FAILED, &format!("weights of {desired}: {message}")),
        },
        WeightsState::Ready => {
            memory.update_revision = Some(desired.to_string());
            let message = format!("rolling out {desired}, replacing {serving}");
            Step {
                action: Action::ApplyTemplate {
                    revision: desired.to_string(),
                },
                phase: Phase::Rolling,
                template: TemplateSource::Spec,
                progressing: (true, ROLLING_OUT, message.clone()),
                degraded: None,
                event: normal(ROLLOUT_STARTED, &message),
            }
        }
    }
}

/// The newest ReplicaSet whose pods run `revision`.
fn replica_set_of<'a>(
    sets: &'a [ObservedReplicaSet],
    revision: &str,
) -> Option<&'a ObservedReplicaSet> {
    sets.iter()
        .filter(|rs| rs.revision.as_deref() == Some(revision))
        .max_by_key(|rs| rs.k8s_revision)
}

/// Restore `to` from its ReplicaSet, or report that nothing can be restored.
fn rollback(input: &RolloutInput<'_>, to: &str, failed: &str, why: &str) -> Step {
    match replica_set_of(input.replica_sets, to) {
        Some(rs) => {
            let message = format!("{why}; rolling back from {failed} to {to}");
            Step {
                action: Action::Rollback {
                    to_revision: to.to_string(),
                    replica_set: rs.name.clone(),
                },
                phase: Phase::RollingBack,
                template: TemplateSource::ReplicaSet(rs.name.clone()),
                progressing: (true, ROLLING_BACK, message.clone()),
                degraded: Some((PROGRESS_DEADLINE_EXCEEDED, message.clone())),
                event: warning(PROGRESS_DEADLINE_EXCEEDED, &message),
            }
        }
        None => no_rollback_target(&format!(
            "{why}; revision {failed} failed and the ReplicaSet of {to} no longer exists"
        )),
    }
}

fn no_rollback_target(message: &str) -> Step {
    Step {
        action: Action::Wait,
        phase: Phase::Failed,
        template: TemplateSource::Current,
        progressing: (false, PROGRESS_DEADLINE_EXCEEDED, message.to_string()),
        degraded: Some((NO_ROLLBACK_TARGET, message.to_string())),
        event: warning(PROGRESS_DEADLINE_EXCEEDED, message),
    }
}

fn elapsed(now: Timestamp, since: Timestamp) -> Duration {
    Duration::try_from(now.duration_since(since)).unwrap_or(Duration::ZERO)
}

fn complete(d: &ObservedDeployment) -> bool {
    d.observed_generation >= d.generation
        && d.updated_replicas >= d.replicas
        && d.status_replicas == d.updated_replicas
        && d.ready_replicas >= d.replicas
        && d.available_replicas >= d.replicas
}

/// The Deployment's template is `target`: watch the pods come up.
fn progress(
    input: &RolloutInput<'_>,
    d: &ObservedDeployment,
    target: &str,
    held: bool,
    memory: &mut super::RolloutMemory,
) -> Step {
    let template = if held {
        TemplateSource::Current
    } else {
        TemplateSource::Spec
    };
    if complete(d) {
        memory.current_revision = Some(target.to_string());
        memory.last_ready_revision = Some(target.to_string());
        let message = format!(
            "{target}: {}/{} replicas ready",
            d.ready_replicas, d.replicas
        );
        return Step {
            action: Action::Done,
            phase: Phase::Complete,
            template,
            progressing: (false, ROLLOUT_COMPLETE, message.clone()),
            degraded: None,
            event: normal(ROLLOUT_COMPLETE, &message),
        };
    }

    let new_rs = replica_set_of(input.replica_sets, target);
    let is_new = |p: &&ObservedPod| {
        !p.terminating
            && new_rs.is_some_and(|rs| {
                p.pod_template_hash.as_deref() == Some(rs.pod_template_hash.as_str())
            })
    };
    let new_pods: Vec<&ObservedPod> = input.pods.iter().filter(is_new).collect();
    let old_alive = input
        .pods
        .iter()
        .filter(|p| !p.terminating && !is_new(p))
        .count();
    let deadline = input.policy.progress_deadline;
    let now = input.now;
    let overdue = new_pods
        .iter()
        .find(|p| !p.ready && elapsed(now, p.created) > deadline)
        .map(|p| {
            format!(
                "pod {} of {target} not ready after {}s",
                p.name,
                deadline.as_secs()
            )
        })
        .or_else(|| {
            d.deadline_exceeded
                .then(|| format!("the Deployment reports ProgressDeadlineExceeded for {target}"))
        })
        .or_else(|| {
            new_rs
                .filter(|rs| new_pods.is_empty() && elapsed(now, rs.created) > deadline)
                .map(|rs| {
                    format!(
                        "ReplicaSet {} created no pod in {}s",
                        rs.name,
                        deadline.as_secs()
                    )
                })
        });
    // Every pod runs the revision that already completed once: only the count changes.
    // Pods that wait for the scheduler say why; no deadline, no rollback for a scale.
    let scaling =
        !held && old_alive == 0 && input.memory.current_revision.as_deref() == Some(target);
    if scaling {
        let unschedulable = new_pods
            .iter()
            .find_map(|p| p.unschedulable.as_ref().map(|(_, m)| (p.name.as_str(), m)));
        let (reason, message) = match unschedulable {
            Some((pod, why)) => (
                UNSCHEDULABLE,
                format!(
                    "{target}: scaling to {} replicas, {} ready; pod {pod} is Unschedulable: {why}",
                    d.replicas, d.ready_replicas
                ),
            ),
            None => (
                SCALING,
                format!(
                    "{target}: scaling to {} replicas, {} ready",
                    d.replicas, d.ready_replicas
                ),
            ),
        };
        // Nothing to roll back to in a scale; a stuck one is still worth a Degraded.
        let degraded = d.deadline_exceeded.then(|| {
            (
                PROGRESS_DEADLINE_EXCEEDED,
                format!("the Deployment reports ProgressDeadlineExceeded while scaling; {message}"),
            )
        });
        return Step {
            action: Action::Wait,
            phase: Phase::Scaling,
            template,
            progressing: (true, reason, message),
            degraded,
            event: None,
        };
    }
    if let Some(why) = overdue {
        let last_ready = input.memory.last_ready_revision.as_deref();
        return match last_ready {
            Some(to) if !held && to != target => rollback(input, to, target, &why),
            _ => no_rollback_target(&format!("{why}; no earlier ready revision to roll back to")),
        };
    }

    let updated = format!(
        "{}/{} replicas updated, {} ready",
        d.updated_replicas, d.replicas, d.ready_replicas
    );
    let phase_now = if held {
        Phase::RollingBack
    } else {
        Phase::Rolling
    };
    let already_fallback = input.memory.phase == Some(Phase::OneAtATime)
        && input.memory.update_revision.as_deref() == Some(target);
    if already_fallback {
        return Step {
            action: Action::Wait,
            phase: Phase::OneAtATime,
            template,
            progressing: (
                true,
                SURGE_UNSCHEDULABLE,
                format!("no room for a surge pod: replacing one pod at a time; {updated}"),
            ),
            degraded: None,
            event: None,
        };
    }
    let stuck = new_pods.iter().find_map(|p| {
        let (since, message) = p.unschedulable.as_ref()?;
        (p.phase == "Pending" && elapsed(now, *since) >= input.policy.surge_fallback_after)
            .then(|| format!("pod {} is Unschedulable ({message})", p.name))
    });
    if let Some(why) = stuck.filter(|_| old_alive > 0 && !input.policy.max_surge.is_zero()) {
        let message = format!(
            "{why} while old pods hold the resources: switching to maxSurge 0 / \
             maxUnavailable 1 (one pod at a time)"
        );
        return Step {
            action: Action::FallbackNoSurge {
                reason: message.clone(),
            },
            phase: Phase::OneAtATime,
            template,
            progressing: (true, SURGE_UNSCHEDULABLE, message.clone()),
            degraded: None,
            event: warning(SURGE_UNSCHEDULABLE, &message),
        };
    }
    // A new pod the scheduler cannot place says so (with the scheduler's words) at once,
    // not only after the surge fallback or the deadline.
    let waiting = new_pods.iter().find_map(|p| {
        let (_, message) = p.unschedulable.as_ref()?;
        Some(format!("pod {} is Unschedulable: {message}", p.name))
    });
    let progressing = match waiting {
        Some(why) if !held => (true, UNSCHEDULABLE, format!("{target}: {updated}; {why}")),
        _ => (
            true,
            if held { ROLLING_BACK } else { ROLLING_OUT },
            format!("{target}: {updated}"),
        ),
    };
    Step {
        action: Action::Wait,
        phase: phase_now,
        template,
        progressing,
        degraded: None,
        event: None,
    }
}
