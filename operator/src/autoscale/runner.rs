//! The I/O shell around [`decide`]: one loop per autoscaled GlmDeployment that, every
//! `scrapeIntervalSeconds`, observes the Deployment and its pods, scrapes the ready pods,
//! decides, writes `replicas` through the scale subresource and publishes an Event.
//!
//! Kubernetes access sits behind [`ScaleBackend`] so tests and the bench can drive the loop
//! against fakes; [`KubeBackend`] is the real one. Histories and the last decision per
//! object live in the [`Autoscaler`], which the controller keeps in its `Context`.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, info, info_span, warn, Instrument};

use super::{
    decide, AutoscaleInput, AutoscalePolicy, Decision, PolicyError, RecommendationHistory,
};
use crate::scrape::{PodTarget, Scraper};

mod kube_backend;

pub use kube_backend::KubeBackend;

/// Namespace and name of a GlmDeployment.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// What the loop of one GlmDeployment needs; the reconcile passes a fresh one each time.
#[derive(Debug, Clone, PartialEq)]
pub struct ScaleLoopConfig {
    pub policy: AutoscalePolicy,
    /// `scrapeIntervalSeconds`.
    pub interval: Duration,
    /// Name of the server Deployment (same namespace as the GlmDeployment).
    pub deployment: String,
    /// Label selector of the server pods, e.g. `serving.glm.dev/deployment=NAME`.
    pub pod_selector: String,
    /// The GlmDeployment's `metadata.uid`, so Events show in `kubectl describe glmd`.
    pub object_uid: Option<String>,
}

/// What one observation of the cluster returned.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    /// Deployment `spec.replicas`.
    pub current_replicas: u32,
    pub pods: Vec<PodTarget>,
    /// A manager other than the operator owns `spec.replicas` (an HPA aimed at the
    /// Deployment): the loop then decides but does not write.
    pub foreign_owner: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error("deployment {0} not found")]
    DeploymentNotFound(String),
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error(transparent)]
    Policy(#[from] PolicyError),
}

impl RunnerError {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::DeploymentNotFound(_) => "deployment_not_found",
            Self::Kube(_) => "kube",
            Self::Policy(e) => e.kind(),
        }
    }
}

/// Kubernetes side of the loop.
pub trait ScaleBackend: Send + Sync + 'static {
    fn observe(
        &self,
        key: &ObjectKey,
        config: &ScaleLoopConfig,
    ) -> impl Future<Output = Result<Observed, RunnerError>> + Send;

    /// Sets the Deployment's replicas (scale subresource, operator's field manager).
    fn scale(
        &self,
        key: &ObjectKey,
        config: &ScaleLoopConfig,
        replicas: u32,
    ) -> impl Future<Output = Result<(), RunnerError>> + Send;

    /// Publishes the Event of a scale (best effort: failures are logged, not returned).
    fn record(
        &self,
        key: &ObjectKey,
        config: &ScaleLoopConfig,
        decision: &Decision,
    ) -> impl Future<Output = ()> + Send;
}

/// The last round of one object, for `status.autoscaling`.
#[derive(Debug, Clone, PartialEq)]
pub struct ScaleStatus {
    pub decision: Decision,
    pub decided_at: Timestamp,
    /// When replicas were last changed by the loop.
    pub last_scale_time: Option<Timestamp>,
    /// Why the decision was not written, when it was not (stable kind or `foreign_owner`).
    pub blocked: Option<String>,
}

impl ScaleStatus {
    /// The CRD's status block.
    pub fn to_status(&self) -> glm_crds::AutoscalingStatus {
        glm_crds::AutoscalingStatus {
            desired_replicas: Some(i32::try_from(self.decision.desired).unwrap_or(i32::MAX)),
            last_metric: Some(self.decision.metric.load()),
            last_scale_time: self
                .last_scale_time
                .map(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time),
            reason: Some(self.decision.reason.as_str().to_string()),
        }
    }
}

#[derive(Default)]
struct State {
    histories: HashMap<ObjectKey, RecommendationHistory>,
    statuses: HashMap<ObjectKey, ScaleStatus>,
    loops: HashMap<ObjectKey, (watch::Sender<ScaleLoopConfig>, JoinHandle<()>)>,
}

struct Inner<B> {
    backend: B,
    scraper: Scraper,
    state: Mutex<State>,
    /// Observers of every finished round (status writers, the bench).
    rounds: watch::Sender<Option<(ObjectKey, ScaleStatus)>>,
}

/// Per-GlmDeployment histories and loops. Cheap to clone; keep one in the controller's
/// `Context`.
pub struct Autoscaler<B = KubeBackend> {
    inner: Arc<Inner<B>>,
}

impl<B> Clone for Autoscaler<B> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<B: ScaleBackend> Autoscaler<B> {
    pub fn new(backend: B, scraper: Scraper) -> Self {
        let (rounds, _) = watch::channel(None);
        Self {
            inner: Arc::new(Inner {
                backend,
                scraper,
                state: Mutex::new(State::default()),
                rounds,
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half-written in a way that
        // matters (each write is one insert/remove), so recover the guard.
        self.inner
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts the loop of `key`, or hands it the new config. Idempotent: call it on every
    /// reconcile while autoscaling is enabled. Needs a Tokio runtime.
    pub fn ensure(&self, key: ObjectKey, config: ScaleLoopConfig) {
        let mut state = self.state();
        if let Some((tx, task)) = state.loops.get(&key) {
            if !task.is_finished() {
                tx.send_if_modified(|current| {
                    let changed = *current != config;
                    if changed {
                        *current = config.clone();
                    }
                    changed
                });
                return;
            }
        }
        let (tx, rx) = watch::channel(config);
        let task = tokio::spawn(self.clone().run_loop(key.clone(), rx));
        state.loops.insert(key, (tx, task));
    }

    /// Stops the loop of `key` and forgets its history and status (autoscaling disabled or
    /// object deleted).
    pub fn stop(&self, key: &ObjectKey) {
        let mut state = self.state();
        if let Some((_, task)) = state.loops.remove(key) {
            task.abort();
        }
        state.histories.remove(key);
        state.statuses.remove(key);
    }

    /// Stops every loop (leadership lost, shutdown).
    pub fn stop_all(&self) {
        let mut state = self.state();
        for (_, (_, task)) in state.loops.drain() {
            task.abort();
        }
        state.histories.clear();
        state.statuses.clear();
    }

    /// Keys that have a loop (running, or finished and not yet stopped), sorted.
    pub fn running_keys(&self) -> Vec<ObjectKey> {
        let mut keys: Vec<ObjectKey> = self.state().loops.keys().cloned().collect();
        keys.sort();
        keys
    }

    /// Stops the loops of objects `exists` says are gone (deleted GlmDeployments never
    /// reconcile again, so nothing else would stop them); returns the stopped keys.
    pub fn retain(&self, exists: impl Fn(&ObjectKey) -> bool) -> Vec<ObjectKey> {
        // Collect first: `stop` takes the state lock again.
        let gone: Vec<ObjectKey> = self
            .running_keys()
            .into_iter()
            .filter(|k| !exists(k))
            .collect();
        for key in &gone {
            self.stop(key);
        }
        gone
    }

    pub fn is_running(&self, key: &ObjectKey) -> bool {
        self.state()
            .loops
            .get(key)
            .is_some_and(|(_, task)| !task.is_finished())
    }

    /// The last round of `key`, for `status.autoscaling`.
    pub fn status(&self, key: &ObjectKey) -> Option<ScaleStatus> {
        self.state().statuses.get(key).cloned()
    }

    /// Replicas the autoscaler wants for `key` (its last decision), for a reconcile that
    /// writes `spec.replicas` itself: applying this value agrees with the loop's own patch.
    pub fn desired_replicas(&self, key: &ObjectKey) -> Option<i32> {
        self.status(key)
            .map(|s| i32::try_from(s.decision.desired).unwrap_or(i32::MAX))
    }

    /// Notified after every round of every object.
    pub fn subscribe(&self) -> watch::Receiver<Option<(ObjectKey, ScaleStatus)>> {
        self.inner.rounds.subscribe()
    }

    /// Pure step with this object's history (the loop's decision, without I/O).
    pub fn decide(
        &self,
        key: &ObjectKey,
        input: &AutoscaleInput,
        now: std::time::Instant,
    ) -> Result<Decision, PolicyError> {
        let mut state = self.state();
        let history = state.histories.entry(key.clone()).or_default();
        decide(input, history, now)
    }

    /// One round: observe, scrape, decide, write replicas, record. Public so a controller
    /// can run a round inline and tests can drive rounds one by one.
    pub async fn round(
        &self,
        key: &ObjectKey,
        config: &ScaleLoopConfig,
    ) -> Result<ScaleStatus, RunnerError> {
        let backend = &self.inner.backend;
        let observed = backend.observe(key, config).await?;
        let pods = self.inner.scraper.scrape_all(&observed.pods).await;
        let input = AutoscaleInput {
            current_replicas: observed.current_replicas,
            pods,
            policy: config.policy.clone(),
        };
        let decision = self.decide(key, &input, tokio::time::Instant::now().into_std())?;
        let now = Timestamp::now();
        let previous_scale = self
            .state()
            .statuses
            .get(key)
            .and_then(|s| s.last_scale_time);
        let mut status = ScaleStatus {
            decision,
            decided_at: now,
            last_scale_time: previous_scale,
            blocked: None,
        };
        let foreign = observed.foreign_owner.filter(|_| decision.changed());
        if let Some(manager) = &foreign {
            warn!(%key, %manager, "replicas owned by another manager; not scaling");
            status.blocked = Some(format!("foreign_owner:{manager}"));
        }
        // Published before the patch: the patch wakes the reconcile (it watches the
        // Deployment), which must already see this decision in `desired_replicas`.
        self.state().statuses.insert(key.clone(), status.clone());
        if decision.changed() && foreign.is_none() {
            match backend.scale(key, config, decision.desired).await {
                Ok(()) => {
                    info!(%key, message = %decision.message(), "scaled");
                    status.last_scale_time = Some(Timestamp::now());
                    backend.record(key, config, &decision).await;
                }
                Err(e) => {
                    warn!(%key, kind = e.kind(), error = %e, "scale failed");
                    status.blocked = Some(e.kind().to_string());
                }
            }
            self.state().statuses.insert(key.clone(), status.clone());
        }
        self.inner
            .rounds
            .send_replace(Some((key.clone(), status.clone())));
        Ok(status)
    }

    async fn run_loop(self, key: ObjectKey, mut config_rx: watch::Receiver<ScaleLoopConfig>) {
        let span = info_span!("autoscale_loop", %key);
        async move {
            loop {
                let config = config_rx.borrow_and_update().clone();
                // The first tick fires at once: a new or retuned loop decides immediately.
                let mut ticker = tokio::time::interval(config.interval.max(MIN_INTERVAL));
                ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        changed = config_rx.changed() => {
                            if changed.is_err() {
                                return; // the Autoscaler dropped this loop
                            }
                            break; // new config: rebuild the interval
                        }
                        _ = ticker.tick() => {
                            let round = self.round(&key, &config)
                                .instrument(info_span!("autoscale_round"))
                                .await;
                            match round {
                                // Normal right after the GlmDeployment is created.
                                Err(e @ RunnerError::DeploymentNotFound(_)) => {
                                    debug!(error = %e, "autoscale round skipped");
                                }
                                Err(e) => {
                                    warn!(kind = e.kind(), error = %e, "autoscale round failed");
                                }
                                Ok(_) => {}
                            }
                        }
                    }
                }
            }
        }
        .instrument(span)
        .await
    }
}

/// A zero interval from a broken spec must not spin.
const MIN_INTERVAL: Duration = Duration::from_millis(100);

#[cfg(test)]
mod tests;
