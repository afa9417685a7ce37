//! The operator as a local process watching one test namespace (what `cargo run -p
//! glm-operator` does on a developer machine), with its log kept under
//! `target/e2e-logs/<test>-operator.log` for failure analysis.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use super::E2eError;

/// The glm-operator command-line flags the harness passes (operator/src/config.rs; the
/// chart's templates/deployment.yaml passes the same ones).
pub mod flags {
    pub const NAMESPACE: &str = "--namespace";
    pub const DEFAULT_IMAGE: &str = "--default-image";
    pub const LOG_FORMAT: &str = "--log-format";
    pub const ADMIN_PORT: &str = "--admin-port";
    pub const LEADER_ELECTION: &str = "--leader-election";
    pub const LEASE_NAMESPACE: &str = "--lease-namespace";
    pub const LEASE_NAME: &str = "--lease-name";
    pub const IDENTITY: &str = "--identity";
}

/// Name of the Lease an operator started with leader election holds (in the test namespace).
pub const E2E_LEASE: &str = "glm-operator-e2e";

/// A running glm-operator; killed when dropped.
pub struct OperatorProcess {
    child: Child,
    pub log: PathBuf,
    pub admin_addr: String,
}

impl OperatorProcess {
    /// Starts `$GLM_OPERATOR_BIN` (default: `target/debug/glm-operator`, built by `cargo
    /// build -p glm-operator`) watching `namespace`, and waits for its `/healthz`.
    /// `leader`: run with leader election on the Lease [`E2E_LEASE`] in `namespace` under this
    /// identity (`None`: no election, one operator per test namespace).
    pub async fn start(
        test: &str,
        namespace: &str,
        kubeconfig: Option<&Path>,
        leader: Option<&str>,
    ) -> Result<Self, E2eError> {
        let bin = operator_binary()?;
        let logs = crate::workspace_root().join("target").join("e2e-logs");
        std::fs::create_dir_all(&logs)
            .map_err(|e| E2eError::Operator(format!("{}: {e}", logs.display())))?;
        let log = logs.join(format!("{test}-operator.log"));
        let out = std::fs::File::create(&log)
            .map_err(|e| E2eError::Operator(format!("{}: {e}", log.display())))?;
        let err = out
            .try_clone()
            .map_err(|e| E2eError::Operator(e.to_string()))?;
        let port = free_port()?;
        let admin_addr = format!("127.0.0.1:{port}");
        let mut cmd = Command::new(&bin);
        cmd.arg(format!("{}={namespace}", flags::NAMESPACE))
            .arg(format!("{}=text", flags::LOG_FORMAT))
            .arg(format!("{}={port}", flags::ADMIN_PORT));
        match leader {
            Some(identity) => cmd
                .arg(format!("{}=true", flags::LEADER_ELECTION))
                .arg(format!("{}={namespace}", flags::LEASE_NAMESPACE))
                .arg(format!("{}={E2E_LEASE}", flags::LEASE_NAME))
                .arg(format!("{}={identity}", flags::IDENTITY)),
            // One operator per test namespace: no Lease needed.
            None => cmd.arg(format!("{}=false", flags::LEADER_ELECTION)),
        };
        cmd.env(
            "RUST_LOG",
            std::env::var("GLM_E2E_OPERATOR_LOG").unwrap_or_else(|_| "info".into()),
        );
        if let Some(path) = kubeconfig {
            cmd.env("KUBECONFIG", path);
        }
        if let Ok(image) = std::env::var("GLM_E2E_SERVER_IMAGE") {
            cmd.arg(format!("{}={image}", flags::DEFAULT_IMAGE));
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| E2eError::Operator(format!("spawn {}: {e}", bin.display())))?;
        let mut op = Self {
            child,
            log,
            admin_addr,
        };
        op.wait_healthy().await?;
        Ok(op)
    }

    async fn wait_healthy(&mut self) -> Result<(), E2eError> {
        let url = format!("http://{}/healthz", self.admin_addr);
        let http = reqwest::Client::new();
        for _ in 0..60 {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(E2eError::Operator(format!(
                    "exited with {status} before becoming healthy; log: {}",
                    self.log.display()
                )));
            }
            if let Ok(r) = http.get(&url).timeout(Duration::from_secs(1)).send().await {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Err(E2eError::Operator(format!(
            "{url} not healthy within 30 s; log: {}",
            self.log.display()
        )))
    }

    /// Kills the process and reaps it.
    pub async fn stop(mut self) {
        if let Err(e) = self.child.kill().await {
            tracing::warn!(error = %e, "stopping the operator process");
        }
    }

    /// Sends SIGTERM (what the kubelet does to a pod) and waits up to `grace` for the exit;
    /// kills it after that. Returns whether it exited on its own.
    pub async fn terminate(mut self, grace: Duration) -> bool {
        if let Some(pid) = self.child.id() {
            let sent = Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status()
                .await
                .is_ok_and(|s| s.success());
            if sent && tokio::time::timeout(grace, self.child.wait()).await.is_ok() {
                return true;
            }
        }
        self.stop().await;
        false
    }
}

fn operator_binary() -> Result<PathBuf, E2eError> {
    if let Some(p) = std::env::var_os("GLM_OPERATOR_BIN") {
        return Ok(PathBuf::from(p));
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::workspace_root().join("target"));
    let bin = target.join("debug").join("glm-operator");
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(E2eError::Operator(format!(
            "{} not found: run `cargo build -p glm-operator` first, set GLM_OPERATOR_BIN, \
             or install the chart and set GLM_E2E_OPERATOR=external",
            bin.display()
        )))
    }
}

fn free_port() -> Result<u16, E2eError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| E2eError::Operator(format!("no free port: {e}")))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| E2eError::Operator(e.to_string()))
}
