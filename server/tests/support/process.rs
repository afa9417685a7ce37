//! Runs the real `glm-server` binary on a free port for black-box tests.
#![allow(dead_code)]

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

pub struct ServerProcess {
    pub child: Child,
    pub port: u16,
    pub base: String,
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

pub fn fixture_model() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/glm4moe-tiny")
}

impl ServerProcess {
    /// Starts `glm-server serve --model DIR --port P ARGS...` and waits for `/ready`.
    pub async fn start(model: &str, args: &[&str]) -> Self {
        let port = free_port();
        let log = std::env::temp_dir().join(format!("glm-server-test-{port}.log"));
        let log_file = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_glm-server"))
            .args([
                "serve",
                "--model",
                model,
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
            ])
            .args([
                "--served-model-name",
                "glm-test",
                "--kv-cache-memory",
                "64MiB",
            ])
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::from(log_file.try_clone().unwrap()))
            .stderr(Stdio::from(log_file))
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let mut server = ServerProcess { child, port, base };
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!(
                    "server exited early ({status}); log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            if let Ok(r) = client.get(format!("{}/ready", server.base)).send().await {
                if r.status() == 200 {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "server not ready in time");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        server.port = port;
        server
    }

    pub fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit, up to `limit`.
    pub async fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A Python interpreter that imports `modules` (comma-separated, as in `import a, b`):
/// `$GLM_TEST_PYTHON`, then the SDK venv, then `python3`. `None` makes SDK tests skip.
pub fn python_with(modules: &str) -> Option<String> {
    let candidates = [
        std::env::var("GLM_TEST_PYTHON").ok(),
        Some("/root/venv-sdk/bin/python".to_string()),
        Some("python3".to_string()),
    ];
    candidates.into_iter().flatten().find(|py| {
        Command::new(py)
            .args(["-c", &format!("import {modules}")])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}
