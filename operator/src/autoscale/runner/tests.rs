//! The loop against fake pods (real HTTP on 127.0.0.N) and a fake Kubernetes backend.

use super::*;
use crate::scrape::fake::{FakeMetricsServer, FakeMode};
use crate::scrape::ScrapeConfig;
use std::net::IpAddr;
use std::time::Instant;

#[derive(Default)]
struct Fake {
    observed: Mutex<Option<Observed>>,
    scaled: Mutex<Vec<u32>>,
    events: Mutex<Vec<String>>,
}

#[derive(Clone, Default)]
struct FakeBackend(Arc<Fake>);

impl FakeBackend {
    fn set(&self, observed: Observed) {
        *self.0.observed.lock().unwrap() = Some(observed);
    }
    fn scaled(&self) -> Vec<u32> {
        self.0.scaled.lock().unwrap().clone()
    }
    fn events(&self) -> Vec<String> {
        self.0.events.lock().unwrap().clone()
    }
}

impl ScaleBackend for FakeBackend {
    async fn observe(&self, _: &ObjectKey, c: &ScaleLoopConfig) -> Result<Observed, RunnerError> {
        self.0
            .observed
            .lock()
            .unwrap()
            .clone()
            .ok_or_else(|| RunnerError::DeploymentNotFound(c.deployment.clone()))
    }
    async fn scale(&self, _: &ObjectKey, _: &ScaleLoopConfig, n: u32) -> Result<(), RunnerError> {
        self.0.scaled.lock().unwrap().push(n);
        // The Deployment now says n, as the API server would.
        if let Some(o) = self.0.observed.lock().unwrap().as_mut() {
            o.current_replicas = n;
        }
        Ok(())
    }
    async fn record(&self, _: &ObjectKey, _: &ScaleLoopConfig, d: &Decision) {
        self.0
            .events
            .lock()
            .unwrap()
            .push(d.reason.as_str().to_string());
    }
}

fn key() -> ObjectKey {
    ObjectKey {
        namespace: "ns".into(),
        name: "glm".into(),
    }
}

fn config(interval_ms: u64, down_s: u64) -> ScaleLoopConfig {
    ScaleLoopConfig {
        policy: AutoscalePolicy {
            min_replicas: 1,
            max_replicas: 8,
            target_per_replica: 4.0,
            scale_down_stabilization: Duration::from_secs(down_s),
            ..AutoscalePolicy::default()
        },
        interval: Duration::from_millis(interval_ms),
        deployment: "glm-server".into(),
        pod_selector: "serving.glm.dev/deployment=glm".into(),
        object_uid: None,
    }
}

/// Fake pods on 127.0.0.{first..}, all on one port (the scraper has one port).
async fn pods(first: u8, modes: &[FakeMode]) -> (Vec<FakeMetricsServer>, Vec<PodTarget>, u16) {
    let ip = |i: usize| IpAddr::from([127, 0, 0, first + i as u8]);
    let mut servers = vec![FakeMetricsServer::start(ip(0), 0, modes[0]).await.unwrap()];
    let port = servers[0].addr().port();
    for (i, m) in modes.iter().enumerate().skip(1) {
        servers.push(FakeMetricsServer::start(ip(i), port, *m).await.unwrap());
    }
    let targets = (0..modes.len())
        .map(|i| PodTarget {
            name: format!("pod-{i}"),
            ip: Some(ip(i)),
            ready: true,
        })
        .collect();
    (servers, targets, port)
}

fn scraper(port: u16) -> Scraper {
    Scraper::new(ScrapeConfig {
        port,
        timeout: Duration::from_millis(300),
        ..ScrapeConfig::default()
    })
    .unwrap()
}

#[tokio::test]
async fn round_scales_on_scraped_load_and_records_event_and_status() {
    let serve = |w, r| FakeMode::Serve {
        waiting: w,
        running: r,
    };
    let (_servers, targets, port) = pods(21, &[serve(9.0, 2.0), serve(4.0, 2.0)]).await;
    let backend = FakeBackend::default();
    backend.set(Observed {
        current_replicas: 2,
        pods: targets,
        foreign_owner: None,
    });
    let autoscaler = Autoscaler::new(backend.clone(), scraper(port));
    let status = autoscaler.round(&key(), &config(1000, 300)).await.unwrap();
    // 17 requests / 4 per replica = 5.
    assert_eq!(status.decision.desired, 4, "{}", status.decision.message());
    assert_eq!(status.decision.reason.as_str(), "ScaleUpLimited");
    assert_eq!(status.decision.metric.load(), 17.0);
    assert_eq!(backend.scaled(), [4]);
    assert_eq!(backend.events(), ["ScaleUpLimited"]);
    assert_eq!(autoscaler.desired_replicas(&key()), Some(4));
    assert!(status.last_scale_time.is_some());
    let crd = autoscaler.status(&key()).unwrap().to_status();
    assert_eq!(crd.desired_replicas, Some(4));
    assert_eq!(crd.last_metric, Some(17.0));
    assert_eq!(crd.reason.as_deref(), Some("ScaleUpLimited"));
}

#[tokio::test]
async fn unreachable_pods_hold_and_foreign_owner_blocks_writes() {
    let (_servers, mut targets, port) = pods(31, &[FakeMode::Hang, FakeMode::Status(500)]).await;
    targets.push(PodTarget {
        name: "ok".into(),
        ip: None,
        ready: true,
    });
    let backend = FakeBackend::default();
    backend.set(Observed {
        current_replicas: 3,
        pods: targets.clone(),
        foreign_owner: None,
    });
    let autoscaler = Autoscaler::new(backend.clone(), scraper(port));
    let started = Instant::now();
    let status = autoscaler.round(&key(), &config(1000, 0)).await.unwrap();
    // Concurrent: one timeout for the hung pod, not one per pod.
    assert!(started.elapsed() < Duration::from_millis(1500));
    assert_eq!(
        (status.decision.desired, status.decision.reason.as_str()),
        (3, "NoSignal")
    );
    assert!(backend.scaled().is_empty());

    backend.set(Observed {
        current_replicas: 9,
        pods: targets,
        foreign_owner: Some("kube-controller-manager".into()),
    });
    let status = autoscaler.round(&key(), &config(1000, 0)).await.unwrap();
    assert_eq!(status.decision.desired, 8);
    assert_eq!(
        status.blocked.as_deref(),
        Some("foreign_owner:kube-controller-manager")
    );
    assert!(backend.scaled().is_empty() && backend.events().is_empty());
}

#[tokio::test]
async fn loop_follows_a_spike_within_one_interval_and_stops() {
    let serve = |w| FakeMode::Serve {
        waiting: w,
        running: 0.0,
    };
    let (servers, targets, port) = pods(41, &[serve(0.0)]).await;
    let backend = FakeBackend::default();
    backend.set(Observed {
        current_replicas: 1,
        pods: targets,
        foreign_owner: None,
    });
    let autoscaler = Autoscaler::new(backend.clone(), scraper(port));
    let mut rounds = autoscaler.subscribe();
    let interval = Duration::from_millis(200);
    autoscaler.ensure(key(), config(200, 300));
    // First round is immediate and steady.
    rounds.changed().await.unwrap();
    assert!(backend.scaled().is_empty());

    servers[0].set(serve(8.0));
    let spike = Instant::now();
    let deadline = spike + interval * 5;
    while backend.scaled().is_empty() {
        assert!(Instant::now() < deadline, "no scale within 5 intervals");
        tokio::time::timeout(interval * 5, rounds.changed())
            .await
            .unwrap()
            .unwrap();
    }
    assert_eq!(backend.scaled(), [2]);
    assert!(autoscaler.is_running(&key()));
    // The same config again does not restart anything; stop ends the loop.
    autoscaler.ensure(key(), config(200, 300));
    autoscaler.stop(&key());
    assert!(!autoscaler.is_running(&key()));
    assert!(autoscaler.status(&key()).is_none());
}

#[tokio::test]
async fn retain_stops_only_the_loops_of_deleted_objects() {
    let backend = FakeBackend::default();
    backend.set(Observed {
        current_replicas: 1,
        pods: Vec::new(),
        foreign_owner: None,
    });
    let autoscaler = Autoscaler::new(backend, scraper(9));
    let other = ObjectKey {
        namespace: "ns".into(),
        name: "kept".into(),
    };
    autoscaler.ensure(key(), config(60_000, 300));
    autoscaler.ensure(other.clone(), config(60_000, 300));
    assert_eq!(autoscaler.running_keys(), [key(), other.clone()]);

    let stopped = autoscaler.retain(|k| k.name == "kept");
    assert_eq!(stopped, [key()]);
    assert!(!autoscaler.is_running(&key()));
    assert!(autoscaler.is_running(&other));
    assert_eq!(autoscaler.running_keys(), [other]);
    // Nothing gone: nothing stopped.
    assert!(autoscaler.retain(|_| true).is_empty());
    autoscaler.stop_all();
}
