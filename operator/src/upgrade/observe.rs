//! Kubernetes objects -> the state machine's observed inputs, and the revision of a template.

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentStrategy, ReplicaSet, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::jiff::Timestamp;

use super::{ObservedDeployment, ObservedPod, ObservedReplicaSet, Strategy};

/// Pod-template annotation carrying the revision (copied by Kubernetes into ReplicaSets'
/// templates and into pods).
pub const TEMPLATE_REVISION_ANNOTATION: &str = "serving.glm.dev/template-revision";
const POD_TEMPLATE_HASH: &str = "pod-template-hash";
const K8S_REVISION: &str = "deployment.kubernetes.io/revision";

/// A stable name for a pod template: 16 hex digits of FNV-1a over its JSON (without the
/// revision annotation itself). Same template, same revision, across operator restarts.
pub fn template_revision(template: &PodTemplateSpec) -> String {
    let mut template = template.clone();
    if let Some(meta) = template.metadata.as_mut() {
        if let Some(annotations) = meta.annotations.as_mut() {
            annotations.remove(TEMPLATE_REVISION_ANNOTATION);
            // An emptied map must hash like an absent one.
            if annotations.is_empty() {
                meta.annotations = None;
            }
        }
    }
    // Serializing a k8s-openapi struct cannot fail (no maps with non-string keys); an
    // empty input on the impossible error still yields a valid, if shared, name.
    let bytes = serde_json::to_vec(&template).unwrap_or_default();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

fn revision_of(template: Option<&PodTemplateSpec>) -> Option<String> {
    template?
        .metadata
        .as_ref()?
        .annotations
        .as_ref()?
        .get(TEMPLATE_REVISION_ANNOTATION)
        .cloned()
}

fn count(n: Option<i32>) -> u32 {
    n.and_then(|n| u32::try_from(n).ok()).unwrap_or(0)
}

pub fn observe_deployment(d: &Deployment) -> ObservedDeployment {
    let status = d.status.as_ref();
    let spec = d.spec.as_ref();
    ObservedDeployment {
        template_revision: revision_of(spec.map(|s| &s.template)),
        generation: d.metadata.generation.unwrap_or(0),
        observed_generation: status.and_then(|s| s.observed_generation).unwrap_or(0),
        replicas: spec.and_then(|s| s.replicas).map_or(1, |n| count(Some(n))),
        status_replicas: count(status.and_then(|s| s.replicas)),
        updated_replicas: count(status.and_then(|s| s.updated_replicas)),
        ready_replicas: count(status.and_then(|s| s.ready_replicas)),
        available_replicas: count(status.and_then(|s| s.available_replicas)),
        deadline_exceeded: status
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| {
                cs.iter().any(|c| {
                    c.type_ == "Progressing"
                        && c.status == "False"
                        && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
                })
            }),
    }
}

pub fn observe_replica_set(rs: &ReplicaSet) -> ObservedReplicaSet {
    let meta = &rs.metadata;
    ObservedReplicaSet {
        name: meta.name.clone().unwrap_or_default(),
        revision: revision_of(rs.spec.as_ref().and_then(|s| s.template.as_ref())),
        pod_template_hash: meta
            .labels
            .as_ref()
            .and_then(|l| l.get(POD_TEMPLATE_HASH))
            .cloned()
            .unwrap_or_default(),
        k8s_revision: meta
            .annotations
            .as_ref()
            .and_then(|a| a.get(K8S_REVISION))
            .and_then(|r| r.parse().ok())
            .unwrap_or(0),
        replicas: count(rs.status.as_ref().map(|s| s.replicas)),
        ready_replicas: count(rs.status.as_ref().and_then(|s| s.ready_replicas)),
        created: meta
            .creation_timestamp
            .as_ref()
            .map_or(Timestamp::UNIX_EPOCH, |t| t.0),
    }
}

pub fn observe_pod(p: &Pod) -> ObservedPod {
    let status = p.status.as_ref();
    let conditions = status.and_then(|s| s.conditions.as_deref()).unwrap_or(&[]);
    let created = p
        .metadata
        .creation_timestamp
        .as_ref()
        .map_or(Timestamp::UNIX_EPOCH, |t| t.0);
    ObservedPod {
        name: p.metadata.name.clone().unwrap_or_default(),
        pod_template_hash: p
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(POD_TEMPLATE_HASH))
            .cloned(),
        phase: status
            .and_then(|s| s.phase.clone())
            .unwrap_or_else(|| "Pending".to_string()),
        ready: conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True"),
        unschedulable: conditions
            .iter()
            .find(|c| {
                c.type_ == "PodScheduled"
                    && c.status == "False"
                    && c.reason.as_deref() == Some("Unschedulable")
            })
            .map(|c| {
                (
                    c.last_transition_time.as_ref().map_or(created, |t| t.0),
                    c.message.clone().unwrap_or_default(),
                )
            }),
        created,
        terminating: p.metadata.deletion_timestamp.is_some(),
    }
}

/// The pod template to restore for [`super::TemplateSource::ReplicaSet`]: the ReplicaSet's
/// template without the `pod-template-hash` label the Deployment controller added (as
/// `kubectl rollout undo` does).
pub fn rollback_template(rs: &ReplicaSet) -> Option<PodTemplateSpec> {
    let mut template = rs.spec.as_ref()?.template.clone()?;
    if let Some(labels) = template.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove(POD_TEMPLATE_HASH);
    }
    Some(template)
}

/// The Deployment strategy for [`super::RolloutPlan::strategy`].
pub fn deployment_strategy(strategy: &Strategy) -> DeploymentStrategy {
    DeploymentStrategy {
        type_: Some("RollingUpdate".to_string()),
        rolling_update: Some(RollingUpdateDeployment {
            max_surge: Some(strategy.max_surge.to_int_or_string()),
            max_unavailable: Some(strategy.max_unavailable.to_int_or_string()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    use std::collections::BTreeMap;

    #[test]
    fn template_revision_is_stable_and_ignores_its_own_annotation() {
        let mut t = PodTemplateSpec::default();
        let meta = t.metadata.get_or_insert_with(Default::default);
        meta.labels = Some(BTreeMap::from([("a".to_string(), "b".to_string())]));
        let r1 = template_revision(&t);
        assert_eq!(r1.len(), 16);
        let meta = t.metadata.get_or_insert_with(Default::default);
        meta.annotations = Some(BTreeMap::from([(
            TEMPLATE_REVISION_ANNOTATION.to_string(),
            r1.clone(),
        )]));
        assert_eq!(template_revision(&t), r1);
        let meta = t.metadata.get_or_insert_with(Default::default);
        meta.labels = Some(BTreeMap::from([("a".to_string(), "c".to_string())]));
        assert_ne!(template_revision(&t), r1);
    }

    #[test]
    fn rollback_template_drops_the_pod_template_hash() {
        use k8s_openapi::api::apps::v1::ReplicaSetSpec;
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
        let labels = BTreeMap::from([
            (POD_TEMPLATE_HASH.to_string(), "abc".to_string()),
            ("app".to_string(), "glm".to_string()),
        ]);
        let rs = ReplicaSet {
            spec: Some(ReplicaSetSpec {
                template: Some(PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(labels),
                        ..Default::default()
                    }),
                    spec: None,
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let t = rollback_template(&rs).unwrap();
        let labels = t.metadata.unwrap().labels.unwrap();
        assert_eq!(
            labels,
            BTreeMap::from([("app".to_string(), "glm".to_string())])
        );
        let s = deployment_strategy(&Strategy {
            max_surge: super::super::Budget::Count(0),
            max_unavailable: super::super::Budget::Percent(25),
        });
        let ru = s.rolling_update.unwrap();
        assert_eq!(
            (ru.max_surge, ru.max_unavailable),
            (
                Some(IntOrString::Int(0)),
                Some(IntOrString::String("25%".into()))
            )
        );
    }

    #[test]
    fn pending_unschedulable_pod_is_observed_with_its_message() {
        let at = Timestamp::from_second(1_000).unwrap();
        let mut p = Pod::default();
        p.metadata.name = Some("new-1".into());
        p.metadata.labels = Some(BTreeMap::from([(
            POD_TEMPLATE_HASH.to_string(),
            "h2".to_string(),
        )]));
        p.status = Some(PodStatus {
            phase: Some("Pending".into()),
            conditions: Some(vec![PodCondition {
                type_: "PodScheduled".into(),
                status: "False".into(),
                reason: Some("Unschedulable".into()),
                message: Some("0/3 nodes: Insufficient nvidia.com/gpu".into()),
                last_transition_time: Some(Time(at)),
                ..Default::default()
            }]),
            ..Default::default()
        });
        let o = observe_pod(&p);
        assert_eq!(o.pod_template_hash.as_deref(), Some("h2"));
        assert!(!o.ready && !o.terminating);
        assert_eq!(
            o.unschedulable,
            Some((at, "0/3 nodes: Insufficient nvidia.com/gpu".to_string()))
        );
    }
}
