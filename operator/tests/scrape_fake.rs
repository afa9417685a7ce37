//! The scraper over real HTTP against fake /metrics servers on 127.0.0.N: every failure mode
//! becomes unknown load with a stable kind, never zero, and pods are read concurrently.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::IpAddr;
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use glm_operator::autoscale::{
    decide, AutoscaleInput, AutoscalePolicy, Reason, RecommendationHistory,
};
use glm_operator::scrape::fake::{FakeMetricsServer, FakeMode};
use glm_operator::scrape::{PodTarget, ScrapeConfig, Scraper};

fn ip(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

fn target(name: &str, last: u8) -> PodTarget {
    PodTarget {
        name: name.into(),
        ip: Some(ip(last)),
        ready: true,
    }
}

fn scraper(port: u16, timeout_ms: u64) -> Scraper {
    Scraper::new(ScrapeConfig {
        port,
        timeout: Duration::from_millis(timeout_ms),
        max_body_bytes: 64 << 10,
        ..ScrapeConfig::default()
    })
    .unwrap()
}

#[tokio::test]
async fn every_failure_is_unknown_with_a_stable_kind() {
    let serve = FakeMode::Serve {
        waiting: 5.0,
        running: 3.0,
    };
    let ok = FakeMetricsServer::start(ip(61), 0, serve).await.unwrap();
    let port = ok.addr().port();
    let _e500 = FakeMetricsServer::start(ip(62), port, FakeMode::Status(503))
        .await
        .unwrap();
    let _missing = FakeMetricsServer::start(ip(63), port, FakeMode::MissingMetric)
        .await
        .unwrap();
    let _hang = FakeMetricsServer::start(ip(64), port, FakeMode::Hang)
        .await
        .unwrap();
    // 127.0.0.65: nothing listens -> connection refused.
    let targets = [
        target("ok", 61),
        target("e503", 62),
        target("missing", 63),
        target("hang", 64),
        target("refused", 65),
    ];
    let started = Instant::now();
    let samples = scraper(port, 400).scrape_all(&targets).await;
    let elapsed = started.elapsed();

    let got: Vec<_> = samples
        .iter()
        .map(|s| (s.name.as_str(), s.load.map(|l| l.total()), s.error))
        .collect();
    assert_eq!(
        got,
        [
            ("ok", Some(8.0), None),
            ("e503", None, Some("http_status")),
            ("missing", None, Some("metric_missing")),
            ("hang", None, Some("timeout")),
            ("refused", None, Some("connect")),
        ]
    );
    // Concurrent: the hung pod costs one timeout for the whole round.
    assert!(elapsed < Duration::from_millis(1200), "{elapsed:?}");
}

#[tokio::test]
async fn oversized_body_is_refused() {
    let big = "# filler\n".repeat(20_000);
    let app = Router::new().route("/metrics", get(move || async move { big }));
    let listener = tokio::net::TcpListener::bind((ip(71), 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let sample = scraper(port, 2000).sample(&target("big", 71)).await;
    assert_eq!((sample.load, sample.error), (None, Some("too_large")));
}

#[tokio::test]
async fn decision_follows_a_flipped_queue_and_a_pod_going_dark() {
    let fake = |w| FakeMode::Serve {
        waiting: w,
        running: 1.0,
    };
    let a = FakeMetricsServer::start(ip(81), 0, fake(0.0))
        .await
        .unwrap();
    let port = a.addr().port();
    let b = FakeMetricsServer::start(ip(82), port, fake(0.0))
        .await
        .unwrap();
    let targets = [target("a", 81), target("b", 82)];
    let scraper = scraper(port, 300);
    let policy = AutoscalePolicy {
        min_replicas: 1,
        max_replicas: 10,
        target_per_replica: 2.0,
        scale_down_stabilization: Duration::ZERO,
        ..AutoscalePolicy::default()
    };
    let mut history = RecommendationHistory::new();
    let mut round = |current: u32, samples| {
        let input = AutoscaleInput {
            current_replicas: current,
            pods: samples,
            policy: policy.clone(),
        };
        decide(&input, &mut history, Instant::now()).unwrap()
    };

    let d = round(2, scraper.scrape_all(&targets).await);
    assert_eq!((d.desired, d.reason), (1, Reason::ScaleDown));
    a.set_load(9.0, 1.0);
    let d = round(1, scraper.scrape_all(&targets).await);
    // 10 + 1 = 11 requests / 2 = 6, at most double per round.
    assert_eq!((d.desired, d.reason), (2, Reason::ScaleUpLimited));
    assert_eq!(d.metric.load(), 11.0);
    // Load drops, but b stops answering: hold instead of scaling down.
    a.set_load(0.0, 0.0);
    b.set(FakeMode::Status(500));
    let d = round(4, scraper.scrape_all(&targets).await);
    assert_eq!((d.desired, d.reason), (4, Reason::MetricsUnknown));
    assert_eq!(d.metric.unknown_pods, 1);
}
