//! The command line and its output as docs/contract.md fixes them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use clap::Parser;
use glm_download::cli::{run_json, DownloadArgs};
use glm_test_hub::{HubFile, MockHub};

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: DownloadArgs,
}

#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn args(
    hub: &MockHub,
    dir: &std::path::Path,
    repo: &str,
    termination: &std::path::Path,
) -> DownloadArgs {
    Cli::try_parse_from([
        "glm-server-download",
        "--repo",
        repo,
        "--revision",
        "main",
        "--dir",
        dir.to_str().unwrap(),
        "--hub-endpoint",
        &hub.url,
        "--termination-message-path",
        termination.to_str().unwrap(),
        "--progress-interval-ms",
        "10",
    ])
    .unwrap()
    .args
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn success_prints_json_lines_and_writes_the_termination_message() {
    let hub = MockHub::start().await.unwrap();
    let content = vec![7u8; 2_000_000];
    let sha = hub.commit(
        "o/m",
        "main",
        &[
            ("config.json", HubFile::new(b"{}".to_vec(), false)),
            ("w.safetensors", HubFile::new(content, true)),
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let term = dir.path().join("termination-log");
    let out = Buf::default();
    let code = run_json(
        args(&hub, &dir.path().join("models"), "o/m", &term),
        Box::new(out.clone()),
    )
    .await;
    assert_eq!(code, ExitCode::SUCCESS);

    let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let (last, progress) = lines.split_last().unwrap();
    assert!(!progress.is_empty(), "{text}");
    for p in progress {
        assert_eq!(p["event"], "progress");
        assert!(
            p["bytes_done"].is_u64() && p["bytes_total"].as_u64() == Some(2_000_002),
            "{p}"
        );
        assert!(p["rate_bytes_per_s"].is_f64(), "{p}");
        assert!(p.get("eta_seconds").is_some(), "{p}");
    }
    let path = dir.path().join("models").join(&sha);
    assert_eq!(
        *last,
        serde_json::json!({"event": "complete", "commit": sha, "path": path.display().to_string(), "bytes": 2_000_002})
    );
    let term: serde_json::Value = serde_json::from_slice(&std::fs::read(&term).unwrap()).unwrap();
    assert_eq!(
        term,
        serde_json::json!({"commit": sha, "path": path.display().to_string(), "bytes": 2_000_002})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_writes_kind_and_advice_to_the_termination_message() {
    let hub = MockHub::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let term = dir.path().join("termination-log");
    let code = run_json(
        args(&hub, dir.path(), "o/missing", &term),
        Box::new(Buf::default()),
    )
    .await;
    // Its own exit status (docs/contract.md): the Job's podFailurePolicy fails at once.
    assert_eq!(code, ExitCode::from(3));
    let term: serde_json::Value = serde_json::from_slice(&std::fs::read(&term).unwrap()).unwrap();
    assert_eq!(term["error"], "not_found");
    assert!(
        term["message"].as_str().unwrap().contains("o/missing"),
        "{term}"
    );
}
