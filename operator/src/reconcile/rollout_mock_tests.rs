//! Rolling upgrades through reconcile against a mock apiserver: which template lands on the
//! Deployment, what status says and which Events are published.

use glm_crds::{GlmDeploymentStatus, ModelPhase, ModelStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use serde_json::{json, Value};

use super::*;
use crate::fixtures::{
    condition, glmd, model_path, rendered, replica_set, with_status, within, NS_APPS, NS_BATCH,
    NS_CORE, OLD_SHA, SHA, STATUS,
};
use crate::{
    clock::FixedClock,
    fixtures::at,
    reconcile::server_plan::{DOWNLOAD_POLL, ROLLOUT_POLL},
    upgrade,
};
use std::sync::Arc;

fn ready_true() -> Condition {
    Condition {
        type_: "Ready".into(),
        status: "True".into(),
        reason: "ReplicasReady".into(),
        message: "2/2 replicas ready".into(),
        observed_generation: Some(3),
        last_transition_time: Time(Timestamp::UNIX_EPOCH),
    }
}

fn template_of(v: &Value) -> Value {
    v["spec"]["template"].clone()
}

fn annotation(v: &Value) -> String {
    v["spec"]["template"]["metadata"]["annotations"][upgrade::TEMPLATE_REVISION_ANNOTATION]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn revision_change_while_weights_download_keeps_the_deployment() {
    let (ctx, mut api) = Context::test();
    let mut g = glmd();
    let (old, old_rev) = rendered(&g, OLD_SHA);
    // The spec now names another revision (a new download Job), the old one is serving.
    g.status = Some(GlmDeploymentStatus {
        model: Some(ModelStatus {
            phase: ModelPhase::Ready,
            job_name: Some("glm45-dl-old".into()),
            commit: Some(OLD_SHA.into()),
            path: Some(model_path(OLD_SHA)),
            ..Default::default()
        }),
        conditions: vec![ready_true()],
        current_revision: Some(old_rev.clone()),
        update_revision: Some(old_rev.clone()),
        last_ready_revision: Some(old_rev.clone()),
        rollout_phase: Some("Complete".into()),
        ..Default::default()
    });
    let job = job_name(&g);
    let job_obj = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": job, "namespace": "llm"},
        "status": {"active": 1}});
    let observed = with_status(&old, 1, 2, 2, 2);
    let old_template = template_of(&observed);
    let old_rs = replica_set(&old, "glm45-old", "aaa", 1);
    let old_rev2 = old_rev.clone();
    let verifier = tokio::spawn(async move {
        api.apply(&format!("{NS_CORE}/persistentvolumeclaims/glm45-cache"))
            .await;
        api.get(&format!("{NS_BATCH}/jobs/{job}"), Some(job_obj))
            .await;
        api.list(
            &format!("{NS_CORE}/pods"),
            "labelSelector=job-name",
            "PodList",
            vec![],
        )
        .await;
        api.server_state(Some(observed), vec![old_rs], vec![]).await;
        let d = api.apply(&format!("{NS_APPS}/deployments/glm45")).await;
        assert_eq!(template_of(&d), old_template, "template must not change");
        assert_eq!(annotation(&d), old_rev2);
        api.apply(&format!("{NS_CORE}/services/glm45")).await;
        let status = api.apply(STATUS).await;
        let s = &status["status"];
        assert_eq!(s["rolloutPhase"], "WaitingForWeights");
        assert_eq!(s["currentRevision"], old_rev2.as_str());
        assert_eq!(s["updateRevision"], old_rev2.as_str());
        assert_eq!(s["resolvedRevision"], OLD_SHA);
        assert_eq!(s["model"]["phase"], "Downloading");
        assert_eq!(
            condition(s, "Progressing"),
            ("True".into(), "Downloading".into())
        );
        assert_eq!(condition(s, "Degraded").0, "False");
    });
    let action = within(reconcile_glmd(&g, &ctx)).await.unwrap();
    assert_eq!(action, Action::requeue(DOWNLOAD_POLL));
    within(verifier).await.unwrap();
}

#[tokio::test]
async fn succeeded_job_rolls_out_the_new_template() {
    let (ctx, mut api) = Context::test();
    let mut g = glmd();
    let (old, old_rev) = rendered(&g, OLD_SHA);
    let (_, new_rev) = rendered(&g, SHA);
    assert_ne!(old_rev, new_rev);
    let job = job_name(&g);
    g.status = Some(GlmDeploymentStatus {
        model: Some(ModelStatus {
            phase: ModelPhase::Downloading,
            job_name: Some(job.clone()),
            ..Default::default()
        }),
        conditions: vec![ready_true()],
        current_revision: Some(old_rev.clone()),
        update_revision: Some(old_rev.clone()),
        last_ready_revision: Some(old_rev.clone()),
        rollout_phase: Some("WaitingForWeights".into()),
        ..Default::default()
    });
    let job_obj = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": job, "namespace": "llm"},
        "status": {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}});
    let message = json!({"commit": SHA, "path": model_path(SHA), "bytes": 1234}).to_string();
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": format!("{job}-abcde"), "namespace": "llm"},
        "status": {"phase": "Succeeded", "containerStatuses": [{"name": "download", "image": "i", "imageID": "", "ready": false,
            "restartCount": 0, "state": {"terminated": {"exitCode": 0, "message": message}}}]}});
    let observed = with_status(&old, 1, 2, 2, 2);
    let old_rs = replica_set(&old, "glm45-old", "aaa", 1);
    let (old_rev2, new_rev2) = (old_rev.clone(), new_rev.clone());
    let verifier = tokio::spawn(async move {
        api.apply(&format!("{NS_CORE}/persistentvolumeclaims/glm45-cache"))
            .await;
        api.get(&format!("{NS_BATCH}/jobs/{job}"), Some(job_obj))
            .await;
        api.list(
            &format!("{NS_CORE}/pods"),
            "labelSelector=job-name",
            "PodList",
            vec![pod],
        )
        .await;
        // The download succeeded: older download Jobs are pruned (none here).
        api.list(
            &format!("{NS_BATCH}/jobs"),
            "labelSelector=app.kubernetes.io%2Fcomponent%3Ddownload",
            "JobList",
            vec![],
        )
        .await;
        api.server_state(Some(observed), vec![old_rs], vec![]).await;
        let d = api.apply(&format!("{NS_APPS}/deployments/glm45")).await;
        let c = &d["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["args"][2], model_path(SHA).as_str());
        assert_eq!(annotation(&d), new_rev2);
        assert_eq!(d["spec"]["strategy"]["rollingUpdate"]["maxSurge"], 1);
        api.apply(&format!("{NS_CORE}/services/glm45")).await;
        let status = api.apply(STATUS).await;
        let s = &status["status"];
        assert_eq!(s["rolloutPhase"], "Rolling");
        assert_eq!(s["updateRevision"], new_rev2.as_str());
        assert_eq!(s["currentRevision"], old_rev2.as_str());
        assert_eq!(s["resolvedRevision"], SHA);
        assert_eq!(
            condition(s, "Progressing"),
            ("True".into(), "RollingOut".into())
        );
        let ev = api.event("llm").await;
        assert_eq!(ev["reason"], "DownloadSucceeded");
        let ev = api.event("llm").await;
        assert_eq!(
            (ev["reason"].as_str(), ev["type"].as_str()),
            (Some("RolloutStarted"), Some("Normal"))
        );
    });
    let action = within(reconcile_glmd(&g, &ctx)).await.unwrap();
    assert_eq!(
        action,
        Action::requeue(ROLLOUT_POLL),
        "a rollout is watched"
    );
    within(verifier).await.unwrap();
}

#[tokio::test]
async fn missed_progress_deadline_rolls_back_to_the_last_ready_replica_set() {
    let (ctx, mut api) = Context::test();
    let mut g = glmd();
    let (old, old_rev) = rendered(&g, OLD_SHA);
    let (new, new_rev) = rendered(&g, SHA);
    g.status = Some(GlmDeploymentStatus {
        model: Some(ModelStatus {
            phase: ModelPhase::Ready,
            job_name: Some(job_name(&g)),
            commit: Some(SHA.into()),
            path: Some(model_path(SHA)),
            ..Default::default()
        }),
        conditions: vec![ready_true()],
        current_revision: Some(old_rev.clone()),
        update_revision: Some(new_rev.clone()),
        last_ready_revision: Some(old_rev.clone()),
        rollout_phase: Some("Rolling".into()),
        ..Default::default()
    });
    // One new pod never became ready; it was created long before the deadline.
    let observed = with_status(&new, 2, 3, 1, 2);
    let sets = vec![
        replica_set(&old, "glm45-old", "aaa", 1),
        replica_set(&new, "glm45-new", "bbb", 2),
    ];
    let stuck = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "glm45-bbb-1", "namespace": "llm",
        "labels": {"pod-template-hash": "bbb"}, "creationTimestamp": "2020-01-01T00:00:00Z"},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}]}});
    let old_template = template_of(&serde_json::to_value(&old).unwrap());
    let (old_rev2, new_rev2) = (old_rev.clone(), new_rev.clone());
    let verifier = tokio::spawn(async move {
        api.apply(&format!("{NS_CORE}/persistentvolumeclaims/glm45-cache"))
            .await;
        api.server_state(Some(observed), sets, vec![stuck]).await;
        let d = api.apply(&format!("{NS_APPS}/deployments/glm45")).await;
        // The old ReplicaSet's template, without the pod-template-hash the controller added.
        assert_eq!(template_of(&d), old_template);
        assert_eq!(annotation(&d), old_rev2);
        api.apply(&format!("{NS_CORE}/services/glm45")).await;
        let status = api.apply(STATUS).await;
        let s = &status["status"];
        assert_eq!(
            condition(s, "Degraded"),
            ("True".into(), "ProgressDeadlineExceeded".into())
        );
        assert_eq!(
            condition(s, "Progressing"),
            ("True".into(), "RollingBack".into())
        );
        assert_eq!(s["rolloutPhase"], "RollingBack");
        assert_eq!(s["failedRevision"], new_rev2.as_str());
        assert_eq!(s["updateRevision"], old_rev2.as_str());
        assert_eq!(s["lastReadyRevision"], old_rev2.as_str());
        assert_eq!(s["resolvedRevision"], OLD_SHA, "the old model serves again");
        // Exactly one Warning: the plan's, not a second one from the status diff.
        let ev = api.event("llm").await;
        assert_eq!(
            (ev["reason"].as_str(), ev["type"].as_str()),
            (Some("ProgressDeadlineExceeded"), Some("Warning"))
        );
        assert!(
            ev["note"].as_str().unwrap().contains("rolling back"),
            "{ev}"
        );
    });
    within(reconcile_glmd(&g, &ctx)).await.unwrap();
    within(verifier).await.unwrap();
}

/// A rollout whose surge pod has waited for a GPU since 290 s before the test clock's
/// [`NOW`](crate::fixtures::NOW) (well within the progress deadline) while the old pods serve:
/// the GlmDeployment, what the apiserver answers (Deployment, ReplicaSets, pods), and the new
/// template.
fn surge_waits_for_a_gpu() -> (GlmDeployment, Value, Vec<Value>, Vec<Value>, Value) {
    let mut g = glmd();
    let (old, old_rev) = rendered(&g, OLD_SHA);
    let (new, new_rev) = rendered(&g, SHA);
    g.status = Some(GlmDeploymentStatus {
        model: Some(ModelStatus {
            phase: ModelPhase::Ready,
            job_name: Some(job_name(&g)),
            commit: Some(SHA.into()),
            path: Some(model_path(SHA)),
            ..Default::default()
        }),
        conditions: vec![ready_true()],
        current_revision: Some(old_rev.clone()),
        update_revision: Some(new_rev.clone()),
        last_ready_revision: Some(old_rev.clone()),
        rollout_phase: Some("Rolling".into()),
        ..Default::default()
    });
    let observed = with_status(&new, 2, 3, 1, 2);
    let sets = vec![
        replica_set(&old, "glm45-old", "aaa", 1),
        replica_set(&new, "glm45-new", "bbb", 2),
    ];
    let ago = |s: i64| at(-s).to_string();
    let surge = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "glm45-bbb-1", "namespace": "llm",
        "labels": {"pod-template-hash": "bbb"}, "creationTimestamp": ago(300)},
        "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
            "reason": "Unschedulable", "message": "0/2 nodes: Insufficient nvidia.com/gpu",
            "lastTransitionTime": ago(290)}]}});
    let serving = |n: &str| {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": n, "namespace": "llm",
        "labels": {"pod-template-hash": "aaa"}, "creationTimestamp": ago(9000)},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}})
    };
    let pods = vec![serving("glm45-aaa-1"), serving("glm45-aaa-2"), surge];
    let new_template = template_of(&serde_json::to_value(&new).unwrap());
    (g, observed, sets, pods, new_template)
}

#[tokio::test]
async fn unschedulable_surge_pod_falls_back_to_one_at_a_time() {
    let (ctx, mut api) = Context::test();
    let (g, observed, sets, pods, new_template) = surge_waits_for_a_gpu();
    let verifier = tokio::spawn(async move {
        api.apply(&format!("{NS_CORE}/persistentvolumeclaims/glm45-cache"))
            .await;
        api.server_state(Some(observed), sets, pods).await;
        let d = api.apply(&format!("{NS_APPS}/deployments/glm45")).await;
        assert_eq!(template_of(&d), new_template, "the rollout goes on");
        let ru = &d["spec"]["strategy"]["rollingUpdate"];
        assert_eq!(
            (&ru["maxSurge"], &ru["maxUnavailable"]),
            (&json!(0), &json!(1))
        );
        api.apply(&format!("{NS_CORE}/services/glm45")).await;
        let status = api.apply(STATUS).await;
        let s = &status["status"];
        assert_eq!(s["rolloutPhase"], "OneAtATime");
        assert_eq!(
            condition(s, "Progressing"),
            ("True".into(), "SurgeUnschedulable".into())
        );
        assert_eq!(condition(s, "Degraded").0, "False");
        let ev = api.event("llm").await;
        assert_eq!(
            (ev["reason"].as_str(), ev["type"].as_str()),
            (Some("SurgeUnschedulable"), Some("Warning"))
        );
    });
    let action = within(reconcile_glmd(&g, &ctx)).await.unwrap();
    assert_eq!(action, Action::requeue(ROLLOUT_POLL));
    within(verifier).await.unwrap();
}

#[tokio::test]
async fn the_surge_fallback_waits_by_the_injected_clock() {
    // The same cluster, reconciled 30 s after the surge pod became Unschedulable (the
    // fallback waits 60 s): the rollout keeps its surge, whatever the wall clock says.
    let clock = Arc::new(FixedClock::new(at(-290 + 30)));
    let (ctx, mut api) = Context::test_with_clock(clock);
    let (g, observed, sets, pods, new_template) = surge_waits_for_a_gpu();
    let verifier = tokio::spawn(async move {
        api.apply(&format!("{NS_CORE}/persistentvolumeclaims/glm45-cache"))
            .await;
        api.server_state(Some(observed), sets, pods).await;
        let d = api.apply(&format!("{NS_APPS}/deployments/glm45")).await;
        assert_eq!(template_of(&d), new_template, "the rollout goes on");
        let ru = &d["spec"]["strategy"]["rollingUpdate"];
        assert_eq!(
            (&ru["maxSurge"], &ru["maxUnavailable"]),
            (&json!(1), &json!(0)),
            "no fallback before 60 s"
        );
        api.apply(&format!("{NS_CORE}/services/glm45")).await;
        let status = api.apply(STATUS).await;
        let s = &status["status"];
        assert_eq!(s["rolloutPhase"], "Rolling");
        assert_eq!(condition(s, "Degraded").0, "False");
        // Conditions that change are stamped with the injected time.
        let progressing = s["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Progressing")
            .unwrap();
        assert_eq!(
            progressing["lastTransitionTime"].as_str(),
            Some(at(-260).to_string().as_str()),
            "{progressing}"
        );
    });
    let action = within(reconcile_glmd(&g, &ctx)).await.unwrap();
    assert_eq!(action, Action::requeue(ROLLOUT_POLL));
    within(verifier).await.unwrap();
}
