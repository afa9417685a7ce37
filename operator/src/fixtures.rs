//! Test helpers: a GlmDeployment builder and a mock apiserver (tower-test) that asserts each
//! request's method, path, query (fieldManager, force) and body, controller-rs style.

use std::{collections::BTreeMap, sync::Arc};

use glm_crds::{CacheSpec, GlmDeployment, GlmDeploymentSpec, ModelSpec};
use http::{Request, Response, StatusCode};
use k8s_openapi::{
    api::apps::v1::{Deployment, ReplicaSet, ReplicaSetSpec, ReplicaSetStatus},
    apimachinery::pkg::{
        api::resource::Quantity,
        apis::meta::v1::{ObjectMeta, Time},
    },
    jiff::Timestamp,
};
use kube::{client::Body, Client};
use serde_json::{json, Value};

use crate::{
    clock::{Clock, FixedClock},
    controller::{Context, ControllerConfig},
    metrics::Metrics,
    reconcile::{
        deployment::{desired_deployment, DeploymentParams, ServedModel},
        rollout,
    },
};

pub const SHA: &str = "0123456789abcdef0123456789abcdef01234567";
/// A commit served before [`SHA`] (upgrades, rollbacks).
pub const OLD_SHA: &str = "fedcba9876543210fedcba9876543210fedcba98";
/// The operator's default image in tests.
pub const IMAGE: &str = "ghcr.io/glm-dev/glm-server:test";

/// The time a test's clock shows (a `FixedClock`): reconciles in tests never read the wall
/// clock, so deadlines and transition times are reproducible.
pub const NOW: &str = "2026-06-01T12:00:00Z";

/// [`NOW`], parsed; `secs` later (negative: earlier).
pub fn at(secs: i64) -> Timestamp {
    let now: Timestamp = NOW.parse().unwrap();
    now.checked_add(k8s_openapi::jiff::SignedDuration::from_secs(secs))
        .unwrap()
}

pub fn now() -> Timestamp {
    at(0)
}

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

/// The test namespace `llm` under each API group the reconcile writes to.
pub const NS_CORE: &str = "/api/v1/namespaces/llm";
pub const NS_BATCH: &str = "/apis/batch/v1/namespaces/llm";
pub const NS_APPS: &str = "/apis/apps/v1/namespaces/llm";
/// The status subresource of the test GlmDeployment `glm45`.
pub const STATUS: &str =
    "/apis/serving.glm.dev/v1alpha1/namespaces/llm/glmdeployments/glm45/status";

/// `f`, failing the test if it takes over 5 s (a reconcile waiting on a call the verifier
/// never answers).
pub async fn within<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(std::time::Duration::from_secs(5), f)
        .await
        .expect("timed out")
}

/// The mock apiserver side.
pub struct ApiServerVerifier(pub Handle);

impl Context {
    /// A Context whose client talks to the returned verifier.
    pub fn test() -> (Arc<Self>, ApiServerVerifier) {
        Self::test_with_clock(Arc::new(FixedClock::new(now())))
    }

    /// [`Context::test`] reading the time from `clock`.
    pub fn test_with_clock(clock: Arc<dyn Clock>) -> (Arc<Self>, ApiServerVerifier) {
        let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = Client::new(service, "default");
        let ctx = Context::new(
            client,
            Arc::new(Metrics::default()),
            ControllerConfig {
                default_image: IMAGE.into(),
            },
            None,
        )
        .unwrap()
        .with_clock(clock);
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

    /// Expects the reads of the `glm45` server's rollout state in `llm`: its Deployment
    /// (answered with `deployment`, or 404), then its ReplicaSets and its Pods.
    pub async fn server_state(
        &mut self,
        deployment: Option<Value>,
        sets: Vec<Value>,
        pods: Vec<Value>,
    ) {
        self.get(&format!("{NS_APPS}/deployments/glm45"), deployment)
            .await;
        self.list(
            &format!("{NS_APPS}/replicasets"),
            "labelSelector=",
            "ReplicaSetList",
            sets,
        )
        .await;
        self.list(
            &format!("{NS_CORE}/pods"),
            "labelSelector=",
            "PodList",
            pods,
        )
        .await;
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

/// The contract's model directory of [`glmd`]'s repo at `sha`.
pub fn model_path(sha: &str) -> String {
    format!("/models/zai-org--GLM-4.5-Air/{sha}")
}

/// The Deployment the operator renders for `sha`, with its stamped template revision.
pub fn rendered(g: &GlmDeployment, sha: &str) -> (Deployment, String) {
    let mut d = desired_deployment(
        g,
        &DeploymentParams {
            image: IMAGE,
            model: &ServedModel {
                commit: sha.into(),
                path: model_path(sha),
            },
            replicas: Some(2),
        },
    )
    .unwrap();
    let revision = rollout::stamp_revision(&mut d).unwrap();
    (d, revision)
}

/// `d` as the apiserver returns it, with a Deployment status.
pub fn with_status(
    d: &Deployment,
    generation: i64,
    replicas: i64,
    updated: i64,
    ready: i64,
) -> Value {
    let mut v = serde_json::to_value(d).unwrap();
    v["metadata"]["generation"] = json!(generation);
    v["status"] = json!({"observedGeneration": generation, "replicas": replicas,
        "updatedReplicas": updated, "readyReplicas": ready, "availableReplicas": ready});
    v
}

/// The ReplicaSet the Deployment controller made of `d`'s template (created in 2020).
pub fn replica_set(d: &Deployment, name: &str, hash: &str, k8s_revision: u32) -> Value {
    let mut template = d.spec.as_ref().unwrap().template.clone();
    template
        .metadata
        .get_or_insert_with(Default::default)
        .labels
        .get_or_insert_with(Default::default)
        .insert("pod-template-hash".into(), hash.into());
    let rs = ReplicaSet {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("llm".into()),
            labels: Some(BTreeMap::from([(
                "pod-template-hash".to_string(),
                hash.to_string(),
            )])),
            annotations: Some(BTreeMap::from([(
                "deployment.kubernetes.io/revision".to_string(),
                k8s_revision.to_string(),
            )])),
            creation_timestamp: Some(Time("2020-01-01T00:00:00Z".parse().unwrap())),
            ..Default::default()
        },
        spec: Some(ReplicaSetSpec {
            template: Some(template),
            ..Default::default()
        }),
        status: Some(ReplicaSetStatus {
            replicas: 1,
            ..Default::default()
        }),
    };
    serde_json::to_value(rs).unwrap()
}
