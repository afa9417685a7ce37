//! HTTP helpers: JSON posts, SSE parsing, and running the Python SDK scripts.

use std::{path::PathBuf, process::Command};

use serde_json::Value;

use super::server::{TestServer, API_KEY};

/// One server-sent event: the `event:` name (if any) and the `data:` payload.
#[derive(Debug, Clone)]
pub struct Sse {
    pub event: Option<String>,
    pub data: String,
}

pub fn parse_sse(body: &str) -> Vec<Sse> {
    body.split("\n\n")
        .filter(|frame| !frame.trim().is_empty())
        .filter_map(|frame| {
            let mut event = None;
            let mut data = Vec::new();
            for line in frame.lines() {
                if let Some(e) = line.strip_prefix("event:") {
                    event = Some(e.trim().to_string());
                } else if let Some(d) = line.strip_prefix("data:") {
                    data.push(d.strip_prefix(' ').unwrap_or(d).to_string());
                }
            }
            // Comment-only frames (keep-alives) carry no data.
            (!data.is_empty()).then(|| Sse {
                event,
                data: data.join("\n"),
            })
        })
        .collect()
}

/// POSTs JSON with the given auth header; returns (status, body text).
pub async fn post(
    server: &TestServer,
    path: &str,
    body: &Value,
    header: (&str, String),
) -> (u16, String) {
    let resp = reqwest::Client::new()
        .post(format!("{}{path}", server.base))
        .header(header.0, header.1)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap())
}

pub fn bearer() -> (&'static str, String) {
    ("authorization", format!("Bearer {API_KEY}"))
}

pub fn x_api_key() -> (&'static str, String) {
    ("x-api-key", API_KEY.to_string())
}

/// The Python with the official SDKs: `GLM_TEST_PYTHON`, else `/root/venv-sdk/bin/python`.
/// `None` (with a printed reason) when it is missing or lacks `openai` / `anthropic`.
pub fn sdk_python() -> Option<PathBuf> {
    let python = std::env::var_os("GLM_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root/venv-sdk/bin/python"));
    if !python.exists() {
        println!(
            "SKIP: no SDK python at {} (set GLM_TEST_PYTHON)",
            python.display()
        );
        return None;
    }
    let ok = Command::new(&python)
        .args(["-c", "import openai, anthropic"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        println!(
            "SKIP: {} cannot import openai and anthropic",
            python.display()
        );
        return None;
    }
    Some(python)
}

/// Runs `server/tests/py/<script>` against the server; panics with its output on failure.
pub async fn run_sdk_script(python: PathBuf, script: &str, server: &TestServer) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/py")
        .join(script);
    let base = server.base.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(path)
            .env("GLM_BASE_URL", base)
            .env("GLM_API_KEY", API_KEY)
            .env("GLM_MODEL", super::server::MODEL)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(out.status.success(), "{script} failed:\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("ALL OK"),
        "{script} did not finish:\n{stdout}\n{stderr}"
    );
}
