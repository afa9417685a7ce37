//! Every example in examples/ is a valid object: GlmDeployments pass the committed CRD's
//! schema and CEL rules, the kustomize overlays build into valid objects (cross-checked with
//! `kubectl kustomize` when kubectl is around), and mistakes are refused with the field named.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use glm_e2e::manifest::{self, ObjectId};
use glm_e2e::tools::{self, Tool};
use glm_e2e::{kustomize, workspace_root};
use serde_json::Value;

fn examples_dir() -> PathBuf {
    workspace_root().join("examples")
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            yaml_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
            out.push(p);
        }
    }
}

/// Files kustomizations use as patches: partial objects, checked through the overlay build.
fn patch_files() -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    for dir in kustomize::find_kustomizations(&examples_dir()) {
        let k: Value =
            serde_yaml::from_str(&std::fs::read_to_string(dir.join("kustomization.yaml")).unwrap())
                .unwrap();
        for p in k["patches"].as_array().into_iter().flatten() {
            if let Some(path) = p["path"].as_str() {
                out.insert(dir.join(path));
            }
        }
    }
    out
}

/// Every standalone object in examples/, with the file it came from.
fn standalone_objects() -> Vec<(PathBuf, Value)> {
    let mut files = Vec::new();
    yaml_files(&examples_dir(), &mut files);
    files.sort();
    let patches = patch_files();
    files
        .into_iter()
        .filter(|f| !f.ends_with("kustomization.yaml") && !patches.contains(f))
        .flat_map(|f| {
            manifest::read_documents(&f)
                .unwrap()
                .into_iter()
                .map(move |d| (f.clone(), d))
        })
        .collect()
}

fn example(name: &str) -> Value {
    let docs = manifest::read_documents(&examples_dir().join(name)).unwrap();
    assert_eq!(docs.len(), 1, "{name} holds one object");
    docs.into_iter().next().unwrap()
}

#[test]
fn every_example_is_valid_against_the_crd_and_its_cel_rules() {
    let objects = standalone_objects();
    let mut glmds = BTreeSet::new();
    let mut failures = Vec::new();
    for (file, doc) in &objects {
        match manifest::check_object(doc) {
            Ok(id) if id.kind == "GlmDeployment" => {
                glmds.insert(file.file_name().unwrap().to_string_lossy().into_owned());
            }
            Ok(_) => {}
            Err(e) => failures.push(format!("{}: [{}] {e}", file.display(), e.kind())),
        }
    }
    assert!(
        failures.is_empty(),
        "invalid examples:\n{}",
        failures.join("\n")
    );
    for expected in [
        "glm45.yaml",
        "glm45-air.yaml",
        "glm47-flash.yaml",
        "cpu-demo.yaml",
        "autoscaling.yaml",
        "upgrade.yaml",
        "glm47-flash.yaml",
    ] {
        assert!(
            glmds.contains(expected),
            "{expected} missing; found {glmds:?}"
        );
    }
    // The Argo CD Applications are checked too.
    assert!(objects.iter().any(|(_, d)| d["kind"] == "Application"
        && d["spec"]["source"]["path"] == "examples/gitops/overlays/prod"));
}

#[test]
fn examples_say_what_the_mission_says() {
    let g = example("glm45.yaml");
    assert_eq!(g["spec"]["model"]["repo"], "zai-org/GLM-4.5-FP8");
    assert_eq!(g["spec"]["resources"]["gpus"], 8);
    assert_eq!(g["spec"]["server"]["tensorParallelSize"], 8);
    assert_eq!(g["spec"]["server"]["toolCallParser"], "glm45");
    assert_eq!(g["spec"]["server"]["reasoningParser"], "glm45");
    assert_eq!(g["spec"]["server"]["enableAutoToolChoice"], true);

    let f = example("glm47-flash.yaml");
    assert_eq!(f["spec"]["model"]["repo"], "zai-org/GLM-4.7-Flash");
    assert_eq!(f["spec"]["resources"]["gpus"], 1);
    assert_eq!(f["spec"]["server"]["toolCallParser"], "glm47");
    assert_eq!(f["spec"]["server"]["reasoningParser"], "glm45");
    assert_eq!(f["spec"]["server"]["enableAutoToolChoice"], true);

    let demo = example("cpu-demo.yaml");
    assert_eq!(
        demo["spec"]["resources"]["gpus"], 0,
        "the demo needs no GPU"
    );

    let a = example("autoscaling.yaml");
    assert_eq!(a["spec"]["autoscaling"]["enabled"], true);

    // upgrade.yaml is glm45-air.yaml with another revision: same object, same model.
    let air = example("glm45-air.yaml");
    let up = example("upgrade.yaml");
    assert_eq!(air["metadata"]["name"], up["metadata"]["name"]);
    assert_eq!(air["spec"]["model"]["repo"], up["spec"]["model"]["repo"]);
    assert_ne!(
        air["spec"]["model"]["revision"],
        up["spec"]["model"]["revision"]
    );
    let mut same = up.clone();
    same["spec"]["model"]["revision"] = air["spec"]["model"]["revision"].clone();
    same["spec"]["cache"] = air["spec"]["cache"].clone();
    same["spec"]["rollout"] = air["spec"]["rollout"].clone();
    assert_eq!(
        same, air,
        "upgrade.yaml changes only the revision (and rollout/cache policy)"
    );
}

fn sorted_by_id(objects: Vec<Value>) -> Vec<(ObjectId, Value)> {
    let mut v: Vec<_> = objects
        .into_iter()
        .map(|o| (ObjectId::of(&o).unwrap(), o))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[test]
fn kustomize_overlays_build_valid_objects() {
    let overlays = examples_dir().join("gitops").join("overlays");
    let mut built = 0;
    for (env, namespace) in [("dev", "glm-dev"), ("prod", "glm-prod")] {
        let objects = kustomize::build(&overlays.join(env)).unwrap();
        assert!(!objects.is_empty());
        for o in &objects {
            manifest::check_object(o).unwrap_or_else(|e| panic!("overlay {env}: {e}"));
            assert_eq!(o["metadata"]["namespace"], namespace);
            assert_eq!(o["metadata"]["labels"]["environment"], env);
            built += 1;
        }
    }
    assert!(built >= 2);
    let prod = kustomize::build(&overlays.join("prod")).unwrap();
    assert_eq!(prod[0]["spec"]["autoscaling"]["enabled"], true);
    assert!(
        prod[0]["spec"].get("replicas").is_none(),
        "prod leaves replicas to the autoscaler"
    );
}

#[test]
fn kustomize_subset_matches_kubectl_kustomize() {
    let Some(kubectl) =
        tools::for_test(Tool::Kubectl, "kustomize_subset_matches_kubectl_kustomize")
    else {
        return;
    };
    for dir in kustomize::find_kustomizations(&examples_dir()) {
        let out = Command::new(&kubectl)
            .arg("kustomize")
            .arg(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "kubectl kustomize {}: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let theirs =
            manifest::parse_documents("kubectl", &String::from_utf8(out.stdout).unwrap()).unwrap();
        let ours = kustomize::build(&dir).unwrap();
        assert_eq!(
            sorted_by_id(ours),
            sorted_by_id(theirs),
            "our kustomize subset and kubectl disagree on {}",
            dir.display()
        );
    }
}

#[test]
fn mistakes_in_an_example_are_refused_naming_the_field() {
    for m in glm_e2e::mistakes::MISTAKES {
        let mut g = example("glm45.yaml");
        (m.make)(&mut g);
        let err =
            manifest::check_object(&g).expect_err(&format!("a mistake ({}) was accepted", m.what));
        assert!(
            err.to_string().contains(m.field),
            "{}: error should mention {:?}: {err}",
            m.what,
            m.field
        );
    }
}

#[test]
fn readme_describes_every_example() {
    let readme = std::fs::read_to_string(examples_dir().join("README.md")).unwrap();
    let mut files = Vec::new();
    yaml_files(&examples_dir(), &mut files);
    for f in files {
        let rel = f
            .strip_prefix(examples_dir())
            .unwrap()
            .to_string_lossy()
            .into_owned();
        // Files inside gitops/ are described by their folder.
        let key = if rel.starts_with("gitops/") {
            rel.rsplit_once('/').map(|(d, _)| d.to_owned()).unwrap()
        } else {
            rel
        };
        assert!(
            readme.contains(&key),
            "examples/README.md does not mention {key}"
        );
    }
}
