//! Without a cluster the binary says how to point it at one and exits non-zero.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{io::Write, process::Command};

fn run_with_kubeconfig(path: &std::path::Path) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_glm-operator"))
        .env("KUBECONFIG", path)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .env("GLM_OPERATOR_ADMIN_PORT", "0")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn missing_kubeconfig_is_a_clear_error() {
    let (code, stderr) = run_with_kubeconfig(std::path::Path::new("/nonexistent/kubeconfig"));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("no Kubernetes cluster configured"),
        "{stderr}"
    );
    assert!(stderr.contains("kind create cluster"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
}

#[test]
fn unreachable_apiserver_is_a_clear_error() {
    // Port 1 on loopback refuses connections at once.
    let kubeconfig = r#"apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {server: "http://127.0.0.1:1"}
users:
- name: u
  user: {token: "t"}
contexts:
- name: x
  context: {cluster: c, user: u}
current-context: x
"#;
    let mut file = tempfile_in_target();
    file.1.write_all(kubeconfig.as_bytes()).unwrap();
    let (code, stderr) = run_with_kubeconfig(&file.0);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("unreachable") || stderr.contains("did not answer"),
        "{stderr}"
    );
    assert!(stderr.contains("KUBECONFIG"), "{stderr}");
    std::fs::remove_file(&file.0).ok();
}

fn tempfile_in_target() -> (std::path::PathBuf, std::fs::File) {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let path = dir.join(format!("kubeconfig-{}", std::process::id()));
    let file = std::fs::File::create(&path).unwrap();
    (path, file)
}
