//! Test helpers: a GlmDeployment builder and a mock apiserver (tower-test) that asserts each
//! request's method, path, query (fieldManager, force) and body, controller-rs style.

use std::sync::Arc;

use glm_crds::{CacheSpec, GlmDeployment, GlmDeploymentSpec, ModelSpec};
use http::{Request, Response, StatusCode};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::{client::Body, Client};
use serde_json::{json, Value};

use crate::{
    controller::{Context, ControllerConfig},
    metrics::Metrics,
};

pub const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

/// A valid GlmDeployment as the apiserver would hand it over (uid, generation set).
pub fn glmd() -> GlmDeployment {
    let mut g = GlmDeployment::new(
        "glm45",
        GlmDeploymentSpec {
            model: ModelSpec {
                repo: "zai-org/GLM-4.5-Air".into(),
                revision: "main".into(),
                ..ModelSpec::default()
            },
            server: Default::default(),
            resources: Default::default(),
            cache: CacheSpec {
                size: Some(Quantity("800Gi".into())),
                ..CacheSpec::default()
            },
            replicas: 2,
            autoscaling: Default::default(),
            rollout: Default::default(),
        },
    );
    g.metadata.namespace = Some("llm".into());
    g.metadata.uid = Some("11111111-2222-3333-4444-555555555555".into());
    g.metadata.generation = Some(3);
    g
}

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

/// The mock apiserver side.
pub struct ApiServerVerifier(pub Handle);

impl Context {
    /// A Context whose client talks to the returned verifier.
    pub fn test() -> (Arc<Self>, ApiServerVerifier) {
        let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = Client::new(service, "default");
        let ctx = Context::new(
            client,
            Arc::new(Metrics::default()),
            ControllerConfig {
                default_image: "ghcr.io/glm-dev/glm-server:test".into(),
            },
            None,
        )
        .unwrap();
        (Arc::new(ctx), ApiServerVerifier(handle))
    }
}

/// One request as seen by the mock.
pub struct Seen {
    pub method: String,
    pub path: String,
    pub query: String,
    pub body: Value,
}

impl ApiServerVerifier {
    async fn next(&mut self, reply: impl FnOnce(&Seen) -> (StatusCode, Value)) -> Seen {
        let (request, send) = self
            .0
            .next_request()
            .await
            .expect("the operator made no further request");
        let method = request.method().to_string();
        let path = request.uri().path().to_string();
        let query = request.uri().query().unwrap_or_default().to_string();
        let bytes = request.into_body().collect_bytes().await.unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        let seen = Seen {
            method,
            path,
            query,
            body,
        };
        let (code, reply) = reply(&seen);
        let response = Response::builder()
            .status(code)
            .body(Body::from(serde_json::to_vec(&reply).unwrap()))
            .unwrap();
        send.send_response(response);
        seen
    }

    /// Expects a server-side apply PATCH of `path`; answers with the applied object.
    pub async fn apply(&mut self, path: &str) -> Value {
        let seen = self
            .next(|s| {
                // A status apply answers with the whole object, as the apiserver does.
                if s.path.ends_with("/status") {
                    let mut obj = serde_json::to_value(glmd()).unwrap();
                    obj["status"] = s.body["status"].clone();
                    (StatusCode::OK, obj)
                } else {
                    (StatusCode::OK, s.body.clone())
                }
            })
            .await;
        assert_eq!((seen.method.as_str(), seen.path.as_str()), ("PATCH", path));
        assert!(
            seen.query.contains("fieldManager=glm-operator"),
            "{}",
            seen.query
        );
        assert!(seen.query.contains("force=true"), "{}", seen.query);
        seen.body
    }

    /// Expects a server-side apply PATCH of `path`; answers with `reply`.
    pub async fn apply_reply(&mut self, path: &str, reply: Value) -> Value {
        let seen = self.next(|_| (StatusCode::OK, reply)).await;
        assert_eq!((seen.method.as_str(), seen.path.as_str()), ("PATCH", path));
        assert!(
            seen.query.contains("fieldManager=glm-operator") && seen.query.contains("force=true")
        );
        seen.body
    }

    /// Expects a GET of `path`; answers with `reply` or 404.
    pub async fn get(&mut self, path: &str, reply: Option<Value>) {
        let seen = self
            .next(|_| match reply {
                Some(v) => (StatusCode::OK, v),
                None => (StatusCode::NOT_FOUND, not_found()),
            })
            .await;
        assert_eq!((seen.method.as_str(), seen.path.as_str()), ("GET", path));
    }

    /// Expects a LIST of `path` whose query contains `query`; answers with `items`.
    pub async fn list(&mut self, path: &str, query: &str, kind: &str, items: Vec<Value>) {
        let reply = json!({"apiVersion": "v1", "kind": kind, "metadata": {"resourceVersion": "1"}, "items": items});
        let seen = self.next(|_| (StatusCode::OK, reply)).await;
        assert_eq!((seen.method.as_str(), seen.path.as_str()), ("GET", path));
        assert!(seen.query.contains(query), "{} lacks {query}", seen.query);
    }

    /// Expects an Event to be created in `ns`; returns it.
    pub async fn event(&mut self, ns: &str) -> Value {
        let seen = self.next(|s| (StatusCode::CREATED, s.body.clone())).await;
        assert_eq!(
            (seen.method.as_str(), seen.path.as_str()),
            (
                "POST",
                format!("/apis/events.k8s.io/v1/namespaces/{ns}/events").as_str()
            )
        );
        seen.body
    }
}

fn not_found() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": "not found", "reason": "NotFound", "code": 404})
}

/// The condition of `type_` in a status JSON, as (status, reason).
pub fn condition(status: &Value, type_: &str) -> (String, String) {
    let c = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == type_)
        .unwrap_or_else(|| panic!("no {type_} condition in {status}"));
    (
        c["status"].as_str().unwrap().to_string(),
        c["reason"].as_str().unwrap().to_string(),
    )
}
