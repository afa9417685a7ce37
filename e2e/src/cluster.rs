//! Harness for the black-box end-to-end tests (`tests/cluster.rs`) against the cluster in
//! `KUBECONFIG`: install the CRD, run the operator, apply GlmDeployments, wait on their
//! status, talk to the server through the API server's service proxy, and clean up.
//!
//! Every test starts with [`E2e::start`], which returns `Ok(None)` after printing a skip
//! message when `GLM_E2E` is not `1` or no cluster answers, so `cargo test` passes on a
//! machine without one and never hangs in CI.

mod chat;
mod local;
mod operator;

use std::time::{Duration, Instant};

use glm_crds::{GlmDeployment, GlmDeploymentSpec};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, Namespace, PersistentVolumeClaim, Service};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::{Client, CustomResourceExt, ResourceExt};
use serde_json::{json, Value};

pub use chat::{ChatOutcome, LoadReport};
pub use operator::{OperatorProcess, E2E_LEASE};

/// Field manager of everything the tests apply.
pub const FIELD_MANAGER: &str = "glm-e2e";

/// How to run the suite, printed with every skip.
pub const HOW_TO_RUN: &str = "run them against any cluster (kind, k3d, minikube or a real one): \
     `kind create cluster` (or `k3d cluster create`), load the server image \
     (`docker build -t ghcr.io/glm-dev/glm-server:0.1.0 . && kind load docker-image ghcr.io/glm-dev/glm-server:0.1.0`), \
     `cargo build -p glm-operator`, then `GLM_E2E=1 cargo test -p glm-e2e --test cluster -- --test-threads=1`; \
     see e2e/README.md";

/// What went wrong in an end-to-end step.
#[derive(Debug, thiserror::Error)]
pub enum E2eError {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("timed out after {waited:?} waiting for {what}; last seen: {last}")]
    Timeout {
        what: String,
        waited: Duration,
        last: String,
    },
    #[error("operator process: {0}")]
    Operator(String),
    #[error("server HTTP: {0}")]
    Http(String),
    #[error("bad object: {0}")]
    Object(String),
    #[error("{0}")]
    Check(String),
}

impl E2eError {
    /// Stable snake_case tag of the error.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Kube(_) => "kube",
            Self::Timeout { .. } => "timeout",
            Self::Operator(_) => "operator",
            Self::Http(_) => "http",
            Self::Object(_) => "object",
            Self::Check(_) => "check",
        }
    }
}

/// One test's world: a client, a fresh namespace and (unless `GLM_E2E_OPERATOR=external`)
/// an operator process watching only that namespace.
pub struct E2e {
    pub client: Client,
    pub namespace: String,
    test: String,
    operator: tokio::sync::Mutex<Option<OperatorProcess>>,
    /// The kubeconfig of a local cluster the harness started (passed to operator processes).
    kubeconfig: Option<std::path::PathBuf>,
    /// How requests reach the server pods.
    transport: chat::Transport,
}

impl E2e {
    /// Connects, installs the CRD, creates the namespace and starts the operator; `Ok(None)`
    /// (after printing why) when the suite is off or there is no cluster.
    pub async fn start(test: &str) -> Result<Option<Self>, E2eError> {
        if std::env::var("GLM_E2E").as_deref() != Ok("1") {
            println!("SKIP {test}: end-to-end tests are off (GLM_E2E is not 1); {HOW_TO_RUN}");
            return Ok(None);
        }
        let cluster = match local::connect().await {
            Ok(c) => c,
            Err(local::NoCluster::Unreachable(why)) => {
                println!("SKIP {test}: no reachable cluster ({why}); {HOW_TO_RUN}");
                return Ok(None);
            }
            Err(local::NoCluster::Failed(e)) => return Err(e),
        };
        let client = cluster.client;
        install_crd(&client).await?;
        let namespace = format!(
            "glm-e2e-{}-{}",
            test.replace('_', "-").chars().take(30).collect::<String>(),
            std::process::id()
        );
        let ns_api: Api<Namespace> = Api::all(client.clone());
        let ns = json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": namespace, "labels": {"app.kubernetes.io/part-of": "glm-e2e"}}
        });
        ns_api
            .patch(&namespace, &apply_params(), &Patch::Apply(&ns))
            .await?;
        let operator = if std::env::var("GLM_E2E_OPERATOR").as_deref() == Ok("external") {
            None
        } else {
            Some(
                OperatorProcess::start(test, &namespace, cluster.kubeconfig.as_deref(), None)
                    .await?,
            )
        };
        tracing::info!(test, namespace, "end-to-end environment ready");
        Ok(Some(Self {
            client,
            namespace,
            test: test.to_owned(),
            operator: tokio::sync::Mutex::new(operator),
            kubeconfig: cluster.kubeconfig,
            transport: chat::Transport::new(cluster.local_pods)?,
        }))
    }

    /// The GlmDeployment API in the test namespace.
    pub fn glmds(&self) -> Api<GlmDeployment> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Server-side applies a GlmDeployment document (only the fields it spells out, as
    /// `kubectl apply --server-side` would) into the test namespace, under `name`.
    pub async fn apply(&self, doc: &Value, name: &str) -> Result<GlmDeployment, E2eError> {
        let mut doc = doc.clone();
        let meta = doc
            .get_mut("metadata")
            .and_then(Value::as_object_mut)
            .ok_or_else(|| E2eError::Object("document without metadata".into()))?;
        meta.insert("name".into(), json!(name));
        meta.insert("namespace".into(), json!(self.namespace));
        Ok(self
            .glmds()
            .patch(name, &apply_params(), &Patch::Apply(&doc))
            .await?)
    }

    /// Stops the operator with SIGTERM (as the kubelet does) and starts a new one (with leader
    /// election under identity `leader` when given, see [`operator::E2E_LEASE`]); returns
    /// whether the old one exited by itself within `grace`. No-op with an external operator.
    pub async fn restart_operator(
        &self,
        grace: Duration,
        leader: Option<&str>,
    ) -> Result<bool, E2eError> {
        let mut slot = self.operator.lock().await;
        let Some(old) = slot.take() else {
            return Ok(true);
        };
        let exited = old.terminate(grace).await;
        let log_name = format!("{}-{}", self.test, leader.unwrap_or("restarted"));
        *slot = Some(
            OperatorProcess::start(
                &log_name,
                &self.namespace,
                self.kubeconfig.as_deref(),
                leader,
            )
            .await?,
        );
        Ok(exited)
    }

    /// Whether the pods run on this machine (stand-in kubelet): they reach its loopback ports.
    pub fn pods_are_local(&self) -> bool {
        matches!(self.transport, chat::Transport::PodIps { .. })
    }

    /// Whether an operator runs under this harness (not `GLM_E2E_OPERATOR=external`).
    pub async fn runs_operator(&self) -> bool {
        self.operator.lock().await.is_some()
    }

    /// Server-side apply with `dryRun=All`: what `kubectl apply --server-side --dry-run=server`
    /// answers for the document (validated by the real API server, stored nowhere).
    pub async fn dry_run_apply(&self, doc: &Value, name: &str) -> Result<(), kube::Error> {
        let mut doc = doc.clone();
        if let Some(meta) = doc.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("name".into(), json!(name));
            meta.insert("namespace".into(), json!(self.namespace));
        }
        let mut params = apply_params();
        params.dry_run = true;
        self.glmds()
            .patch(name, &params, &Patch::Apply(&doc))
            .await
            .map(|_| ())
    }

    /// Events about object `name` with `reason`, as `type: message` lines.
    pub async fn events_for(&self, name: &str, reason: &str) -> Result<Vec<String>, E2eError> {
        let api: Api<Event> = Api::namespaced(self.client.clone(), &self.namespace);
        let list = api
            .list(&ListParams::default().fields(&format!("involvedObject.name={name}")))
            .await?;
        Ok(list
            .items
            .iter()
            .filter(|e| e.reason.as_deref() == Some(reason))
            .map(|e| {
                format!(
                    "{}: {}",
                    e.type_.as_deref().unwrap_or("?"),
                    e.message.as_deref().unwrap_or("")
                )
            })
            .collect())
    }

    /// Merge-patches the spec (the way a user edits one field).
    pub async fn patch_spec(&self, name: &str, spec: Value) -> Result<GlmDeployment, E2eError> {
        Ok(self
            .glmds()
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({ "spec": spec })),
            )
            .await?)
    }

    /// Polls `check` on the GlmDeployment every second until it returns `Some`.
    pub async fn wait_glmd<T>(
        &self,
        name: &str,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&GlmDeployment) -> Option<T>,
    ) -> Result<T, E2eError> {
        let start = Instant::now();
        let mut last = String::from("(not found)");
        loop {
            if let Some(g) = self.glmds().get_opt(name).await? {
                if let Some(t) = check(&g) {
                    return Ok(t);
                }
                last = serde_json::to_string(&g.status).unwrap_or_default();
            }
            if start.elapsed() > timeout {
                return Err(E2eError::Timeout {
                    what: format!("{name}: {what}"),
                    waited: timeout,
                    last: format!("{last}; events: {}", self.recent_events().await),
                });
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Waits until `Ready=True` for the current generation (what `kubectl wait
    /// --for=condition=Ready` checks, plus staleness).
    pub async fn wait_ready(
        &self,
        name: &str,
        timeout: Duration,
    ) -> Result<GlmDeployment, E2eError> {
        self.wait_glmd(name, "Ready=True at the current generation", timeout, |g| {
            let status = g.status.as_ref()?;
            let gen = g.metadata.generation;
            let ready = status.condition(glm_crds::conditions::READY)?;
            (ready.status == "True"
                && status.observed_generation == gen
                && ready.observed_generation.is_none_or(|o| Some(o) == gen))
            .then(|| g.clone())
        })
        .await
    }

    /// Polls an arbitrary async condition every second.
    pub async fn wait_until<F, Fut>(
        &self,
        what: &str,
        timeout: Duration,
        mut probe: F,
    ) -> Result<(), E2eError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<Option<String>, E2eError>>,
    {
        let start = Instant::now();
        loop {
            // Some(detail) = not yet, with what was seen; None = done.
            match probe().await? {
                None => return Ok(()),
                Some(detail) if start.elapsed() > timeout => {
                    return Err(E2eError::Timeout {
                        what: what.to_owned(),
                        waited: timeout,
                        last: format!("{detail}; events: {}", self.recent_events().await),
                    })
                }
                Some(_) => tokio::time::sleep(Duration::from_secs(1)).await,
            }
        }
    }

    /// Names of the children of `name` by kind, found by the operator's labels.
    pub async fn children(&self, name: &str) -> Result<Children, E2eError> {
        let lp = ListParams::default().labels(&format!("{}={name}", glm_crds::labels::DEPLOYMENT));
        let c = self.client.clone();
        let ns = &self.namespace;
        Ok(Children {
            deployments: Api::<Deployment>::namespaced(c.clone(), ns)
                .list(&lp)
                .await?
                .items
                .iter()
                .map(ResourceExt::name_any)
                .collect(),
            services: Api::<Service>::namespaced(c.clone(), ns)
                .list(&lp)
                .await?
                .items
                .iter()
                .map(ResourceExt::name_any)
                .collect(),
            jobs: Api::<Job>::namespaced(c.clone(), ns)
                .list(&lp)
                .await?
                .items
                .iter()
                .map(ResourceExt::name_any)
                .collect(),
            claims: Api::<PersistentVolumeClaim>::namespaced(c, ns)
                .list(&lp)
                .await?
                .items
                .iter()
                // A claim being deleted (pvc-protection finalizer) counts as gone.
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .map(ResourceExt::name_any)
                .collect(),
        })
    }

    /// The server Deployment's `spec.replicas` (what the autoscaler decided).
    pub async fn server_replicas(&self, name: &str) -> Result<Option<i32>, E2eError> {
        let lp = ListParams::default().labels(&format!(
            "{}={name},{}=server",
            glm_crds::labels::DEPLOYMENT,
            glm_crds::labels::COMPONENT
        ));
        let list = Api::<Deployment>::namespaced(self.client.clone(), &self.namespace)
            .list(&lp)
            .await?;
        Ok(list
            .items
            .first()
            .and_then(|d| d.spec.as_ref())
            .and_then(|s| s.replicas))
    }

    /// Deletes a GlmDeployment (foreground propagation is left to the garbage collector).
    pub async fn delete(&self, name: &str) -> Result<(), E2eError> {
        self.glmds().delete(name, &DeleteParams::default()).await?;
        Ok(())
    }

    /// The last Events in the namespace, one line each, for failure messages.
    pub async fn recent_events(&self) -> String {
        let api: Api<Event> = Api::namespaced(self.client.clone(), &self.namespace);
        match api.list(&ListParams::default()).await {
            Ok(list) => {
                let mut items = list.items;
                items.sort_by_key(|e| e.last_timestamp.clone().map(|t| t.0));
                items
                    .iter()
                    .rev()
                    .take(12)
                    .map(|e| {
                        format!(
                            "[{} {} {}: {}]",
                            e.type_.as_deref().unwrap_or("?"),
                            e.involved_object.name.as_deref().unwrap_or("?"),
                            e.reason.as_deref().unwrap_or("?"),
                            e.message.as_deref().unwrap_or("")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            }
            Err(e) => format!("(events unavailable: {e})"),
        }
    }

    /// Stops the operator and deletes the namespace (kept with `GLM_E2E_KEEP=1` to debug).
    pub async fn finish(self) -> Result<(), E2eError> {
        if let Some(op) = self.operator.into_inner() {
            op.stop().await;
        }
        if std::env::var("GLM_E2E_KEEP").as_deref() == Ok("1") {
            println!(
                "{}: keeping namespace {} (GLM_E2E_KEEP=1)",
                self.test, self.namespace
            );
            return Ok(());
        }
        let ns_api: Api<Namespace> = Api::all(self.client.clone());
        ns_api
            .delete(&self.namespace, &DeleteParams::default())
            .await?;
        Ok(())
    }
}

/// Runs `body` in a fresh environment and always cleans up, then panics on the body's error
/// (the test's failure). Returns without running `body` when the suite is off.
pub async fn with_env<F, Fut>(test: &str, body: F)
where
    F: FnOnce(std::sync::Arc<E2e>) -> Fut,
    Fut: std::future::Future<Output = Result<(), E2eError>>,
{
    let env = match E2e::start(test).await {
        Ok(Some(env)) => std::sync::Arc::new(env),
        Ok(None) => return,
        Err(e) => panic!("{test}: cannot set up [{}]: {e}", e.kind()),
    };
    let started = Instant::now();
    let result = body(std::sync::Arc::clone(&env)).await;
    // Scenario timings for the record (issue 14's closing note lists them).
    println!(
        "E2E {test}: {} in {:.1}s",
        if result.is_ok() { "passed" } else { "FAILED" },
        started.elapsed().as_secs_f64()
    );
    let namespace = env.namespace.clone();
    match std::sync::Arc::try_unwrap(env) {
        Ok(env) => {
            if let Err(e) = env.finish().await {
                eprintln!("{test}: cleanup of {namespace} failed: {e}");
            }
        }
        Err(_) => eprintln!("{test}: environment still shared; namespace {namespace} left behind"),
    }
    if let Err(e) = result {
        panic!("{test} [{}]: {e}", e.kind());
    }
}

/// `Ok` when `cond` holds, else a [`E2eError::Check`] saying what was expected.
pub fn check(cond: bool, what: impl Into<String>) -> Result<(), E2eError> {
    if cond {
        Ok(())
    } else {
        Err(E2eError::Check(what.into()))
    }
}

/// Children of one GlmDeployment, by name.
#[derive(Debug, Default, PartialEq)]
pub struct Children {
    pub deployments: Vec<String>,
    pub services: Vec<String>,
    pub jobs: Vec<String>,
    pub claims: Vec<String>,
}

/// Time allowed for a deployment to become Ready (image pull + model load); the
/// `GLM_E2E_TIMEOUT_SECS` override is for slow clusters.
pub fn ready_timeout() -> Duration {
    Duration::from_secs(
        std::env::var("GLM_E2E_TIMEOUT_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(300),
    )
}

/// Reads an example file's GlmDeployment document (the first one in the file).
pub fn example(file: &str) -> Result<Value, E2eError> {
    let path = crate::workspace_root().join("examples").join(file);
    let docs =
        crate::manifest::read_documents(&path).map_err(|e| E2eError::Object(e.to_string()))?;
    docs.into_iter()
        .find(|d| d.get("kind").and_then(Value::as_str) == Some(glm_crds::KIND))
        .ok_or_else(|| E2eError::Object(format!("{} holds no GlmDeployment", path.display())))
}

/// The typed spec of a document, to read defaults the way the operator sees them.
pub fn spec_of(doc: &Value) -> Result<GlmDeploymentSpec, E2eError> {
    let spec = doc
        .get("spec")
        .cloned()
        .ok_or_else(|| E2eError::Object("no spec".into()))?;
    serde_json::from_value(spec).map_err(|e| E2eError::Object(e.to_string()))
}

fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

/// Installs (server-side applies) the CRD from glm-crds and waits until it is Established.
async fn install_crd(client: &Client) -> Result<(), E2eError> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = GlmDeployment::crd();
    let name = crd.name_any();
    api.patch(&name, &apply_params(), &Patch::Apply(&crd))
        .await?;
    let start = Instant::now();
    loop {
        let c = api.get(&name).await?;
        let established = c
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
            });
        if established {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(30) {
            return Err(E2eError::Timeout {
                what: format!("CRD {name} Established"),
                waited: Duration::from_secs(30),
                last: format!("{:?}", c.status),
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
