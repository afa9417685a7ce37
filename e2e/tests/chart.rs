//! The Helm chart: its CRD is the generated one, and (with helm) every values file renders
//! into objects that parse as their Kubernetes types, with exactly the RBAC the operator
//! uses, leader election when it runs more than once, and the operator's real flags.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use glm_e2e::manifest;
use glm_e2e::tools::{self, Tool};
use glm_e2e::workspace_root;
use serde_json::Value;

const RELEASE_NS: &str = "glm-system";

fn chart() -> PathBuf {
    workspace_root().join("charts").join("glm-operator")
}

#[test]
fn chart_crd_is_a_copy_of_the_generated_crd() {
    let generated =
        std::fs::read(workspace_root().join("crds").join("glmdeployment.yaml")).unwrap();
    let copy = std::fs::read(chart().join("crds").join("glmdeployment.yaml")).unwrap();
    assert!(
        generated == copy,
        "charts/glm-operator/crds/glmdeployment.yaml differs from crds/glmdeployment.yaml; \
         run: cp crds/glmdeployment.yaml charts/glm-operator/crds/"
    );
    // And it is the CRD the Rust types describe.
    let ours = glm_crds::crd_yaml().unwrap();
    assert_eq!(String::from_utf8(copy).unwrap(), ours);
}

#[test]
fn chart_defaults_match_the_code() {
    let values: Value =
        serde_yaml::from_str(&std::fs::read_to_string(chart().join("values.yaml")).unwrap())
            .unwrap();
    assert_eq!(values["serverImage"], glm_crds::DEFAULT_SERVER_IMAGE);
    let meta: Value =
        serde_yaml::from_str(&std::fs::read_to_string(chart().join("Chart.yaml")).unwrap())
            .unwrap();
    assert_eq!(meta["appVersion"], env!("CARGO_PKG_VERSION"));
    assert_eq!(meta["version"], env!("CARGO_PKG_VERSION"));
    // The operator image is the one image that holds both binaries.
    let default_image = format!(
        "{}:{}",
        values["image"]["repository"].as_str().unwrap(),
        meta["appVersion"].as_str().unwrap()
    );
    assert_eq!(default_image, glm_crds::DEFAULT_SERVER_IMAGE);
    // Every ci/ values file parses as YAML.
    for f in ci_files() {
        serde_yaml::from_str::<Value>(&std::fs::read_to_string(&f).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
    }
}

fn ci_files() -> Vec<PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(chart().join("ci"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    v.sort();
    v
}

fn helm_template(helm: &Path, args: &[&str]) -> Result<Vec<Value>, String> {
    let out = Command::new(helm)
        .args(["template", "glm-operator"])
        .arg(chart())
        .args(["--namespace", RELEASE_NS, "--include-crds"])
        .args(args)
        .output()
        .unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(
        manifest::parse_documents("helm template", &String::from_utf8(out.stdout).unwrap())
            .unwrap(),
    )
}

fn render(helm: &Path, values: Option<&Path>) -> Vec<Value> {
    let mut args = Vec::new();
    if let Some(v) = values {
        args.extend(["--values", v.to_str().unwrap()]);
    }
    helm_template(helm, &args).unwrap()
}

fn find<'a>(docs: &'a [Value], kind: &str, name_suffix: &str) -> Vec<&'a Value> {
    docs.iter()
        .filter(|d| {
            d["kind"] == kind
                && d["metadata"]["name"]
                    .as_str()
                    .unwrap()
                    .ends_with(name_suffix)
        })
        .collect()
}

fn one<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<_> = docs.iter().filter(|d| d["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "expected one {kind}, found {}", found.len());
    found[0]
}

/// (apiGroup, resource, verb) triples granted by a list of rules.
fn grants(rules: &Value) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for r in rules.as_array().unwrap() {
        assert!(r.get("resourceNames").is_none() && r.get("nonResourceURLs").is_none());
        for g in r["apiGroups"].as_array().unwrap() {
            for res in r["resources"].as_array().unwrap() {
                for v in r["verbs"].as_array().unwrap() {
                    let s = |v: &Value| v.as_str().unwrap().to_owned();
                    assert_ne!(s(v), "*", "no wildcard verbs");
                    assert_ne!(s(res), "*", "no wildcard resources");
                    out.insert((s(g), s(res), s(v)));
                }
            }
        }
    }
    out
}

fn expand(spec: &[(&str, &[&str], &[&str])]) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for (g, resources, verbs) in spec {
        for r in *resources {
            for v in *verbs {
                out.insert((g.to_string(), r.to_string(), v.to_string()));
            }
        }
    }
    out
}

/// Exactly what the operator does with the API (docs/contract.md, "Operator RBAC").
fn workload_grants() -> BTreeSet<(String, String, String)> {
    expand(&[
        (
            "serving.glm.dev",
            &["glmdeployments"],
            &["get", "list", "watch"],
        ),
        ("serving.glm.dev", &["glmdeployments/status"], &["patch"]),
        (
            "serving.glm.dev",
            &["glmdeployments/finalizers"],
            &["update"],
        ),
        (
            "apps",
            &["deployments"],
            &["get", "list", "watch", "create", "patch"],
        ),
        // The autoscaler writes replicas through the scale subresource; rollouts list
        // ReplicaSets to find the template to roll back to.
        ("apps", &["deployments/scale"], &["patch"]),
        ("apps", &["replicasets"], &["list"]),
        (
            "",
            &["persistentvolumeclaims"],
            &["get", "list", "watch", "create", "patch"],
        ),
        // get + update: a replace when server-side apply cannot merge a hand edit.
        (
            "",
            &["services"],
            &["get", "list", "watch", "create", "patch", "update"],
        ),
        (
            "batch",
            &["jobs"],
            &["get", "list", "watch", "create", "patch", "delete"],
        ),
        ("", &["pods"], &["list"]),
        ("", &["pods/log"], &["get"]),
        ("events.k8s.io", &["events"], &["create", "patch"]),
    ])
}

fn lease_grants() -> BTreeSet<(String, String, String)> {
    expand(&[(
        "coordination.k8s.io",
        &["leases"],
        &["get", "create", "update"],
    )])
}

fn args_of(docs: &[Value]) -> Vec<String> {
    let d = one(docs, "Deployment");
    d["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn every_values_file_renders_objects_of_their_kubernetes_types() {
    let Some(helm) = tools::for_test(
        Tool::Helm,
        "every_values_file_renders_objects_of_their_kubernetes_types",
    ) else {
        return;
    };
    let mut cases: Vec<Option<PathBuf>> = vec![None];
    cases.extend(ci_files().into_iter().map(Some));
    assert!(cases.len() >= 4, "default + at least 3 ci/ values files");
    for values in cases {
        let docs = render(&helm, values.as_deref());
        let (ok, errors) = manifest::check_all(&docs);
        let errors: Vec<_> = errors
            .iter()
            .map(|e| format!("[{}] {e}", e.kind()))
            .collect();
        assert!(errors.is_empty(), "{values:?}:\n{}", errors.join("\n"));
        let kinds: BTreeSet<_> = ok.iter().map(|id| id.kind.as_str()).collect();
        for k in [
            "CustomResourceDefinition",
            "ServiceAccount",
            "Deployment",
            "Service",
        ] {
            assert!(kinds.contains(k), "{values:?}: no {k} rendered ({kinds:?})");
        }
        for id in ok
            .iter()
            .filter(|id| id.kind != "CustomResourceDefinition" && !id.kind.starts_with("Cluster"))
        {
            assert!(id.namespace.is_some(), "{id} has no namespace");
        }
    }
}

#[test]
fn default_install_is_cluster_wide_single_replica_least_privilege() {
    let Some(helm) = tools::for_test(
        Tool::Helm,
        "default_install_is_cluster_wide_single_replica_least_privilege",
    ) else {
        return;
    };
    let docs = render(&helm, None);
    assert_eq!(
        grants(&one(&docs, "ClusterRole")["rules"]),
        workload_grants()
    );
    let binding = one(&docs, "ClusterRoleBinding");
    assert_eq!(binding["subjects"][0]["kind"], "ServiceAccount");
    assert_eq!(binding["subjects"][0]["namespace"], RELEASE_NS);
    assert_eq!(
        binding["subjects"][0]["name"],
        one(&docs, "ServiceAccount")["metadata"]["name"]
    );
    // One replica: no leader election, so no Lease permissions and no PDB.
    assert!(docs
        .iter()
        .all(|d| d["kind"] != "Role" && d["kind"] != "PodDisruptionBudget"));
    let args = args_of(&docs);
    assert!(
        args.contains(&"--leader-election=false".to_owned()),
        "{args:?}"
    );
    assert!(
        args.contains(&format!(
            "--default-image={}",
            glm_crds::DEFAULT_SERVER_IMAGE
        )),
        "{args:?}"
    );
    assert!(args.contains(&"--log-format=json".to_owned()), "{args:?}");
    assert!(
        !args.iter().any(|a| a.starts_with("--namespace")),
        "all namespaces: {args:?}"
    );

    let d = one(&docs, "Deployment");
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["image"], glm_crds::DEFAULT_SERVER_IMAGE);
    assert_eq!(c["command"][0], "glm-operator");
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(
        d["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"],
        true
    );
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    let env: Vec<_> = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert!(
        env.contains(&"RUST_LOG") && env.contains(&"POD_NAME") && env.contains(&"POD_NAMESPACE")
    );

    // The metrics Service selects the operator pods on the admin port.
    let svc = find(&docs, "Service", "-metrics")[0];
    assert_eq!(
        svc["spec"]["selector"],
        d["spec"]["selector"]["matchLabels"]
    );
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], c["ports"][0]["name"]);
}

#[test]
fn namespaced_ha_install_uses_roles_and_leader_election() {
    let Some(helm) = tools::for_test(
        Tool::Helm,
        "namespaced_ha_install_uses_roles_and_leader_election",
    ) else {
        return;
    };
    let docs = render(
        &helm,
        Some(&chart().join("ci").join("namespaced-ha-values.yaml")),
    );
    assert!(
        docs.iter()
            .all(|d| !d["kind"].as_str().unwrap().starts_with("Cluster")
                || d["kind"] == "CustomResourceDefinition"),
        "watchNamespaces set: no cluster-wide RBAC"
    );
    for ns in ["team-a", "team-b"] {
        let role = docs
            .iter()
            .find(|d| d["kind"] == "Role" && d["metadata"]["namespace"] == ns)
            .unwrap_or_else(|| panic!("no Role in {ns}"));
        assert_eq!(grants(&role["rules"]), workload_grants(), "Role in {ns}");
        assert!(docs
            .iter()
            .any(|d| d["kind"] == "RoleBinding" && d["metadata"]["namespace"] == ns));
    }
    let lease_role = find(&docs, "Role", "-leader-election");
    assert_eq!(lease_role.len(), 1);
    assert_eq!(lease_role[0]["metadata"]["namespace"], RELEASE_NS);
    assert_eq!(grants(&lease_role[0]["rules"]), lease_grants());

    let args = args_of(&docs);
    assert!(
        args.contains(&"--leader-election=true".to_owned()),
        "{args:?}"
    );
    assert!(
        args.contains(&"--namespace=team-a,team-b".to_owned()),
        "{args:?}"
    );
    assert!(
        args.iter().any(|a| a.starts_with("--lease-name=")),
        "{args:?}"
    );
    assert_eq!(one(&docs, "Deployment")["spec"]["replicas"], 2);
    assert_eq!(one(&docs, "PodDisruptionBudget")["spec"]["minAvailable"], 1);
}

#[test]
fn monitoring_values_render_service_monitor_and_network_policy() {
    let Some(helm) = tools::for_test(
        Tool::Helm,
        "monitoring_values_render_service_monitor_and_network_policy",
    ) else {
        return;
    };
    let docs = render(
        &helm,
        Some(&chart().join("ci").join("monitoring-values.yaml")),
    );
    let sm = one(&docs, "ServiceMonitor");
    let svc = find(&docs, "Service", "-metrics")[0];
    // The ServiceMonitor's selector matches the metrics Service's labels, on its port name.
    for (k, v) in sm["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(&svc["metadata"]["labels"][k], v, "label {k}");
    }
    assert_eq!(
        sm["spec"]["endpoints"][0]["port"],
        svc["spec"]["ports"][0]["name"]
    );
    assert_eq!(sm["metadata"]["labels"]["release"], "prometheus");
    let np = one(&docs, "NetworkPolicy");
    assert_eq!(
        np["spec"]["policyTypes"],
        serde_json::json!(["Ingress", "Egress"])
    );
    let image = one(&docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(image.contains("@sha256:"), "digest pins the image: {image}");
}

#[test]
fn impossible_values_are_refused() {
    let Some(helm) = tools::for_test(Tool::Helm, "impossible_values_are_refused") else {
        return;
    };
    let err = helm_template(
        &helm,
        &[
            "--set",
            "replicaCount=2",
            "--set",
            "leaderElection.enabled=false",
        ],
    )
    .unwrap_err();
    assert!(err.contains("leader election"), "{err}");
    let err = helm_template(&helm, &["--set", "logFormat=xml"]).unwrap_err();
    assert!(err.contains("logFormat"), "{err}");
    // Forcing leader election on a single replica is allowed and grants the Lease.
    let docs = helm_template(&helm, &["--set", "leaderElection.enabled=true"]).unwrap();
    assert!(args_of(&docs).contains(&"--leader-election=true".to_owned()));
    assert_eq!(find(&docs, "Role", "-leader-election").len(), 1);
}

/// `.ci/helm-check.sh` renders the chart (every values file) and the kustomize overlays into
/// `$GLM_RENDERED_DIR`; every object there must parse as its Kubernetes type.
#[test]
fn rendered_files_from_helm_check_parse_as_their_types() {
    let Some(dir) = std::env::var_os("GLM_RENDERED_DIR") else {
        println!("SKIP rendered_files_from_helm_check_parse_as_their_types: GLM_RENDERED_DIR not set (bash .ci/helm-check.sh sets it)");
        return;
    };
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no rendered YAML in {dir:?}");
    let mut failures = Vec::new();
    let mut checked = 0;
    for f in &files {
        let docs = manifest::read_documents(f).unwrap();
        assert!(!docs.is_empty(), "{} rendered nothing", f.display());
        let (ok, errors) = manifest::check_all(&docs);
        checked += ok.len();
        failures.extend(
            errors
                .iter()
                .map(|e| format!("{}: [{}] {e}", f.display(), e.kind())),
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    println!(
        "{checked} rendered objects from {} files parse as their types",
        files.len()
    );
}

#[test]
fn install_notes_render_for_every_values_file() {
    let Some(helm) = tools::for_test(Tool::Helm, "install_notes_render_for_every_values_file")
    else {
        return;
    };
    let mut cases: Vec<Option<PathBuf>> = vec![None];
    cases.extend(ci_files().into_iter().map(Some));
    for values in cases {
        // A client-side dry run renders NOTES.txt (helm template does not) without a cluster.
        let mut cmd = Command::new(&helm);
        cmd.args(["install", "glm-operator"])
            .arg(chart())
            .args(["--namespace", RELEASE_NS, "--dry-run=client"])
            .env("KUBECONFIG", "/dev/null");
        if let Some(v) = &values {
            cmd.arg("--values").arg(v);
        }
        let out = cmd.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{values:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let notes = stdout
            .split("NOTES:")
            .nth(1)
            .unwrap_or_else(|| panic!("{values:?}: no NOTES"));
        assert!(notes.contains(glm_crds::DEFAULT_SERVER_IMAGE), "{notes}");
        assert!(
            notes.contains("kubectl apply -f examples/cpu-demo.yaml"),
            "{notes}"
        );
    }
}
