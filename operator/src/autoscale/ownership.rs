//! Who may write the Deployment's `spec.replicas`, read from `metadata.managedFields`.
//!
//! Operators that always apply `replicas` fight HPA/KEDA (OPERATORS.md §2, item 12). The
//! rules here:
//! * autoscaling enabled: the scale loop writes `replicas` through the Deployment's `scale`
//!   subresource under [`AUTOSCALER_FIELD_MANAGER`] (the operator's one field manager). The
//!   API server tracks that write as its own managedFields entry (operation Update,
//!   subresource `scale`), so the reconcile's apply may omit `replicas` without conflicting
//!   with it or resetting it, or carry the autoscaler's own decision
//!   (`Autoscaler::desired_replicas`): one value, two entries of the same manager.
//! * autoscaling disabled: the apply carries `replicas = spec.replicas` unless a manager that
//!   is not the operator owns the field (an HPA or KEDA targeting the Deployment directly,
//!   `kubectl scale`); then it is omitted and the other manager keeps it. HPA/KEDA should
//!   target the GlmDeployment's own scale subresource instead, which changes `spec.replicas`
//!   and flows through here.

use k8s_openapi::api::apps::v1::Deployment;

/// Field manager for replicas writes: the operator's one manager (glm-crds).
pub const AUTOSCALER_FIELD_MANAGER: &str = glm_crds::FIELD_MANAGER;

/// What the reconcile apply does with `spec.replicas`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicasPlan {
    /// Put `replicas` in the applied Deployment.
    Set(i32),
    /// Leave `replicas` out: the autoscaler drives it through the scale subresource.
    OmitAutoscaled,
    /// Leave `replicas` out: another manager owns it (named), and the operator never
    /// overwrites a field someone else owns.
    OmitForeignOwner(String),
}

/// Decides whether the reconcile's server-side apply of the Deployment carries replicas.
/// `observed` is the Deployment as last read (None before it exists).
pub fn replicas_for_apply(
    autoscaling_enabled: bool,
    spec_replicas: i32,
    observed: Option<&Deployment>,
) -> ReplicasPlan {
    if autoscaling_enabled {
        return ReplicasPlan::OmitAutoscaled;
    }
    match observed.and_then(foreign_replicas_manager) {
        Some(manager) => ReplicasPlan::OmitForeignOwner(manager),
        None => ReplicasPlan::Set(spec_replicas),
    }
}

/// The replica count to write into the applied Deployment (`None` leaves the field to its
/// owner): the spec's, or for autoscaling the autoscaler's latest `decided` count, or a first
/// count (`initial`) when the Deployment does not exist yet and the loop has not decided.
pub fn replicas_to_write(
    plan: &ReplicasPlan,
    decided: Option<i32>,
    deployment_exists: bool,
    initial: i32,
) -> Option<i32> {
    match plan {
        ReplicasPlan::Set(n) => Some(*n),
        ReplicasPlan::OmitAutoscaled => decided.or((!deployment_exists).then_some(initial)),
        ReplicasPlan::OmitForeignOwner(_) => None,
    }
}

/// Whether the autoscaler loop should run for a GlmDeployment: autoscaling asked for and a
/// server Deployment to scale (none while the weights download or the server cannot run it).
pub fn autoscaler_wanted(enabled: bool, deployment_exists: bool) -> bool {
    enabled && deployment_exists
}

/// The first manager other than the operator that owns `spec.replicas`, if any.
pub fn foreign_replicas_manager(deployment: &Deployment) -> Option<String> {
    let fields = deployment.metadata.managed_fields.as_ref()?;
    fields
        .iter()
        .filter(|entry| entry.manager.as_deref() != Some(AUTOSCALER_FIELD_MANAGER))
        .find(|entry| {
            entry
                .fields_v1
                .as_ref()
                .and_then(|f| f.0.get("f:spec"))
                .and_then(|spec| spec.get("f:replicas"))
                .is_some()
        })
        .map(|entry| {
            entry
                .manager
                .clone()
                .unwrap_or_else(|| "unknown".to_string())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replica_count_table() {
        let foreign = ReplicasPlan::OmitForeignOwner("hpa".into());
        let cases = [
            (ReplicasPlan::Set(3), Some(7), true, 1, Some(3)),
            (ReplicasPlan::OmitAutoscaled, Some(7), true, 1, Some(7)),
            (ReplicasPlan::OmitAutoscaled, None, true, 1, None),
            (ReplicasPlan::OmitAutoscaled, None, false, 2, Some(2)),
            (foreign, Some(7), true, 1, None),
        ];
        for (plan, decided, exists, initial, want) in cases {
            assert_eq!(
                replicas_to_write(&plan, decided, exists, initial),
                want,
                "{plan:?} {decided:?} {exists}"
            );
        }
        assert!(autoscaler_wanted(true, true));
        assert!(!autoscaler_wanted(true, false));
        assert!(!autoscaler_wanted(false, true));
    }
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry};
    use serde_json::json;

    fn deployment(entries: Vec<(&str, Option<&str>, serde_json::Value)>) -> Deployment {
        let mut d = Deployment::default();
        d.metadata.managed_fields = Some(
            entries
                .into_iter()
                .map(|(manager, subresource, fields)| ManagedFieldsEntry {
                    manager: Some(manager.to_string()),
                    operation: Some("Update".to_string()),
                    subresource: subresource.map(str::to_string),
                    fields_v1: Some(FieldsV1(fields)),
                    ..Default::default()
                })
                .collect(),
        );
        d
    }

    #[test]
    fn enabled_always_omits_replicas() {
        let hpa = deployment(vec![(
            "kube-controller-manager",
            Some("scale"),
            json!({"f:spec": {"f:replicas": {}}}),
        )]);
        assert_eq!(
            replicas_for_apply(true, 3, Some(&hpa)),
            ReplicasPlan::OmitAutoscaled
        );
        assert_eq!(
            replicas_for_apply(true, 3, None),
            ReplicasPlan::OmitAutoscaled
        );
    }

    #[test]
    fn disabled_sets_replicas_when_nobody_else_owns_them() {
        let ours = deployment(vec![
            (
                AUTOSCALER_FIELD_MANAGER,
                None,
                json!({"f:spec": {"f:replicas": {}, "f:template": {}}}),
            ),
            (
                AUTOSCALER_FIELD_MANAGER,
                Some("scale"),
                json!({"f:spec": {"f:replicas": {}}}),
            ),
            // The deployment controller owns status, not spec.replicas.
            (
                "kube-controller-manager",
                Some("status"),
                json!({"f:status": {"f:replicas": {}}}),
            ),
        ]);
        assert_eq!(
            replicas_for_apply(false, 3, Some(&ours)),
            ReplicasPlan::Set(3)
        );
        assert_eq!(replicas_for_apply(false, 2, None), ReplicasPlan::Set(2));
    }

    #[test]
    fn disabled_leaves_replicas_to_hpa() {
        let hpa = deployment(vec![
            (
                AUTOSCALER_FIELD_MANAGER,
                None,
                json!({"f:spec": {"f:template": {}}}),
            ),
            (
                "kube-controller-manager",
                Some("scale"),
                json!({"f:spec": {"f:replicas": {}}}),
            ),
        ]);
        assert_eq!(
            replicas_for_apply(false, 3, Some(&hpa)),
            ReplicasPlan::OmitForeignOwner("kube-controller-manager".to_string())
        );
        assert_eq!(
            foreign_replicas_manager(&hpa).as_deref(),
            Some("kube-controller-manager")
        );
    }
}
