//! `glm-server serve --check`: every flag parsed, config.json and the tokenizer read, device,
//! backend and dtype checked, one line out, exit 0 or 2, and no weights read.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

/// Runs `glm-server serve --model <model> <args>`; returns (exit code, stdout, stderr).
fn check(model: &Path, args: &[&str]) -> (i32, String, String) {
    check_with_env(model, args, &[])
}

fn check_with_env(model: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_glm-server"))
        .arg("serve")
        .arg("--model")
        .arg(model)
        .args(args)
        .env("RUST_LOG", "error")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_accepts_what_would_run_and_names_the_plan() {
    let (code, out, err) = check(&fixture("glm4moelite-tiny"), &["--check", "--port", "1"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("ok:"), "{out}");
    for needle in [
        "Glm4MoeLiteForCausalLM",
        "backend cpu",
        "tool-call parser glm47",
    ] {
        assert!(out.contains(needle), "{needle} not in {out}");
    }
    // A GPU: accepted by what glm-server supports (args), refused by this CPU build (all).
    let gpu = [
        "--device",
        "cuda",
        "--kv-cache-memory",
        "0.9",
        "--dtype",
        "bfloat16",
    ];
    let (code, out, err) = check(
        &fixture("glm4moe-tiny"),
        &[&["--check=args"][..], &gpu].concat(),
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("on cuda:0 with backend cuda"), "{out}");
    if !cfg!(feature = "cuda") {
        let (code, _, err) = check(&fixture("glm4moe-tiny"), &[&["--check"][..], &gpu].concat());
        assert_eq!(code, 2, "{err}");
        assert!(err.contains("feature `cuda`"), "{err}");
    }
}

#[test]
fn check_refuses_with_the_reason_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(PathBuf, Vec<&str>, &str)> = vec![
        (fixture("glm4moe-tiny"), vec!["--dtype", "int4"], "dtype"),
        (
            fixture("glm4moe-tiny"),
            vec!["--dtype", "fp8", "--device", "cuda"],
            "--dtype fp8",
        ),
        (fixture("glm4moe-tiny"), vec!["--device", "tpu"], "device"),
        (
            fixture("glm4moe-tiny"),
            vec!["--backend", "cuda"],
            "backend",
        ),
        (
            fixture("glm4moe-tiny"),
            vec!["--tensor-parallel-size", "8"],
            "tensor-parallel-size",
        ),
        (
            fixture("glm4moe-tiny"),
            vec!["--enable-auto-tool-choice"],
            "tool-call-parser",
        ),
        (dir.path().to_path_buf(), vec![], "config.json"),
    ];
    for (model, args, needle) in cases {
        let (code, out, err) = check(&model, &[&["--check=args"][..], &args].concat());
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert!(out.is_empty(), "{args:?}: {out}");
        assert!(err.contains(needle), "{args:?}: {needle} not in {err}");
    }
}

#[test]
fn check_names_fp8_checkpoints_and_refuses_other_quantization() {
    let (code, out, err) = check(&fixture("glm4moe-tiny-fp8"), &["--check"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("FP8 checkpoint (128x128 block scales)"),
        "{out}"
    );
    let (code, out, err) = check(&fixture("glm4moelite-tiny-fp8"), &["--check"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("FP8 checkpoint (per-tensor/per-row scales)"),
        "{out}"
    );
    // A GPTQ config: refused naming quantization_config and the method.
    let dir = tempfile::tempdir().unwrap();
    for f in ["config.json", "tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(fixture("glm4moe-tiny").join(f), dir.path().join(f)).unwrap();
    }
    let cfg = dir.path().join("config.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg).unwrap()).unwrap();
    v["quantization_config"] = serde_json::json!({"quant_method": "gptq", "bits": 4});
    std::fs::write(&cfg, v.to_string()).unwrap();
    let (code, _, err) = check(dir.path(), &["--check"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("quantization_config") && err.contains("gptq"),
        "{err}"
    );
    // An instruction set this CPU cannot run, or no such thing: refused at start.
    let (code, _, err) = check_with_env(
        &fixture("glm4moe-tiny"),
        &["--check"],
        &[("GLM_CPU_ISA", "sse9")],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("GLM_CPU_ISA") && err.contains("sse9"), "{err}");
}

#[test]
fn check_reads_no_weights() {
    // A directory with config, tokenizer and template but no safetensors passes the check.
    let dir = tempfile::tempdir().unwrap();
    let src = fixture("glm4moe-tiny");
    for f in std::fs::read_dir(&src).unwrap() {
        let p = f.unwrap().path();
        if p.extension().is_some_and(|e| e != "safetensors") {
            std::fs::copy(&p, dir.path().join(p.file_name().unwrap())).unwrap();
        }
    }
    let (code, out, err) = check(dir.path(), &["--check"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("KV blocks"), "{out}");
}
