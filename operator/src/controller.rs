//! The kube-runtime Controller for GlmDeployment: Context, `run`, `reconcile`, `error_policy`.

use std::{
    collections::HashMap,
    future::Future,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::StreamExt;
use glm_crds::GlmDeployment;
use k8s_openapi::api::{
    apps::v1::Deployment,
    batch::v1::Job,
    core::v1::{PersistentVolumeClaim, Service},
};
use kube::{
    runtime::{
        controller::{Action, Controller},
        events::{Recorder, Reporter},
        reflector::{ObjectRef, Store},
        watcher,
    },
    Api, Client, ResourceExt,
};
use tracing::{field, info, instrument, warn, Span};

use crate::{
    autoscale::runner::{Autoscaler, KubeBackend, ObjectKey},
    clock::{Clock, SystemClock},
    metrics::Metrics,
    reconcile::reconcile_glmd,
    scrape::{ScrapeConfig, Scraper},
    Error, Result,
};

/// Settings the reconcile needs.
#[derive(Clone, Debug)]
pub struct ControllerConfig {
    /// Image when a GlmDeployment sets none.
    pub default_image: String,
}

/// Shared by every reconcile.
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub config: ControllerConfig,
    /// Per-object queue-depth scale loops (see `crate::autoscale`).
    pub autoscaler: Autoscaler,
    /// The time source of reconciles (read once per reconcile; a fixed one in tests).
    pub clock: Arc<dyn Clock>,
    /// Consecutive failures per object (namespace/name), for exponential backoff.
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    /// Builds the context; fails only when the scrape HTTP client cannot be built.
    pub fn new(
        client: Client,
        metrics: Arc<Metrics>,
        config: ControllerConfig,
        instance: Option<String>,
    ) -> Result<Self> {
        let reporter = Reporter {
            controller: glm_crds::FIELD_MANAGER.into(),
            instance,
        };
        let scraper = Scraper::new(ScrapeConfig::default())
            .map_err(|e| Error::Config(format!("cannot build the metrics scraper: {e}")))?;
        Ok(Self {
            recorder: Recorder::new(client.clone(), reporter.clone()),
            autoscaler: Autoscaler::new(KubeBackend::new(client.clone(), reporter), scraper),
            client,
            metrics,
            config,
            clock: Arc::new(SystemClock),
            failures: Mutex::new(HashMap::new()),
        })
    }

    /// The same context reading time from `clock`.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    fn key(glmd: &GlmDeployment) -> String {
        format!(
            "{}/{}",
            glmd.namespace().unwrap_or_default(),
            glmd.name_any()
        )
    }

    /// Records a failure and returns how many in a row this object has had.
    fn record_failure(&self, glmd: &GlmDeployment) -> u32 {
        // A poisoned lock only means another reconcile panicked; the counts are still usable.
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(Self::key(glmd)).or_insert(0);
        *n = n.saturating_add(1);
        *n
    }

    fn record_success(&self, glmd: &GlmDeployment) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&Self::key(glmd));
    }
}

/// Backoff after `n` consecutive failures: 5 s, 10 s, 20 s ... capped at 5 min.
pub fn backoff(n: u32) -> Duration {
    let secs = 5u64.saturating_mul(1u64 << n.saturating_sub(1).min(10));
    Duration::from_secs(secs.min(300))
}

/// Reconcile entry point used by the Controller.
#[instrument(skip_all, fields(glmd = %glmd.name_any(), namespace = field::Empty, generation = field::Empty))]
pub async fn reconcile(glmd: Arc<GlmDeployment>, ctx: Arc<Context>) -> Result<Action> {
    let span = Span::current();
    span.record("namespace", glmd.namespace().unwrap_or_default());
    span.record("generation", glmd.metadata.generation.unwrap_or(0));
    let _timer = ctx.metrics.start_reconcile();
    let result = reconcile_glmd(&glmd, &ctx).await;
    match &result {
        Ok(_) => ctx.record_success(&glmd),
        Err(e) => ctx.metrics.failure(e.kind()),
    }
    result
}

/// Transient errors back off exponentially per object; spec problems never get here (they
/// become a Degraded condition inside reconcile and wait for a change).
pub fn error_policy(glmd: Arc<GlmDeployment>, err: &Error, ctx: Arc<Context>) -> Action {
    let n = ctx.record_failure(&glmd);
    let delay = backoff(n);
    warn!(glmd = %glmd.name_any(), error = %err, kind = err.kind(), attempt = n, retry_in_s = delay.as_secs(), "reconcile failed");
    Action::requeue(delay)
}

/// Runs the controller over one namespace (or all when `None`) until `shutdown` resolves.
pub async fn run_namespace(
    ctx: Arc<Context>,
    namespace: Option<String>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    fn api<K>(client: &Client, ns: Option<&str>) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        match ns {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    }
    let ns = namespace.as_deref();
    // Only our children: the label keeps the operator's caches small on big clusters.
    let owned = watcher::Config::default().labels(&format!(
        "{}={}",
        glm_crds::labels::MANAGED_BY,
        glm_crds::labels::MANAGED_BY_VALUE
    ));
    info!(
        namespace = namespace.as_deref().unwrap_or("<all>"),
        "starting controller"
    );
    let controller = Controller::new(
        api::<GlmDeployment>(&client, ns),
        watcher::Config::default().any_semantic(),
    );
    let sweeper = tokio::spawn(sweep_autoscalers(controller.store(), ctx.clone()));
    controller
        .owns(api::<PersistentVolumeClaim>(&client, ns), owned.clone())
        .owns(api::<Job>(&client, ns), owned.clone())
        .owns(api::<Deployment>(&client, ns), owned.clone())
        .owns(api::<Service>(&client, ns), owned)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                // Reconcile errors are already logged by error_policy; this is queue/watch noise.
                tracing::debug!(error = %e, "controller event");
            }
        })
        .await;
    sweeper.abort();
}

/// How often loops of deleted GlmDeployments are looked for.
const SWEEP_INTERVAL: Duration = Duration::from_secs(30);

/// Whether the object of an autoscaler loop still exists (and is not being deleted).
pub fn object_exists(store: &Store<GlmDeployment>, key: &ObjectKey) -> bool {
    store
        .get(&ObjectRef::new(&key.name).within(&key.namespace))
        .is_some_and(|o| o.metadata.deletion_timestamp.is_none())
}

/// Stops the autoscaler loops of deleted GlmDeployments. A deleted object is never
/// reconciled again, so without this its loop would keep scraping and patching (and fail on
/// a missing Deployment) until the operator restarts.
async fn sweep_autoscalers(store: Store<GlmDeployment>, ctx: Arc<Context>) {
    // Before the first list completes the store is empty: sweeping then would stop every loop.
    if store.wait_until_ready().await.is_err() {
        return;
    }
    let mut tick = tokio::time::interval(SWEEP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        for key in ctx.autoscaler.retain(|k| object_exists(&store, k)) {
            info!(glmd = %key, "object deleted; autoscaler loop stopped");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        let got: Vec<u64> = [1, 2, 3, 4, 7, 8, 100]
            .iter()
            .map(|n| backoff(*n).as_secs())
            .collect();
        assert_eq!(got, [5, 10, 20, 40, 300, 300, 300]);
    }

    fn object(name: &str, deleting: bool) -> GlmDeployment {
        let mut g = crate::fixtures::glmd();
        g.metadata.name = Some(name.into());
        if deleting {
            g.metadata.deletion_timestamp =
                Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
                ));
        }
        g
    }

    #[tokio::test]
    async fn sweeper_stops_loops_of_deleted_and_deleting_objects() {
        let (store, mut writer) = kube::runtime::reflector::store::<GlmDeployment>();
        for g in [
            object("kept", false),
            object("deleting", true),
            object("gone", false),
        ] {
            writer.apply_watcher_event(&watcher::Event::Apply(g));
        }
        writer.apply_watcher_event(&watcher::Event::Delete(object("gone", false)));
        let key = |name: &str| ObjectKey {
            namespace: "llm".into(),
            name: name.into(),
        };
        assert!(object_exists(&store, &key("kept")));
        assert!(!object_exists(&store, &key("deleting")));
        assert!(!object_exists(&store, &key("gone")));
        assert!(!object_exists(&store, &key("never")));
        // Another namespace with the same name is another object.
        assert!(!object_exists(
            &store,
            &ObjectKey {
                namespace: "other".into(),
                name: "kept".into(),
            }
        ));

        let (ctx, _api) = Context::test();
        let config = |name: &str| {
            crate::autoscale::runner::ScaleLoopConfig::from_spec(
                &Default::default(),
                name.to_string(),
                format!("app={name}"),
                None,
            )
        };
        for name in ["kept", "deleting", "gone"] {
            ctx.autoscaler.ensure(key(name), config(name));
        }
        let stopped = ctx.autoscaler.retain(|k| object_exists(&store, k));
        assert_eq!(stopped, [key("deleting"), key("gone")]);
        assert_eq!(ctx.autoscaler.running_keys(), [key("kept")]);
        ctx.autoscaler.stop_all();
    }
}
