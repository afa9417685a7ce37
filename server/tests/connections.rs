//! The accept loop on loopback: slow clients are closed by the header-read timeout, idle
//! keep-alive connections by the idle timeout, and over the connection cap the probes are
//! still served. Bounded: a handful of connections, every wait capped at 10 s.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/app.rs"]
mod support;

use std::time::{Duration, Instant};

use glm_server::{
    api,
    http::{self, Apps, HttpLimits},
};
use support::*;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use tokio_util::sync::CancellationToken;

const BOUND: Duration = Duration::from_secs(10);

async fn start(limits: HttpLimits) -> (std::net::SocketAddr, TestApp, CancellationToken) {
    let app = toy_app(Opts::default());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let apps = Apps {
        full: app.router.clone(),
        probes: api::probe_router(app.state.clone()),
    };
    tokio::spawn(http::serve(
        listener,
        apps,
        limits,
        app.state.metrics().clone(),
        shutdown.clone(),
    ));
    (addr, app, shutdown)
}

/// One request on a fresh connection (`Connection: close`); the status and body.
async fn get_once(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(BOUND, s.read_to_end(&mut out))
        .await
        .expect("no answer")
        .unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

/// Waits until the server closes `s` (EOF or reset); the time it took.
async fn closed_after(mut s: TcpStream, since: Instant) -> Duration {
    let mut buf = [0u8; 1024];
    let fut = async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return since.elapsed(),
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(BOUND, fut)
        .await
        .expect("the server kept the connection open")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_are_cut_and_probes_answer_over_the_cap() {
    let limits = HttpLimits {
        max_connections: 6,
        probe_reserve: 2,
        header_read_timeout: Duration::from_secs(3),
        keep_alive_timeout: Duration::from_secs(30),
    };
    let (addr, app, shutdown) = start(limits).await;
    // Slowloris: every connection sends part of a header, then one byte at a time.
    let t0 = Instant::now();
    let mut slow = Vec::new();
    for _ in 0..limits.max_connections {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        slow.push(s);
    }
    // Let the accept loop take them all before probing past the cap.
    tokio::time::sleep(Duration::from_millis(100)).await;
    for s in &mut slow {
        let _ = s.write_all(b"X").await;
    }
    // The cap is taken: probes are still served, the API is not.
    assert_eq!(get_once(addr, "/health").await.0, 200);
    let (status, body) = get_once(addr, "/v1/models").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("connection_limit"), "{body}");
    // Once they have been at it for over a second, a new client takes the slot of the
    // oldest slow one: the API answers although the cap is still taken.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, body) = get_once(addr, "/v1/models").await;
    assert_eq!(status, 200, "{body}");
    // Every slow connection is closed (one evicted, the rest by the header-read timeout).
    let mut closed = Vec::new();
    for s in slow {
        closed.push(closed_after(s, t0).await);
    }
    println!(
        "slowloris: {} connections closed after {closed:?}",
        closed.len()
    );
    // With the slots free again the API answers.
    assert_eq!(get_once(addr, "/v1/models").await.0, 200);
    let m = get(&app.router, "/metrics").await.body;
    let refused = glm_server::metrics::sample_value(&m, "glm_http_connections_refused_total");
    assert!(refused.is_some_and(|v| v >= 1.0), "{m}");
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connections_are_closed() {
    let limits = HttpLimits {
        keep_alive_timeout: Duration::from_secs(1),
        ..HttpLimits::default()
    };
    let (addr, _app, shutdown) = start(limits).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    let n = tokio::time::timeout(BOUND, s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // The connection stays open for keep-alive, then the idle timeout closes it.
    let idle = closed_after(s, Instant::now()).await;
    println!("idle keep-alive connection closed after {idle:?}");
    shutdown.cancel();
}
