//! The reconcile side of rolling upgrades: k8s objects in, [`crate::upgrade::plan`]'s verdict
//! out. Everything here is pure glue (no API calls): which revision the spec asks for, which
//! pod template and strategy to apply, and how the plan lands in status and Events. The
//! decision itself stays in `crate::upgrade`.

use glm_crds::{GlmDeployment, GlmDeploymentStatus};
use k8s_openapi::{
    api::apps::v1::{Deployment, ReplicaSet},
    apimachinery::pkg::apis::meta::v1::Condition,
    jiff::Timestamp,
};

use super::{download::DownloadState, events::PendingEvent, status::condition};
use crate::upgrade::{
    deployment_strategy, rollback_template, template_revision, ConditionUpdate, Phase,
    RolloutMemory, RolloutPlan, TemplateSource, WeightsState, TEMPLATE_REVISION_ANNOTATION,
};

/// Weights of the revision the spec asks for, from the download Job's state.
pub fn weights_state(download: &DownloadState) -> WeightsState {
    match download {
        DownloadState::Succeeded { .. } => WeightsState::Ready,
        DownloadState::Failed { failure, .. } => WeightsState::Failed {
            message: format!("{}: {}", failure.error, failure.message),
        },
        DownloadState::Pending { .. } | DownloadState::Running { .. } | DownloadState::Absent => {
            WeightsState::Pending
        }
    }
}

/// Revision name while the weights are not verified yet: the model path (part of the
/// template) is unknown until the Job reports it, so no template can be hashed. `@` never
/// occurs in a [`template_revision`], so this never matches a running template.
pub fn pending_revision(glmd: &GlmDeployment) -> String {
    format!("{}@{}", glmd.spec.model.repo, glmd.spec.model.revision)
}

/// Stamps [`TEMPLATE_REVISION_ANNOTATION`] on the Deployment's pod template and returns the
/// revision (the Deployment controller copies it into ReplicaSets and pods).
pub fn stamp_revision(deployment: &mut Deployment) -> Option<String> {
    let template = &mut deployment.spec.as_mut()?.template;
    let revision = template_revision(template);
    template
        .metadata
        .get_or_insert_with(Default::default)
        .annotations
        .get_or_insert_with(Default::default)
        .insert(TEMPLATE_REVISION_ANNOTATION.to_string(), revision.clone());
    Some(revision)
}

/// The Deployment to apply for `plan`: `desired` (rendered from the spec, or `None` when the
/// spec cannot be rendered yet) with the template the plan chooses and its strategy. `None`:
/// apply nothing (no Deployment exists and the plan keeps the current template).
pub fn deployment_to_apply(
    desired: Option<Deployment>,
    plan: &RolloutPlan,
    observed: Option<&Deployment>,
    replica_sets: &[ReplicaSet],
) -> Option<Deployment> {
    let mut deployment = desired?;
    let spec = deployment.spec.as_mut()?;
    let current = || {
        observed
            .and_then(|d| d.spec.as_ref())
            .map(|s| s.template.clone())
    };
    let template = match &plan.template {
        TemplateSource::Spec => Some(spec.template.clone()),
        TemplateSource::Current => current(),
        TemplateSource::ReplicaSet(name) => replica_sets
            .iter()
            .find(|rs| rs.metadata.name.as_deref() == Some(name.as_str()))
            .and_then(rollback_template)
            // Listed a moment ago; if it vanished, holding still beats rendering the spec.
            .or_else(current),
    };
    spec.template = template?;
    spec.strategy = Some(deployment_strategy(&plan.strategy));
    Some(deployment)
}

/// The state machine's memory as persisted in status.
pub fn memory_from_status(status: Option<&GlmDeploymentStatus>) -> RolloutMemory {
    let Some(s) = status else {
        return RolloutMemory::default();
    };
    RolloutMemory {
        current_revision: s.current_revision.clone(),
        update_revision: s.update_revision.clone(),
        last_ready_revision: s.last_ready_revision.clone(),
        failed_revision: s.failed_revision.clone(),
        // An unknown phase (older operator) reads as none: the plan re-derives it.
        phase: s
            .rollout_phase
            .as_ref()
            .and_then(|p| serde_json::from_value(serde_json::Value::String(p.clone())).ok()),
    }
}

fn phase_name(phase: Phase) -> Option<String> {
    match serde_json::to_value(phase) {
        Ok(serde_json::Value::String(s)) => Some(s),
        _ => None,
    }
}

fn replace_condition(
    conditions: &mut [Condition],
    previous: &[Condition],
    update: &ConditionUpdate,
    generation: Option<i64>,
    now: Timestamp,
) {
    let new = condition(
        previous,
        update.type_,
        update.status,
        update.reason,
        update.message.clone(),
        generation,
        now,
    );
    if let Some(c) = conditions.iter_mut().find(|c| c.type_ == update.type_) {
        *c = new;
    }
}

/// Puts the plan into the computed status: revisions, failed revision, phase, and the
/// `Progressing`/`Degraded` conditions. The download's own progress message stays while the
/// plan only waits for weights, and a problem found elsewhere (a failed download) is not
/// cleared by a healthy rollout.
pub fn apply_to_status(
    status: &mut GlmDeploymentStatus,
    previous: Option<&GlmDeploymentStatus>,
    plan: &RolloutPlan,
    generation: Option<i64>,
    now: Timestamp,
) {
    let m = &plan.memory;
    status.current_revision = m.current_revision.clone();
    status.update_revision = m.update_revision.clone();
    status.last_ready_revision = m.last_ready_revision.clone();
    status.failed_revision = m.failed_revision.clone();
    status.rollout_phase = m.phase.and_then(phase_name);
    let prev: &[Condition] = previous.map_or(&[], |p| p.conditions.as_slice());
    if plan.phase != Phase::WaitingForWeights {
        replace_condition(
            &mut status.conditions,
            prev,
            &plan.progressing,
            generation,
            now,
        );
    }
    if plan.degraded.status {
        replace_condition(
            &mut status.conditions,
            prev,
            &plan.degraded,
            generation,
            now,
        );
    }
}

/// The plan's Event (published on phase transitions only, see `upgrade::plan`).
pub fn plan_event(plan: &RolloutPlan) -> Option<PendingEvent> {
    plan.event.as_ref().map(|e| PendingEvent {
        warning: e.warning,
        reason: e.reason,
        action: "Rollout",
        note: e.message.clone(),
    })
}

/// Whether the rollout needs a closer look than the periodic resync (deadlines and the
/// surge fallback are measured on pods, whose changes are not watched).
pub fn in_flight(plan: &RolloutPlan) -> bool {
    matches!(
        plan.phase,
        Phase::Rolling | Phase::OneAtATime | Phase::RollingBack
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upgrade::{
        Action, Budget, ConditionUpdate, RolloutMemory, RolloutPlan, Strategy, TemplateSource,
    };
    use k8s_openapi::api::{
        apps::v1::{DeploymentSpec, ReplicaSetSpec},
        core::v1::PodTemplateSpec,
    };
    use k8s_openapi::apimachinery::pkg::{apis::meta::v1::ObjectMeta, util::intstr::IntOrString};
    use std::collections::BTreeMap;

    fn template(label: &str) -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(BTreeMap::from([
                    ("v".to_string(), label.to_string()),
                    ("pod-template-hash".to_string(), "h".to_string()),
                ])),
                ..Default::default()
            }),
            spec: None,
        }
    }

    fn deployment(label: &str) -> Deployment {
        Deployment {
            spec: Some(DeploymentSpec {
                template: template(label),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn plan(template: TemplateSource, phase: Phase) -> RolloutPlan {
        let cond = |t: &'static str| ConditionUpdate {
            type_: t,
            status: false,
            reason: "R",
            message: String::new(),
        };
        RolloutPlan {
            action: Action::Wait,
            phase,
            template,
            strategy: Strategy {
                max_surge: Budget::Count(0),
                max_unavailable: Budget::Count(1),
            },
            memory: RolloutMemory::default(),
            progressing: cond("Progressing"),
            degraded: cond("Degraded"),
            event: None,
        }
    }

    fn label_of(d: &Deployment) -> String {
        d.spec
            .as_ref()
            .unwrap()
            .template
            .metadata
            .as_ref()
            .unwrap()
            .labels
            .as_ref()
            .unwrap()["v"]
            .clone()
    }

    #[test]
    fn template_follows_the_plan_and_strategy_always_lands() {
        let rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some("old-rs".into()),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                template: Some(template("old")),
                ..Default::default()
            }),
            ..Default::default()
        };
        let observed = deployment("current");
        let sets = [rs];
        let spec = deployment_to_apply(
            Some(deployment("spec")),
            &plan(TemplateSource::Spec, Phase::Rolling),
            Some(&observed),
            &sets,
        )
        .unwrap();
        assert_eq!(label_of(&spec), "spec");
        let ru = spec.spec.unwrap().strategy.unwrap().rolling_update.unwrap();
        assert_eq!(ru.max_surge, Some(IntOrString::Int(0)));
        let cur = deployment_to_apply(
            Some(deployment("spec")),
            &plan(TemplateSource::Current, Phase::WaitingForWeights),
            Some(&observed),
            &sets,
        )
        .unwrap();
        assert_eq!(label_of(&cur), "current");
        let back = deployment_to_apply(
            Some(deployment("spec")),
            &plan(
                TemplateSource::ReplicaSet("old-rs".into()),
                Phase::RollingBack,
            ),
            Some(&observed),
            &sets,
        )
        .unwrap();
        assert_eq!(label_of(&back), "old");
        let labels = back
            .spec
            .unwrap()
            .template
            .metadata
            .unwrap()
            .labels
            .unwrap();
        assert!(!labels.contains_key("pod-template-hash"));
        // Nothing exists and the plan keeps the current template: create nothing.
        assert!(deployment_to_apply(
            Some(deployment("spec")),
            &plan(TemplateSource::Current, Phase::WaitingForWeights),
            None,
            &sets,
        )
        .is_none());
    }

    #[test]
    fn stamped_revision_is_the_template_revision_and_memory_round_trips() {
        let mut d = deployment("x");
        let rev = stamp_revision(&mut d).unwrap();
        assert_eq!(rev, template_revision(&d.spec.as_ref().unwrap().template));
        let annotations = d
            .spec
            .unwrap()
            .template
            .metadata
            .unwrap()
            .annotations
            .unwrap();
        assert_eq!(annotations[TEMPLATE_REVISION_ANNOTATION], rev);

        let mut p = plan(TemplateSource::Spec, Phase::OneAtATime);
        p.memory = RolloutMemory {
            current_revision: Some("a".into()),
            update_revision: Some("b".into()),
            last_ready_revision: Some("a".into()),
            failed_revision: Some("c".into()),
            phase: Some(Phase::OneAtATime),
        };
        let mut status = GlmDeploymentStatus::default();
        apply_to_status(&mut status, None, &p, Some(1), Timestamp::UNIX_EPOCH);
        assert_eq!(status.rollout_phase.as_deref(), Some("OneAtATime"));
        assert_eq!(memory_from_status(Some(&status)), p.memory);
        assert!(!pending_revision(&crate::fixtures::glmd())
            .chars()
            .all(|c| c.is_ascii_hexdigit()));
    }
}
