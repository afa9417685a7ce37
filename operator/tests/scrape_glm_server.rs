//! The scraper and the decision against real `glm-server` processes on 127.0.0.N with real
//! load (streaming completions on the demo model).
//!
//! The server binary comes from `GLM_SERVER_BIN` or `target/debug/glm-server` (build it with
//! `cargo build -p glm-server`). It is not built from here: a nested cargo would wait on the
//! lock the running `cargo test` holds. Without a binary, or when it does not start with
//! `serve --model demo --host 127.0.0.N --port P`, the test prints why and skips.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use glm_operator::autoscale::{
    decide, AutoscaleInput, AutoscalePolicy, Reason, RecommendationHistory,
};
use glm_operator::scrape::{PodTarget, ScrapeConfig, Scraper};

struct Server {
    child: Child,
    ip: IpAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn server_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("GLM_SERVER_BIN") {
        return Some(PathBuf::from(p));
    }
    // CARGO_MANIFEST_DIR is operator/; the workspace target dir sits beside it.
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let p = target.join("debug/glm-server");
    p.exists().then_some(p)
}

fn free_port(ip: IpAddr) -> u16 {
    std::net::TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

/// Starts the server and waits for /ready; Err(reason) means skip.
async fn start(bin: &PathBuf, ip: IpAddr, port: u16) -> Result<Server, String> {
    let child = Command::new(bin)
        .args([
            "serve",
            "--model",
            "demo",
            "--host",
            &ip.to_string(),
            "--port",
            &port.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
    let mut server = Server { child, ip };
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = server.child.try_wait() {
            return Err(format!(
                "`{} serve --model demo` exited with {status}",
                bin.display()
            ));
        }
        let ready = client
            .get(format!("http://{ip}:{port}/ready"))
            .timeout(Duration::from_secs(1))
            .send()
            .await;
        if ready.is_ok_and(|r| r.status().is_success()) {
            return Ok(server);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = server.child.kill();
    Err(format!(
        "{} never became ready on {ip}:{port}",
        bin.display()
    ))
}

async fn model_id(ip: IpAddr, port: u16) -> String {
    let v: serde_json::Value = reqwest::get(format!("http://{ip}:{port}/v1/models"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["data"][0]["id"].as_str().unwrap_or("demo").to_string()
}

/// One streaming completion, read to the end slowly enough to stay in flight a while.
async fn stream_completion(ip: IpAddr, port: u16, model: String) -> usize {
    let body = serde_json::json!({
        "model": model,
        "prompt": "Count slowly from one to one thousand:",
        "max_tokens": 512,
        "stream": true,
    });
    let mut resp = reqwest::Client::new()
        .post(format!("http://{ip}:{port}/v1/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let mut chunks = 0;
    while let Ok(Some(_)) = resp.chunk().await {
        chunks += 1;
    }
    chunks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scrape_follows_real_load_on_two_servers() {
    let Some(bin) = server_binary() else {
        eprintln!(
            "SKIP scrape_follows_real_load_on_two_servers: no glm-server binary \
             (set GLM_SERVER_BIN or run `cargo build -p glm-server`)"
        );
        return;
    };
    let (ip_a, ip_b): (IpAddr, IpAddr) =
        ("127.0.0.91".parse().unwrap(), "127.0.0.92".parse().unwrap());
    let port = free_port(ip_a);
    let (a, b) = match tokio::join!(start(&bin, ip_a, port), start(&bin, ip_b, port)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("SKIP scrape_follows_real_load_on_two_servers: {e}");
            return;
        }
    };
    let targets: Vec<PodTarget> = [&a, &b]
        .iter()
        .enumerate()
        .map(|(i, s)| PodTarget {
            name: format!("server-{i}"),
            ip: Some(s.ip),
            ready: true,
        })
        .collect();
    let scraper = Scraper::new(ScrapeConfig {
        port,
        timeout: Duration::from_secs(1),
        ..ScrapeConfig::default()
    })
    .unwrap();
    let policy = AutoscalePolicy {
        min_replicas: 1,
        max_replicas: 16,
        target_per_replica: 1.0,
        scale_down_stabilization: Duration::ZERO,
        ..AutoscalePolicy::default()
    };
    let mut history = RecommendationHistory::new();

    // Idle: both answer, load 0, the decision goes to the minimum.
    let idle = scraper.scrape_all(&targets).await;
    assert!(idle.iter().all(|s| s.load.is_some()), "{idle:?}");
    assert_eq!(
        idle.iter().map(|s| s.load.unwrap().total()).sum::<f64>(),
        0.0
    );

    // Load server a with 16 concurrent streams; scrape every 100 ms (the interval).
    let interval = Duration::from_millis(100);
    let model = model_id(ip_a, port).await;
    let load: Vec<_> = (0..16)
        .map(|_| tokio::spawn(stream_completion(ip_a, port, model.clone())))
        .collect();
    let started = Instant::now();
    let mut first_scale_up = None;
    let mut peak = 0.0_f64;
    while started.elapsed() < Duration::from_secs(60) && !load.iter().all(|h| h.is_finished()) {
        let samples = scraper.scrape_all(&targets).await;
        assert!(samples.iter().all(|s| s.load.is_some()), "{samples:?}");
        let d = decide(
            &AutoscaleInput {
                current_replicas: 2,
                pods: samples.clone(),
                policy: policy.clone(),
            },
            &mut history,
            Instant::now(),
        )
        .unwrap();
        peak = peak.max(d.metric.load());
        // Server b carries nothing: all load is on a.
        assert_eq!(samples[1].load.unwrap().total(), 0.0);
        if first_scale_up.is_none() && matches!(d.reason, Reason::ScaleUp | Reason::ScaleUpLimited)
        {
            first_scale_up = Some(started.elapsed());
        }
        tokio::time::sleep(interval).await;
    }
    for h in load {
        assert!(h.await.unwrap() > 0, "a stream returned no chunk");
    }
    let after = scraper.scrape_all(&targets).await;
    let remaining: f64 = after.iter().map(|s| s.load.unwrap().total()).sum();
    println!(
        "real glm-server: peak load {peak}, first scale-up decision after {:?}, load after {remaining}",
        first_scale_up
    );
    assert!(peak >= 3.0, "16 streams never showed as load (peak {peak})");
    assert!(
        first_scale_up.is_some(),
        "load {peak} never led to a scale-up"
    );
    assert_eq!(remaining, 0.0);
    drop((a, b));
}
