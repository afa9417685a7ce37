//! The operator can never render server arguments the server refuses: every example's
//! Deployment, rendered by the operator's own builder, goes through
//! `glm-server serve --check=args ...` (the server parses every flag, reads
//! `<model>/config.json`, checks architecture, dtype and device, loads no weights, exits 0 or 2).
//!
//! `--model` is replaced by a local fixture of the same architecture. The binary is
//! `<target>/debug/glm-server` (`cargo build --workspace --bins`, which .ci/run does); without
//! it, or with a glm-server that has no `serve --check` yet, the test says so and passes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;

use glm_crds::GlmDeployment;
use glm_operator::reconcile::deployment::{
    desired_deployment, served_model, DeploymentParams, CONTAINER,
};
use glm_operator::reconcile::spec_check::unsupported_by_server;
use serde_json::Value;

const TEST: &str = "every_example_renders_arguments_the_server_accepts";

fn server_binary() -> Option<PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| glm_e2e::workspace_root().join("target"));
    let bin = target.join("debug").join("glm-server");
    if !bin.is_file() {
        println!(
            "SKIP {TEST}: {} not built (`cargo build -p glm-server --bin glm-server`)",
            bin.display()
        );
        return None;
    }
    let help = Command::new(&bin).args(["serve", "--help"]).output().ok()?;
    if !String::from_utf8_lossy(&help.stdout).contains("--check") {
        println!(
            "SKIP {TEST}: {} has no `serve --check` yet (it comes with the lead's branch)",
            bin.display()
        );
        return None;
    }
    Some(bin)
}

/// A local model of the same architecture as `repo` (GLM-4.7-Flash is Glm4MoeLite, the other
/// GLM-4.5/4.6/4.7 releases are Glm4Moe).
fn fixture_for(repo: &str) -> PathBuf {
    let name = if repo.contains("GLM-4.7-Flash") {
        "glm4moelite-tiny"
    } else {
        "glm4moe-tiny"
    };
    glm_e2e::workspace_root()
        .join("..")
        .join("shared")
        .join("fixtures")
        .join(name)
}

fn examples() -> Vec<(String, GlmDeployment)> {
    let dir = glm_e2e::workspace_root().join("examples");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        for mut doc in glm_e2e::manifest::read_documents(&path).unwrap() {
            if doc.get("kind").and_then(Value::as_str) != Some(glm_crds::KIND) {
                continue;
            }
            // The builder needs what the API server would add.
            doc["metadata"]["namespace"] = "default".into();
            doc["metadata"]["uid"] = "00000000-0000-0000-0000-000000000001".into();
            doc["metadata"]["generation"] = 1.into();
            let g: GlmDeployment = serde_json::from_value(doc).unwrap();
            out.push((path.file_name().unwrap().to_string_lossy().into_owned(), g));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The server container's args as the operator renders them, `--model` pointing at `model`.
fn rendered_args(g: &GlmDeployment, model: &str) -> Vec<String> {
    // The operator's own choice of path (`demo` for the built-in demo).
    let served = served_model(g, "0123456789abcdef0123456789abcdef01234567");
    let d = desired_deployment(
        g,
        &DeploymentParams {
            image: glm_crds::DEFAULT_SERVER_IMAGE,
            model: &served,
            replicas: Some(1),
        },
    )
    .unwrap();
    let pod = d.spec.unwrap().template.spec.unwrap();
    let c = pod
        .containers
        .into_iter()
        .find(|c| c.name == CONTAINER)
        .unwrap();
    assert_eq!(c.command.as_deref(), Some(&["glm-server".to_string()][..]));
    let mut args = c.args.unwrap();
    let i = args.iter().position(|a| a == "--model").unwrap();
    if !g.spec.model.is_builtin_demo() {
        args[i + 1] = model.to_string();
    }
    args
}

fn server_accepts(bin: &PathBuf, file: &str, args: &[String]) {
    assert_eq!(args.first().map(String::as_str), Some("serve"), "{file}");
    let out = Command::new(bin)
        .arg("serve")
        .arg("--check=args")
        .args(&args[1..])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{file}: glm-server refused the operator's arguments {args:?} ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_example_renders_arguments_the_server_accepts() {
    let Some(bin) = server_binary() else {
        return;
    };
    let all = examples();
    assert!(all.len() >= 5, "{} examples", all.len());
    for (file, mut g) in all {
        let fixture = fixture_for(&g.spec.model.repo);
        let model = fixture.to_string_lossy().into_owned();
        if unsupported_by_server(&g).is_some() {
            // Not rendered at all (Degraded UnsupportedByServer); what the user is told to do
            // instead (one GPU per replica) must be accepted.
            g.spec.server.tensor_parallel_size = 1;
            g.spec.resources.gpus = 1;
        }
        let args = rendered_args(&g, &model);
        if g.spec.resources.gpus > 0 {
            assert!(
                args.windows(2).any(|w| w == ["--device", "cuda"]),
                "{file}: {args:?}"
            );
        }
        server_accepts(&bin, &file, &args);
    }
}
