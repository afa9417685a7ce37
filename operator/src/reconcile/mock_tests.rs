//! The reconcile's API calls against a mock apiserver: method, path, fieldManager, force, body.

use glm_crds::{GlmDeploymentStatus, ModelPhase, ModelStatus};
use serde_json::json;

use super::*;
use crate::fixtures::{condition, glmd, within, NS_APPS, NS_BATCH, NS_CORE, SHA, STATUS};
use crate::reconcile::server_plan::DOWNLOAD_POLL;

#[tokio::test]
async fn fresh_object_creates_cache_and_download_job() {
    let (ctx, mut api) = Context::test();
    let g = glmd();
    let job = job_name(&g);
    let verifier = tokio::spawn(async move {
        let pvc = api
            .apply(&format!("{NS_CORE}/persistentvolumeclaims/glm45-cache"))
            .await;
        assert_eq!(pvc["kind"], "PersistentVolumeClaim");
        assert_eq!(pvc["spec"]["resources"]["requests"]["storage"], "800Gi");
        assert_eq!(
            pvc["metadata"]["ownerReferences"][0]["kind"],
            "GlmDeployment"
        );
        api.get(&format!("{NS_BATCH}/jobs/{job}"), None).await;
        let j = api.apply(&format!("{NS_BATCH}/jobs/{job}")).await;
        assert_eq!(j["kind"], "Job");
        let args = &j["spec"]["template"]["spec"]["containers"][0]["args"];
        assert_eq!(args[0], "download");
        assert_eq!(args[2], "zai-org/GLM-4.5-Air");
        assert_eq!(j["spec"]["backoffLimit"], 3);
        api.get(&format!("{NS_APPS}/deployments/glm45"), None).await;
        let status = api.apply(STATUS).await;
        assert_eq!(status["apiVersion"], "serving.glm.dev/v1alpha1");
        let s = &status["status"];
        assert_eq!(
            condition(s, "ModelReady"),
            ("False".into(), "DownloadPending".into())
        );
        assert_eq!(
            condition(s, "Progressing"),
            ("True".into(), "Downloading".into())
        );
        assert_eq!(
            condition(s, "Ready"),
            ("False".into(), "WaitingForModel".into())
        );
        assert_eq!(s["observedGeneration"], 3);
        assert_eq!(s["model"]["phase"], "Pending");
        assert_eq!(s["model"]["jobName"], job.as_str());
        let ev = api.event("llm").await;
        assert_eq!(
            (ev["reason"].as_str(), ev["type"].as_str()),
            (Some("DownloadStarted"), Some("Normal"))
        );
    });
    let action = within(reconcile_glmd(&g, &ctx)).await.unwrap();
    assert_eq!(action, Action::requeue(DOWNLOAD_POLL));
    within(verifier).await.unwrap();
}

#[tokio::test]
async fn succeeded_job_creates_deployment_and_service() {
    let (ctx, mut api) = Context::test();
    let mut g = glmd();
    let job = job_name(&g);
    g.status = Some(GlmDeploymentStatus {
        model: Some(ModelStatus {
            phase: ModelPhase::Downloading,
            job_name: Some(job.clone()),
            ..Default::default()
        }),
        ..Default::default()
    });
    let path = format!("/models/zai-org--GLM-4.5-Air/{SHA}");
    let job_obj = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": job, "namespace": "llm"},
        "status": {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]}});
    let message = json!({"commit": SHA, "path": path, "bytes": 1234}).to_string();
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": format!("{job}-abcde"), "namespace": "llm"},
        "status": {"phase": "Succeeded", "containerStatuses": [{"name": "download", "image": "i", "imageID": "", "ready": false,
            "restartCount": 0, "state": {"terminated": {"exitCode": 0, "message": message}}}]}});
    let path2 = path.clone();
    let verifier = tokio::spawn(async move {
        api.apply(&format!("{NS_CORE}/persistentvolumeclaims/glm45-cache"))
            .await;
        api.get(&format!("{NS_BATCH}/jobs/{job}"), Some(job_obj))
            .await;
        api.list(
            &format!("{NS_CORE}/pods"),
            &format!("labelSelector=job-name%3D{job}"),
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
        api.get(&format!("{NS_APPS}/deployments/glm45"), None).await;
        let d = api.apply(&format!("{NS_APPS}/deployments/glm45")).await;
        assert_eq!(d["spec"]["replicas"], 2);
        let c = &d["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["image"], "ghcr.io/glm-dev/glm-server:test");
        assert_eq!(c["args"][0], "serve");
        assert_eq!(c["args"][2], path2.as_str());
        assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/ready");
        assert_eq!(
            d["spec"]["template"]["metadata"]["labels"]["serving.glm.dev/revision"],
            SHA
        );
        let svc = api.apply(&format!("{NS_CORE}/services/glm45")).await;
        assert_eq!(svc["spec"]["ports"][0]["name"], "http");
        assert_eq!(svc["spec"]["ports"][0]["port"], 8000);
        let status = api.apply(STATUS).await;
        let s = &status["status"];
        assert_eq!(s["resolvedRevision"], SHA);
        assert_eq!(s["model"]["phase"], "Ready");
        assert_eq!(s["model"]["path"], path2.as_str());
        assert_eq!(s["endpoint"], "http://glm45.llm.svc:8000");
        assert_eq!(
            condition(s, "ModelReady"),
            ("True".into(), "ModelReady".into())
        );
        let ev = api.event("llm").await;
        assert_eq!(ev["reason"], "DownloadSucceeded");
        let ev = api.event("llm").await;
        assert_eq!(ev["reason"], "RolloutStarted");
    });
    within(reconcile_glmd(&g, &ctx)).await.unwrap();
    within(verifier).await.unwrap();
}

#[tokio::test]
async fn invalid_spec_is_degraded_without_children() {
    let (ctx, mut api) = Context::test();
    let mut g = glmd();
    g.spec.server.tensor_parallel_size = 3;
    g.spec.resources.gpus = 4;
    let verifier = tokio::spawn(async move {
        // The very first call is the status: no PVC, Job, Deployment or Service.
        let status = api.apply(STATUS).await;
        let s = &status["status"];
        let (st, reason) = condition(s, "Degraded");
        assert_eq!((st.as_str(), reason.as_str()), ("True", "InvalidSpec"));
        let msg = s["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Degraded")
            .unwrap()["message"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(msg.contains("spec.server.tensorParallelSize"), "{msg}");
        assert_eq!(condition(s, "Ready").0, "False");
        let ev = api.event("llm").await;
        assert_eq!(
            (ev["reason"].as_str(), ev["type"].as_str()),
            (Some("InvalidSpec"), Some("Warning"))
        );
    });
    let action = within(reconcile_glmd(&g, &ctx)).await.unwrap();
    assert_eq!(action, Action::await_change(), "no hot loop");
    within(verifier).await.unwrap();
}

#[tokio::test]
async fn running_job_reports_progress_from_its_log() {
    let (ctx, mut api) = Context::test();
    let g = glmd();
    let job = job_name(&g);
    let job_obj = json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": job, "namespace": "llm"},
        "status": {"active": 1}});
    let pod_name = format!("{job}-xyz");
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": pod_name, "namespace": "llm",
        "creationTimestamp": "2026-01-01T00:00:00Z"}, "status": {"phase": "Running"}});
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
        // The log is plain text, not JSON: answer it by hand.
        let (req, send) = api.0.next_request().await.unwrap();
        assert_eq!(req.uri().path(), format!("{NS_CORE}/pods/{pod_name}/log"));
        let q = req.uri().query().unwrap_or_default().to_string();
        assert!(
            q.contains("container=download") && q.contains("tailLines=20"),
            "{q}"
        );
        let log = "{\"event\":\"progress\",\"bytes_done\":1073741824,\"bytes_total\":4294967296,\"rate_bytes_per_s\":1e8,\"eta_seconds\":30}\n";
        send.send_response(
            http::Response::builder()
                .body(kube::client::Body::from(log.as_bytes().to_vec()))
                .unwrap(),
        );
        api.get(&format!("{NS_APPS}/deployments/glm45"), None).await;
        let status = api.apply(STATUS).await;
        let m = &status["status"]["model"];
        assert_eq!(m["phase"], "Downloading");
        assert_eq!(
            (m["bytesDone"].as_i64(), m["bytesTotal"].as_i64()),
            (Some(1 << 30), Some(4 << 30))
        );
    });
    within(reconcile_glmd(&g, &ctx)).await.unwrap();
    within(verifier).await.unwrap();
}

#[tokio::test]
async fn replicas_owned_by_another_manager_are_left_alone() {
    let (ctx, mut api) = Context::test();
    let mut g = glmd();
    let job = job_name(&g);
    let path = format!("/models/zai-org--GLM-4.5-Air/{SHA}");
    g.status = Some(GlmDeploymentStatus {
        model: Some(ModelStatus {
            phase: ModelPhase::Ready,
            job_name: Some(job),
            commit: Some(SHA.into()),
            path: Some(path),
            ..Default::default()
        }),
        ..Default::default()
    });
    // An HPA targeting the Deployment directly owns spec.replicas.
    let observed = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "glm45", "namespace": "llm", "managedFields": [
            {"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "apps/v1",
             "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:replicas": {}}}, "subresource": "scale"}]},
        "spec": {"replicas": 5, "selector": {}, "template": {}}});
    let verifier = tokio::spawn(async move {
        api.apply(&format!("{NS_CORE}/persistentvolumeclaims/glm45-cache"))
            .await;
        // The verified model is recorded in status: no Job or pod reads.
        api.server_state(Some(observed), vec![], vec![]).await;
        let d = api.apply(&format!("{NS_APPS}/deployments/glm45")).await;
        assert!(
            d["spec"].get("replicas").is_none(),
            "replicas must be omitted: {}",
            d["spec"]
        );
        api.apply(&format!("{NS_CORE}/services/glm45")).await;
        let status = api.apply(STATUS).await;
        assert_eq!(status["status"]["resolvedRevision"], SHA);
        assert_eq!(status["status"]["rolloutPhase"], "Rolling");
        let ev = api.event("llm").await;
        assert_eq!(ev["reason"], "RolloutStarted");
    });
    within(reconcile_glmd(&g, &ctx)).await.unwrap();
    within(verifier).await.unwrap();
}

#[tokio::test]
async fn builtin_demo_model_skips_cache_and_download() {
    let (ctx, mut api) = Context::test();
    let mut g = glmd();
    g.spec.model.repo = glm_crds::DEMO_REPO.into();
    let verifier = tokio::spawn(async move {
        // The very first call is about the Deployment: no PVC, no Job.
        api.get(&format!("{NS_APPS}/deployments/glm45"), None).await;
        let d = api.apply(&format!("{NS_APPS}/deployments/glm45")).await;
        let pod = &d["spec"]["template"]["spec"];
        assert_eq!(pod["containers"][0]["args"][1], "--model");
        assert_eq!(pod["containers"][0]["args"][2], "demo");
        let volumes = pod["volumes"].as_array().cloned().unwrap_or_default();
        assert!(
            volumes
                .iter()
                .all(|v| v.get("persistentVolumeClaim").is_none()),
            "{volumes:?}"
        );
        api.apply(&format!("{NS_CORE}/services/glm45")).await;
        let status = api.apply(STATUS).await;
        assert_eq!(status["status"]["resolvedRevision"], "demo");
    });
    let _ = within(reconcile_glmd(&g, &ctx)).await;
    within(verifier).await.unwrap();
}
