//! Structured outputs through the official `openai` SDK against the real binary on both
//! fixture models (random weights: only the grammar makes an answer valid), at temperature
//! 1.0 over many seeds. Skips (with a message) without a Python that has `openai`; set
//! GLM_TEST_PYTHON to choose the interpreter.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/process.rs"]
mod process;

use std::{path::PathBuf, process::Command};

use process::ServerProcess;

fn python_with_openai() -> Option<String> {
    process::python_with("openai, anthropic, pydantic")
}

async fn run_script(fixture: &str, script: &str, args: &[&str], seeds: &str) {
    let Some(python) = python_with_openai() else {
        println!("SKIPPED: no python with `openai` and `anthropic` (see .ci/run, or set GLM_TEST_PYTHON)");
        return;
    };
    let model = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(fixture);
    let server = ServerProcess::start(model.to_str().unwrap(), args).await;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/py")
        .join(script);
    let base = server.base.clone();
    let seeds = seeds.to_string();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(script)
            .args([&base, "glm-test", &seeds])
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
        "{fixture}: structured-output checks failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("checks passed"));
    let metrics = reqwest::get(format!("{}/metrics", server.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let constrained = metrics
        .lines()
        .find(|l| l.starts_with("glm_constrained_requests_total"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok());
    assert!(constrained.unwrap_or(0.0) > 0.0, "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_sdk_structured_outputs_glm4moe() {
    run_script("glm4moe-tiny", "structured_outputs.py", &[], "12").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_sdk_structured_outputs_glm4moelite() {
    run_script("glm4moelite-tiny", "structured_outputs.py", &[], "12").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forced_tool_calls_openai_and_anthropic_sdks_glm45_layout() {
    let args = ["--tool-call-parser", "glm45", "--enable-auto-tool-choice"];
    run_script("glm4moe-tiny", "structured_tools.py", &args, "10").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forced_tool_calls_openai_and_anthropic_sdks_glm47_layout() {
    let args = ["--tool-call-parser", "glm47", "--enable-auto-tool-choice"];
    run_script("glm4moelite-tiny", "structured_tools.py", &args, "10").await;
}
