//! A controllable stand-in for a server pod's `/metrics`, for tests and the autoscale bench
//! (not used by the operator itself). Binding 127.0.0.N lets several fake pods share the
//! scraper's single port, as real pods share port 8000 on different IPs.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::parse::{RUNNING, WAITING};

/// How the fake answers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FakeMode {
    /// 200 with both gauges (over two label sets, with HELP/TYPE lines).
    Serve { waiting: f64, running: f64 },
    /// This HTTP status, empty body.
    Status(u16),
    /// 200 without the glm gauges.
    MissingMetric,
    /// Never answers (until the scraper times out).
    Hang,
}

/// One fake pod. Dropping it stops the server.
pub struct FakeMetricsServer {
    addr: SocketAddr,
    mode: Arc<Mutex<FakeMode>>,
    task: JoinHandle<()>,
}

impl FakeMetricsServer {
    /// Listens on `ip:port` (port 0 = any) and serves `mode`.
    pub async fn start(ip: IpAddr, port: u16, mode: FakeMode) -> std::io::Result<Self> {
        let listener = TcpListener::bind((ip, port)).await?;
        let addr = listener.local_addr()?;
        let mode = Arc::new(Mutex::new(mode));
        let app = Router::new()
            .route("/metrics", get(metrics))
            .with_state(Arc::clone(&mode));
        let task = tokio::spawn(async move {
            // The server only ends when the task is aborted on drop.
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, mode, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn set(&self, mode: FakeMode) {
        *self
            .mode
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = mode;
    }

    pub fn set_load(&self, waiting: f64, running: f64) {
        self.set(FakeMode::Serve { waiting, running });
    }
}

impl Drop for FakeMetricsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn metrics(State(mode): State<Arc<Mutex<FakeMode>>>) -> Response {
    let mode = *mode
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    match mode {
        FakeMode::Serve { waiting, running } => exposition(waiting, running).into_response(),
        FakeMode::Status(code) => StatusCode::from_u16(code)
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            .into_response(),
        FakeMode::MissingMetric => "# HELP other_metric x\nother_metric 1\n".into_response(),
        FakeMode::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::GATEWAY_TIMEOUT.into_response()
        }
    }
}

/// The load split over two label sets, so the scraper's summing is exercised.
fn exposition(waiting: f64, running: f64) -> String {
    let (w1, r1) = ((waiting / 2.0).floor(), (running / 2.0).floor());
    format!(
        "# HELP {WAITING} Requests waiting.\n# TYPE {WAITING} gauge\n\
         {WAITING}{{model_name=\"demo\"}} {w1}\n\
         {WAITING}{{model_name=\"demo-lora\"}} {}\n\
         # HELP {RUNNING} Requests running.\n# TYPE {RUNNING} gauge\n\
         {RUNNING}{{model_name=\"demo\"}} {r1}\n\
         {RUNNING}{{model_name=\"demo-lora\"}} {}\n\
         glm_kv_cache_usage_ratio{{model_name=\"demo\"}} 0.25\n",
        waiting - w1,
        running - r1
    )
}
