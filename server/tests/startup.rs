//! Start-up refusals of the real binary: an empty or whitespace API key, or a key file
//! without keys, stops the server (exit 1, naming the flag) instead of leaving the API open
//! or locking every client out.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    io::Write,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

/// Runs `glm-server serve` with `args` and `env`; its exit code and output (bounded wait).
fn run(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let model = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/glm4moe-tiny");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_glm-server"));
    cmd.args([
        "serve",
        "--model",
        model.to_str().unwrap(),
        "--host",
        "127.0.0.1",
    ])
    .args(["--port", "0", "--log-format", "text"])
    .args(args)
    .env_remove("GLM_API_KEY")
    .env_remove("GLM_API_KEY_FILE")
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr);
            return (status.code(), text);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the server started instead of refusing: {args:?} {env:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn empty_or_whitespace_keys_refuse_to_start() {
    for (args, env) in [
        (vec![], vec![("GLM_API_KEY", "")]),
        (vec![], vec![("GLM_API_KEY", " \n")]),
        (vec!["--api-key", "  "], vec![]),
    ] {
        let (code, out) = run(&args, &env);
        assert_eq!(code, Some(1), "{args:?} {env:?}: {out}");
        assert!(out.contains("api-key"), "{out}");
        assert!(out.contains("empty or whitespace"), "{out}");
    }
    let mut file = tempfile::NamedTempFile::new().unwrap();
    writeln!(file, "# no keys here\n\n   ").unwrap();
    let path = file.path().to_str().unwrap().to_string();
    let (code, out) = run(&["--api-key-file", &path], &[]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("holds no key"), "{out}");
}
