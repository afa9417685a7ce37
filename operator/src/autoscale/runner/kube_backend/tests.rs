//! KubeBackend against kube's tower-test mock: the exact requests it makes and how it reads
//! the answers.

use super::*;
use crate::autoscale::{AutoscalePolicy, MetricSnapshot, Reason};
use http::{Request, Response};
use kube::client::Body;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the mock API server saw: method, path with query, content type, body.
type Seen = Arc<Mutex<Vec<(String, String, String, serde_json::Value)>>>;

fn deployment_json() -> serde_json::Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {
            "name": "glm-server", "namespace": "ns",
            "managedFields": [
                {"manager": "glm-operator", "operation": "Apply", "fieldsType": "FieldsV1",
                 "fieldsV1": {"f:spec": {"f:template": {}}}},
                {"manager": "kube-controller-manager", "operation": "Update", "subresource": "scale",
                 "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:replicas": {}}}}
            ]
        },
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "glm"}},
            "template": {"metadata": {"labels": {"app": "glm"}},
                         "spec": {"containers": [{"name": "server", "image": "glm-server"}]}}
        }
    })
}

fn pods_json() -> serde_json::Value {
    let pod = |name: &str, ip: &str, ready: &str| {
        json!({"metadata": {"name": name, "namespace": "ns"},
               "status": {"phase": "Running", "podIP": ip,
                          "conditions": [{"type": "Ready", "status": ready}]}})
    };
    json!({"apiVersion": "v1", "kind": "PodList", "metadata": {},
           "items": [pod("a", "10.0.0.1", "True"), pod("b", "10.0.0.2", "False")]})
}

/// Answers every request the way the API server would for this test, recording it.
fn mock_client() -> (Client, Seen) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let seen: Seen = Arc::default();
    let log = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Some((request, send)) = handle.next_request().await {
            let method = request.method().to_string();
            let uri = request.uri().to_string();
            let content_type = request
                .headers()
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            let bytes = request.into_body().collect_bytes().await.unwrap();
            let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
            let answer = match (method.as_str(), uri.split('?').next().unwrap_or_default()) {
                ("GET", "/apis/apps/v1/namespaces/ns/deployments/glm-server") => deployment_json(),
                ("GET", "/api/v1/namespaces/ns/pods") => pods_json(),
                ("PATCH", "/apis/apps/v1/namespaces/ns/deployments/glm-server/scale") => json!({
                    "apiVersion": "autoscaling/v1", "kind": "Scale",
                    "metadata": {"name": "glm-server", "namespace": "ns"},
                    "spec": {"replicas": body["spec"]["replicas"]}, "status": {"replicas": 3}
                }),
                ("POST", "/apis/events.k8s.io/v1/namespaces/ns/events") => body.clone(),
                other => panic!("unexpected request {other:?}"),
            };
            log.lock().unwrap().push((method, uri, content_type, body));
            send.send_response(
                Response::builder()
                    .body(Body::from(serde_json::to_vec(&answer).unwrap()))
                    .unwrap(),
            );
        }
    });
    (Client::new(service, "default"), seen)
}

fn config() -> ScaleLoopConfig {
    ScaleLoopConfig {
        policy: AutoscalePolicy::default(),
        interval: Duration::from_secs(5),
        deployment: "glm-server".into(),
        pod_selector: "serving.glm.dev/deployment=glm".into(),
        object_uid: Some("uid-1".into()),
    }
}

fn key() -> ObjectKey {
    ObjectKey {
        namespace: "ns".into(),
        name: "glm".into(),
    }
}

fn backend(client: Client) -> KubeBackend {
    KubeBackend::new(
        client,
        Reporter {
            controller: "glm-operator".into(),
            instance: None,
        },
    )
}

#[tokio::test]
async fn observe_reads_replicas_pods_and_the_foreign_owner() {
    let (client, seen) = mock_client();
    let observed = backend(client).observe(&key(), &config()).await.unwrap();
    assert_eq!(observed.current_replicas, 3);
    let pods: Vec<_> = observed
        .pods
        .iter()
        .map(|p| (p.name.as_str(), p.ready))
        .collect();
    assert_eq!(pods, [("a", true), ("b", false)]);
    assert_eq!(
        observed.foreign_owner.as_deref(),
        Some("kube-controller-manager")
    );
    let seen = seen.lock().unwrap();
    let list = seen.iter().find(|s| s.1.starts_with("/api/v1/")).unwrap();
    assert!(
        list.1
            .contains("labelSelector=serving.glm.dev%2Fdeployment%3Dglm"),
        "{}",
        list.1
    );
}

#[tokio::test]
async fn scale_merge_patches_the_scale_subresource_under_the_operator_manager() {
    let (client, seen) = mock_client();
    backend(client).scale(&key(), &config(), 5).await.unwrap();
    let seen = seen.lock().unwrap();
    let (method, uri, content_type, body) = &seen[0];
    assert_eq!(method, "PATCH");
    let (path, query) = uri.split_once('?').unwrap();
    assert_eq!(
        path,
        "/apis/apps/v1/namespaces/ns/deployments/glm-server/scale"
    );
    assert!(
        query.split('&').any(|kv| kv == "fieldManager=glm-operator"),
        "{query}"
    );
    assert_eq!(content_type, "application/merge-patch+json");
    assert_eq!(body, &json!({"spec": {"replicas": 5}}));
}

#[tokio::test]
async fn record_publishes_an_event_on_the_glm_deployment() {
    let (client, seen) = mock_client();
    let decision = Decision {
        desired: 4,
        current: 2,
        reason: Reason::ScaleUp,
        metric: MetricSnapshot {
            waiting: 12.0,
            running: 4.0,
            scraped_pods: 2,
            recommendation: Some(4),
            ..MetricSnapshot::default()
        },
    };
    backend(client).record(&key(), &config(), &decision).await;
    let seen = seen.lock().unwrap();
    let (method, _, _, event) = &seen[0];
    assert_eq!(method, "POST");
    assert_eq!(event["reason"], "ScaleUp");
    assert_eq!(event["type"], "Normal");
    assert_eq!(event["action"], "Scale");
    assert_eq!(event["regarding"]["kind"], "GlmDeployment");
    assert_eq!(event["regarding"]["uid"], "uid-1");
    assert!(event["note"]
        .as_str()
        .unwrap()
        .starts_with("ScaleUp: 2 -> 4 replicas"));
}
