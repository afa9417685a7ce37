//! The Dockerfile cannot be built here (no container engine), so its contract is checked
//! statically: both variants exist, both binaries are built and copied, the user is not root
//! with the uid the chart expects, and the build context keeps every file the binaries
//! compile in.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use glm_e2e::workspace_root;
use serde_json::Value;

fn read(rel: &str) -> String {
    std::fs::read_to_string(workspace_root().join(rel)).unwrap()
}

/// Instructions with continuation lines joined, comments dropped.
fn instructions(dockerfile: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in dockerfile.lines() {
        let t = line.trim();
        if t.starts_with('#') || (t.is_empty() && cur.is_empty()) {
            continue;
        }
        match t.strip_suffix('\\') {
            Some(head) => {
                cur.push_str(head);
                cur.push(' ');
            }
            None => {
                cur.push_str(t);
                if !cur.trim().is_empty() {
                    out.push(cur.trim().to_owned());
                }
                cur.clear();
            }
        }
    }
    out
}

#[test]
fn both_variants_build_both_binaries_for_a_non_root_user() {
    let text = read("Dockerfile");
    let ins = instructions(&text);
    let stages: Vec<&str> = ins
        .iter()
        .filter_map(|i| i.strip_prefix("FROM "))
        .filter_map(|f| f.split(" AS ").nth(1))
        .collect();
    for variant in ["cpu", "cuda"] {
        assert!(
            stages.contains(&format!("builder-{variant}").as_str()),
            "{stages:?}"
        );
        assert!(
            stages.contains(&format!("runtime-{variant}").as_str()),
            "{stages:?}"
        );
    }
    assert!(
        ins.iter().any(|i| i == "ARG VARIANT=cpu"),
        "CPU is the default variant"
    );
    assert!(ins
        .iter()
        .any(|i| i.starts_with("FROM nvidia/cuda:") && i.contains("-runtime-")));

    let builds: Vec<_> = ins.iter().filter(|i| i.contains("cargo build")).collect();
    assert_eq!(builds.len(), 2);
    for b in &builds {
        assert!(b.contains("--locked") && b.contains("--release"), "{b}");
        assert!(
            b.contains("--bin glm-server") && b.contains("--bin glm-operator"),
            "{b}"
        );
    }
    assert!(builds
        .iter()
        .any(|b| b.contains("--features glm-server/cuda")));
    let server: Value = toml_features(&read("server/Cargo.toml"));
    assert!(
        server.get("cuda").is_some(),
        "glm-server has the cuda feature the GPU build enables"
    );

    assert!(ins.iter().any(|i| i.starts_with("COPY --from=builder")
        && i.contains("glm-server")
        && i.contains("glm-operator")));
    let user = ins
        .iter()
        .rev()
        .find_map(|i| i.strip_prefix("USER "))
        .unwrap();
    assert!(
        !user.starts_with('0') && !user.starts_with("root"),
        "USER {user}"
    );
    assert!(
        user.starts_with("10001"),
        "the chart's podSecurityContext runs as 10001: USER {user}"
    );
    assert_eq!(ins.last().map(String::as_str), Some("CMD [\"--help\"]"));
    assert!(ins.iter().any(|i| i == "ENTRYPOINT [\"glm-server\"]"));
    assert!(
        text.contains(glm_crds::DEFAULT_SERVER_IMAGE),
        "the build command names the default image"
    );
}

/// `[features]` of a Cargo.toml as a map (just enough TOML for that table).
fn toml_features(cargo_toml: &str) -> Value {
    let mut map = serde_json::Map::new();
    let mut inside = false;
    for line in cargo_toml.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            inside = t == "[features]";
            continue;
        }
        if inside {
            if let Some((k, v)) = t.split_once('=') {
                map.insert(k.trim().to_owned(), Value::String(v.trim().to_owned()));
            }
        }
    }
    Value::Object(map)
}

#[test]
fn the_build_context_keeps_what_the_binaries_compile_in() {
    let ignore = read(".dockerignore");
    let patterns: Vec<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    // Every workspace member's manifest must be in the context (cargo loads them all).
    for member in ["crds", "operator", "server", "e2e"] {
        assert!(!patterns.contains(&member), "{member} excluded");
    }
    // Files pulled in by include_bytes!/include_str! from non-test sources.
    let mut included = Vec::new();
    for dir in ["crds/src", "operator/src", "server/src", "server/crates"] {
        scan(&workspace_root().join(dir), &mut included);
    }
    assert!(
        !included.is_empty(),
        "the demo model compiles in its tokenizer"
    );
    for file in included {
        let rel = file
            .strip_prefix(workspace_root())
            .unwrap()
            .to_string_lossy()
            .into_owned();
        for p in &patterns {
            let p = p.trim_end_matches('/');
            assert!(
                !(rel == p || rel.starts_with(&format!("{p}/"))),
                "{rel} is compiled in but .dockerignore excludes it ({p})"
            );
        }
    }
}

fn scan(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            if p.file_name()
                .is_some_and(|n| n == "tests" || n == "benches")
            {
                continue;
            }
            scan(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs")
            && p.file_name().is_none_or(|n| n != "tests.rs")
        {
            let text = std::fs::read_to_string(&p).unwrap();
            for m in ["include_bytes!(\"", "include_str!(\""] {
                for part in text.split(m).skip(1) {
                    let Some(rel) = part.split('"').next() else {
                        continue;
                    };
                    let target = p.parent().unwrap().join(rel);
                    if let Ok(canon) = target.canonicalize() {
                        out.push(canon);
                    }
                }
            }
        }
    }
}
