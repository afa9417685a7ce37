//! Time from a queue spike to the scale decision and to the Deployment patch.
//!
//! Fake server pods (`/metrics` on 127.0.0.N) and a fake Kubernetes API (Deployment GET,
//! pod LIST, scale PATCH, Event POST) run in-process; the real autoscale loop
//! (`Autoscaler<KubeBackend>` with a kube `Client`) drives them over HTTP. Each trial flips
//! one pod's queue from 0 to high at a random phase of the scrape interval and measures
//! wall time to the decision and to the PATCH arriving at the API. Target: within one
//! scrape interval.
//!
//! `cargo run -p glm-operator --bin autoscale-bench -- --interval-ms 1000 --spikes 20`

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use clap::Parser;
use glm_operator::autoscale::runner::KubeBackend;
use glm_operator::autoscale::{AutoscalePolicy, Autoscaler, ObjectKey, ScaleLoopConfig};
use glm_operator::scrape::fake::{FakeMetricsServer, FakeMode};
use glm_operator::scrape::{ScrapeConfig, Scraper};
use k8s_openapi::jiff::Timestamp;
use kube::runtime::events::Reporter;
use serde_json::{json, Value};

#[derive(Parser)]
struct Args {
    /// Scrape interval of the loop.
    #[arg(long, default_value_t = 1000)]
    interval_ms: u64,
    /// Number of spikes (trials).
    #[arg(long, default_value_t = 20)]
    spikes: u32,
    /// Fake server pods.
    #[arg(long, default_value_t = 4)]
    pods: u8,
}

#[derive(Default)]
struct Api {
    replicas: i64,
    patches: Vec<(Timestamp, i64)>,
    pod_ips: Vec<IpAddr>,
}

type Shared = Arc<Mutex<Api>>;

fn lock(api: &Shared) -> std::sync::MutexGuard<'_, Api> {
    api.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn get_deployment(
    State(api): State<Shared>,
    Path((ns, name)): Path<(String, String)>,
) -> Json<Value> {
    let replicas = lock(&api).replicas;
    Json(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns, "resourceVersion": "1"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"serving.glm.dev/deployment": "bench"}},
            "template": {
                "metadata": {"labels": {"serving.glm.dev/deployment": "bench"}},
                "spec": {"containers": [{"name": "server", "image": "glm-server"}]}
            }
        }
    }))
}

async fn list_pods(State(api): State<Shared>, Path(ns): Path<String>) -> Json<Value> {
    let items: Vec<Value> = lock(&api)
        .pod_ips
        .iter()
        .enumerate()
        .map(|(i, ip)| {
            json!({
                "metadata": {"name": format!("bench-{i}"), "namespace": ns},
                "status": {
                    "phase": "Running", "podIP": ip.to_string(),
                    "conditions": [{"type": "Ready", "status": "True"}]
                }
            })
        })
        .collect();
    Json(
        json!({"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "1"}, "items": items}),
    )
}

async fn patch_scale(
    State(api): State<Shared>,
    Path((ns, name)): Path<(String, String)>,
    Json(body): Json<Value>,
) -> Result<Json<Value>, StatusCode> {
    let at = Timestamp::now();
    let replicas = body["spec"]["replicas"]
        .as_i64()
        .ok_or(StatusCode::BAD_REQUEST)?;
    let mut api = lock(&api);
    api.replicas = replicas;
    api.patches.push((at, replicas));
    Ok(Json(json!({
        "apiVersion": "autoscaling/v1", "kind": "Scale",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"replicas": replicas}, "status": {"replicas": replicas}
    })))
}

async fn post_event(Json(body): Json<Value>) -> (StatusCode, Json<Value>) {
    (StatusCode::CREATED, Json(body))
}

fn summary(name: &str, mut ms: Vec<f64>, interval_ms: f64) {
    ms.sort_by(f64::total_cmp);
    let pick = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
    let within = ms.iter().filter(|&&v| v <= interval_ms).count();
    println!(
        "{name:<18} min {:7.1} ms  median {:7.1} ms  p95 {:7.1} ms  max {:7.1} ms  \
         ({within}/{} within one interval; max = {:.2} intervals)",
        pick(0.0),
        pick(0.5),
        pick(0.95),
        pick(1.0),
        ms.len(),
        pick(1.0) / interval_ms
    );
}

fn millis_between(a: Timestamp, b: Timestamp) -> f64 {
    b.duration_since(a).as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        args.pods >= 1 && args.spikes >= 1,
        "need at least one pod and one spike"
    );
    let interval = Duration::from_millis(args.interval_ms.max(100));

    // Fake pods share one port on 127.0.0.101.. like real pods share 8000.
    let idle = FakeMode::Serve {
        waiting: 0.0,
        running: 1.0,
    };
    let first_ip = IpAddr::from([127, 0, 0, 101]);
    let mut pods = vec![FakeMetricsServer::start(first_ip, 0, idle)
        .await
        .context("fake pod")?];
    let port = pods[0].addr().port();
    for i in 1..args.pods {
        let ip = IpAddr::from([127, 0, 0, 101 + i]);
        pods.push(
            FakeMetricsServer::start(ip, port, idle)
                .await
                .context("fake pod")?,
        );
    }

    let api: Shared = Arc::new(Mutex::new(Api {
        replicas: i64::from(args.pods),
        patches: Vec::new(),
        pod_ips: pods.iter().map(|p| p.addr().ip()).collect(),
    }));
    let app = Router::new()
        .route(
            "/apis/apps/v1/namespaces/{ns}/deployments/{name}",
            get(get_deployment),
        )
        .route(
            "/apis/apps/v1/namespaces/{ns}/deployments/{name}/scale",
            patch(patch_scale),
        )
        .route("/api/v1/namespaces/{ns}/pods", get(list_pods))
        .route(
            "/apis/events.k8s.io/v1/namespaces/{ns}/events",
            post(post_event),
        )
        .with_state(Arc::clone(&api));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let api_url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });

    let client = kube::Client::try_from(kube::Config::new(api_url.parse()?))?;
    let backend = KubeBackend::new(
        client,
        Reporter {
            controller: "glm-operator-bench".into(),
            instance: None,
        },
    );
    let scraper = Scraper::new(ScrapeConfig {
        port,
        timeout: Duration::from_millis(500),
        ..ScrapeConfig::default()
    })?;
    let autoscaler = Autoscaler::new(backend, scraper);
    let key = ObjectKey {
        namespace: "bench".into(),
        name: "bench".into(),
    };
    let target = 4.0;
    let config = ScaleLoopConfig {
        policy: AutoscalePolicy {
            min_replicas: 1,
            max_replicas: 64,
            target_per_replica: target,
            // Scale-down is not measured; a long window keeps replicas put between spikes.
            scale_down_stabilization: Duration::from_secs(3600),
            ..AutoscalePolicy::default()
        },
        interval,
        deployment: "bench".into(),
        pod_selector: "serving.glm.dev/deployment=bench".into(),
        object_uid: None,
    };
    println!(
        "autoscale-bench: {} fake pods, scrape interval {} ms, {} spikes (kube client -> fake API over HTTP)",
        args.pods,
        interval.as_millis(),
        args.spikes
    );

    let mut rounds = autoscaler.subscribe();
    autoscaler.ensure(key.clone(), config);
    let (mut to_decision, mut to_patch, mut decision_to_patch) = (vec![], vec![], vec![]);
    // Deterministic pseudo-random spike phases (xorshift), so runs are comparable.
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for trial in 0..args.spikes {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let phase = Duration::from_micros(seed % (interval.as_micros() as u64).max(1));
        tokio::time::sleep(phase).await;
        let current = lock(&api).replicas;
        let patches_before = lock(&api).patches.len();
        // Enough queue to need more than current replicas.
        let waiting = (current as f64 + 1.0) * target * 2.0;
        let spike_at = Timestamp::now();
        pods[0].set_load(waiting, 1.0);

        let decision_at = loop {
            tokio::time::timeout(interval * 3, rounds.changed())
                .await
                .context("no round within three intervals")??;
            let round = rounds.borrow_and_update().clone();
            if let Some((_, status)) = round {
                if status.decision.changed() && status.decided_at > spike_at {
                    break status.decided_at;
                }
            }
        };
        let patch_at = {
            let api = lock(&api);
            let (at, _) = api
                .patches
                .get(patches_before)
                .context(format!("trial {trial}: decision without a patch"))?;
            *at
        };
        to_decision.push(millis_between(spike_at, decision_at));
        to_patch.push(millis_between(spike_at, patch_at));
        decision_to_patch.push(millis_between(decision_at, patch_at).max(0.0));
        pods[0].set(idle);
        // Reset: scale back so every trial is a fresh spike (bypasses the long window).
        lock(&api).replicas = i64::from(args.pods);
    }
    autoscaler.stop(&key);

    let interval_ms = interval.as_secs_f64() * 1000.0;
    summary("spike -> decision", to_decision, interval_ms);
    summary("spike -> patch", to_patch, interval_ms);
    summary("decision -> patch", decision_to_patch, interval_ms);
    Ok(())
}
