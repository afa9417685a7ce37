//! `glm-manifest-check` (the CLI `.ci/helm-check.sh` users pipe rendered YAML into): exit 0
//! on valid objects, 1 naming the broken object and field otherwise.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::process::{Command, Stdio};

fn run(stdin: &str) -> (i32, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_glm-manifest-check"))
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
    )
}

const SA: &str =
    "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: op\n  namespace: glm-system\n";

#[test]
fn valid_objects_exit_zero() {
    let demo =
        std::fs::read_to_string(glm_e2e::workspace_root().join("examples/cpu-demo.yaml")).unwrap();
    let (code, out) = run(&format!("{SA}---\n{demo}"));
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("ok   stdin: ServiceAccount glm-system/op"),
        "{out}"
    );
    assert!(out.contains("checked 2 objects, 0 invalid"), "{out}");
}

#[test]
fn a_broken_object_exits_one_and_names_the_field() {
    let bad = "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\nspec:\n  portz: []\n";
    let (code, out) = run(&format!("{SA}---\n{bad}"));
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("FAIL stdin: [unknown_field] Service s: field .spec.portz"),
        "{out}"
    );
    assert!(out.contains("checked 2 objects, 1 invalid"), "{out}");
}

#[test]
fn no_arguments_is_a_usage_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_glm-manifest-check"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
