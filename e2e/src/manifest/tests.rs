use serde_json::json;

use super::*;

fn deployment() -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "op", "namespace": "glm-system", "labels": {"a": "b"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"a": "b"}},
            "template": {
                "metadata": {"labels": {"a": "b"}},
                "spec": {"containers": [{
                    "name": "operator",
                    "image": "ghcr.io/glm-dev/glm-server:0.1.0",
                    "args": ["--log-level=info"],
                    "ports": [{"name": "metrics", "containerPort": 8080}],
                    "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}},
                    "livenessProbe": {"httpGet": {"path": "/healthz", "port": "metrics"}}
                }]}
            }
        }
    })
}

#[test]
fn a_valid_deployment_passes() {
    let id = check_object(&deployment()).unwrap();
    assert_eq!(id.to_string(), "Deployment glm-system/op");
}

#[test]
fn an_unknown_field_is_named() {
    let mut d = deployment();
    d["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = json!("Always");
    let e = check_object(&d).unwrap_err();
    assert_eq!(e.kind(), "unknown_field");
    assert!(
        e.to_string()
            .contains(".spec.template.spec.containers[0].imagePullPolicyy"),
        "{e}"
    );
}

#[test]
fn a_mistyped_field_is_refused() {
    let mut d = deployment();
    // Helm's classic mistake: a quoted number where the API wants an integer.
    d["spec"]["replicas"] = json!("2");
    assert_eq!(check_object(&d).unwrap_err().kind(), "parse");
}

#[test]
fn nulls_and_empty_containers_are_not_unknown_fields() {
    let mut d = deployment();
    d["spec"]["template"]["spec"]["nodeSelector"] = Value::Null;
    d["spec"]["template"]["spec"]["tolerations"] = json!([]);
    check_object(&d).unwrap();
}

#[test]
fn unknown_kinds_and_non_objects_are_refused() {
    let widget =
        json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}});
    assert_eq!(check_object(&widget).unwrap_err().kind(), "unknown_kind");
    assert_eq!(
        check_object(&json!({"kind": "Service"}))
            .unwrap_err()
            .kind(),
        "missing_type_meta"
    );
}

#[test]
fn service_monitor_fields_are_checked() {
    let sm = json!({
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": "op"},
        "spec": {
            "selector": {"matchLabels": {"a": "b"}},
            "namespaceSelector": {"matchNames": ["glm-system"]},
            "endpoints": [{"port": "metrics", "path": "/metrics", "interval": "30s"}]
        }
    });
    check_object(&sm).unwrap();
    let mut bad = sm.clone();
    bad["spec"]["endpoints"][0]["intervall"] = json!("30s");
    assert_eq!(check_object(&bad).unwrap_err().kind(), "unknown_field");
}

#[test]
fn multi_document_streams_drop_empty_documents() {
    let text = "---\n# only a comment\n---\napiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: a\n---\n";
    let docs = parse_documents("t", text).unwrap();
    assert_eq!(docs.len(), 1);
    let bad = "apiVersion: v1\nkind: [unclosed\n";
    assert_eq!(parse_documents("t", bad).unwrap_err().kind(), "yaml");
}

#[test]
fn compare_reports_changed_values_with_their_path() {
    let a = json!({"x": {"y": [1, 2]}});
    let b = json!({"x": {"y": [1, 3]}});
    assert_eq!(
        compare(&a, &b, ""),
        Err(Difference::Changed {
            path: ".x.y[1]".into(),
            original: "2".into(),
            round_trip: "3".into()
        })
    );
    // Defaults the type adds are fine; integer-valued floats equal integers.
    assert_eq!(
        compare(&json!({"n": 1}), &json!({"n": 1.0, "d": 0}), ""),
        Ok(())
    );
}

#[test]
fn an_unknown_field_with_an_empty_value_is_still_unknown() {
    let mut d = deployment();
    d["spec"]["template"]["spec"]["containerz"] = json!([]);
    let e = check_object(&d).unwrap_err();
    assert_eq!(e.kind(), "unknown_field");
    assert!(
        e.to_string().contains(".spec.template.spec.containerz"),
        "{e}"
    );
}
