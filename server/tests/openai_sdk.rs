//! The official `openai` Python SDK against the real binary: chat, streaming, completions,
//! models and errors. Skips (with a message) when no Python with `openai` is found; set
//! GLM_TEST_PYTHON to choose the interpreter.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/process.rs"]
mod process;

use std::process::Command;

use process::{fixture_model, ServerProcess};

fn python_with_openai() -> Option<String> {
    process::python_with("openai")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_python_sdk_round_trip() {
    let Some(python) = python_with_openai() else {
        println!("SKIPPED: no python with the `openai` package (pip install openai, or set GLM_TEST_PYTHON)");
        return;
    };
    let model = fixture_model();
    let server = ServerProcess::start(model.to_str().unwrap(), &["--api-key", "test-key"]).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk/openai_client.py");
    let base = server.base.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .args([script, &base, "test-key", "glm-test"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "SDK checks failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("checks passed"));
}
