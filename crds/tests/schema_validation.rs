//! The CRD's own schema (structural rules + CEL `x-kubernetes-validations`) refuses each kind of
//! mistake with a message naming the field, and accepts a valid object.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use glm_crds::validate::{validate_glm_deployment, validate_object};
use serde_json::{json, Value};

const CRD_YAML: &str = include_str!("../glmdeployment.yaml");

fn valid() -> Value {
    json!({
        "apiVersion": "serving.glm.dev/v1alpha1",
        "kind": "GlmDeployment",
        "metadata": {"name": "glm45-air", "namespace": "default"},
        "spec": {
            "model": {
                "repo": "zai-org/GLM-4.5-Air",
                "revision": "main",
                "tokenSecretRef": {"name": "hf-token"},
                "include": ["*.safetensors", "*.json"]
            },
            "server": {
                "toolCallParser": "glm45",
                "reasoningParser": "glm45",
                "enableAutoToolChoice": true,
                "tensorParallelSize": 4,
                "dtype": "bfloat16",
                "maxModelLen": 131072,
                "kvCacheFraction": 0.9,
                "apiKeySecretRef": {"name": "glm-api-key", "key": "key"},
                "extraArgs": ["--max-num-seqs=64"],
                "env": [{"name": "RUST_LOG", "value": "info"}]
            },
            "resources": {
                "gpus": 4,
                "cpu": "16",
                "memory": "256Gi",
                "nodeSelector": {"gpu": "h100"},
                "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                "priorityClassName": "inference"
            },
            "cache": {"size": "800Gi", "accessMode": "ReadWriteMany", "storageClassName": "fast"},
            "replicas": 2,
            "autoscaling": {"enabled": true, "minReplicas": 1, "maxReplicas": 4, "targetQueueDepthPerReplica": 8},
            "rollout": {"maxSurge": "25%", "maxUnavailable": 0, "drainSeconds": 60}
        }
    })
}

/// Sets (or with `Value::Null` as a marker of removal via `remove`) a value at a JSON pointer.
fn set(mut obj: Value, pointer: &str, value: Value) -> Value {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    let parent = obj.pointer_mut(parent).unwrap().as_object_mut().unwrap();
    parent.insert(key.to_string(), value);
    obj
}

fn remove(mut obj: Value, pointer: &str) -> Value {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    obj.pointer_mut(parent)
        .unwrap()
        .as_object_mut()
        .unwrap()
        .remove(key);
    obj
}

#[test]
fn valid_objects_pass() {
    assert_eq!(
        validate_object(CRD_YAML, &valid()).unwrap(),
        Vec::<String>::new()
    );
    // The smallest object: defaults fill everything else.
    let minimal = json!({
        "apiVersion": "serving.glm.dev/v1alpha1", "kind": "GlmDeployment",
        "metadata": {"name": "m"},
        "spec": {"model": {"repo": "zai-org/GLM-4.7-Flash"}, "cache": {"existingClaim": "models"}}
    });
    assert_eq!(
        validate_object(CRD_YAML, &minimal).unwrap(),
        Vec::<String>::new()
    );
    // CPU demo: no GPUs, tensor parallel 1.
    let cpu = set(
        set(valid(), "/spec/resources/gpus", json!(0)),
        "/spec/server/tensorParallelSize",
        json!(1),
    );
    assert_eq!(
        validate_object(CRD_YAML, &cpu).unwrap(),
        Vec::<String>::new()
    );
    // tensorParallelSize may be a proper divisor of the GPU count.
    let tp2 = set(valid(), "/spec/server/tensorParallelSize", json!(2));
    assert_eq!(
        validate_object(CRD_YAML, &tp2).unwrap(),
        Vec::<String>::new()
    );
}

#[test]
fn each_mistake_is_refused_naming_the_field() {
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "repo without owner",
            set(valid(), "/spec/model/repo", json!("GLM-4.5-Air")),
            "spec.model.repo",
        ),
        (
            "empty repo",
            set(valid(), "/spec/model/repo", json!("")),
            "spec.model.repo",
        ),
        (
            "missing repo",
            remove(valid(), "/spec/model/repo"),
            "spec.model.repo: required",
        ),
        (
            "missing model",
            remove(valid(), "/spec/model"),
            "spec.model: required",
        ),
        (
            "revision with ..",
            set(valid(), "/spec/model/revision", json!("a..b")),
            "spec.model.revision must not contain",
        ),
        (
            "empty revision",
            set(valid(), "/spec/model/revision", json!("")),
            "spec.model.revision",
        ),
        (
            "hub endpoint not http",
            set(valid(), "/spec/model/hubEndpoint", json!("ftp://mirror")),
            "spec.model.hubEndpoint",
        ),
        (
            "bad secret name",
            set(
                valid(),
                "/spec/model/tokenSecretRef/name",
                json!("Bad_Name"),
            ),
            "spec.model.tokenSecretRef.name",
        ),
        (
            "unknown tool parser",
            set(valid(), "/spec/server/toolCallParser", json!("hermes")),
            "spec.server.toolCallParser",
        ),
        (
            "unknown reasoning parser",
            set(valid(), "/spec/server/reasoningParser", json!("glm47")),
            "spec.server.reasoningParser",
        ),
        (
            "unknown dtype",
            set(valid(), "/spec/server/dtype", json!("int4")),
            "spec.server.dtype",
        ),
        (
            "auto tool choice without parser",
            set(valid(), "/spec/server/toolCallParser", json!("none")),
            "spec.server.enableAutoToolChoice requires spec.server.toolCallParser",
        ),
        (
            "extraArgs overrides port",
            set(valid(), "/spec/server/extraArgs", json!(["--port=9000"])),
            "spec.server.extraArgs must not set",
        ),
        (
            "extraArgs overrides model",
            set(valid(), "/spec/server/extraArgs", json!(["--model", "/x"])),
            "spec.server.extraArgs must not set",
        ),
        (
            "kv fraction above 1",
            set(valid(), "/spec/server/kvCacheFraction", json!(1.5)),
            "spec.server.kvCacheFraction",
        ),
        (
            "max model len 0",
            set(valid(), "/spec/server/maxModelLen", json!(0)),
            "spec.server.maxModelLen",
        ),
        (
            "tp 0",
            set(valid(), "/spec/server/tensorParallelSize", json!(0)),
            "spec.server.tensorParallelSize",
        ),
        (
            "tp does not divide gpus",
            set(valid(), "/spec/server/tensorParallelSize", json!(3)),
            "spec.server.tensorParallelSize must divide spec.resources.gpus",
        ),
        (
            "tp on cpu",
            set(valid(), "/spec/resources/gpus", json!(0)),
            "spec.server.tensorParallelSize must divide",
        ),
        (
            "too many gpus",
            set(valid(), "/spec/resources/gpus", json!(17)),
            "spec.resources.gpus",
        ),
        (
            "bad gpu resource name",
            set(
                valid(),
                "/spec/resources/gpuResourceName",
                json!("nvidia.com/"),
            ),
            "spec.resources.gpuResourceName",
        ),
        (
            "unknown access mode",
            set(valid(), "/spec/cache/accessMode", json!("ReadOnlyMany")),
            "spec.cache.accessMode",
        ),
        (
            "existing claim with size",
            set(valid(), "/spec/cache/existingClaim", json!("models")),
            "spec.cache.existingClaim cannot be combined",
        ),
        (
            "no size, no claim",
            set(valid(), "/spec/cache", json!({})),
            "spec.cache.size is required unless",
        ),
        (
            "missing cache",
            remove(valid(), "/spec/cache"),
            "spec.cache: required",
        ),
        (
            "negative replicas",
            set(valid(), "/spec/replicas", json!(-1)),
            "spec.replicas",
        ),
        (
            "replicas as string",
            set(valid(), "/spec/replicas", json!("2")),
            "spec.replicas",
        ),
        (
            "min above max",
            set(valid(), "/spec/autoscaling/minReplicas", json!(5)),
            "spec.autoscaling.minReplicas must be <=",
        ),
        (
            "max 0",
            set(valid(), "/spec/autoscaling/maxReplicas", json!(0)),
            "spec.autoscaling.maxReplicas",
        ),
        (
            "target queue depth 0",
            set(
                valid(),
                "/spec/autoscaling/targetQueueDepthPerReplica",
                json!(0),
            ),
            "spec.autoscaling.targetQueueDepthPerReplica",
        ),
        (
            "scrape interval 0",
            set(valid(), "/spec/autoscaling/scrapeIntervalSeconds", json!(0)),
            "spec.autoscaling.scrapeIntervalSeconds",
        ),
        (
            "surge and unavailable 0",
            set(valid(), "/spec/rollout/maxSurge", json!(0)),
            "cannot both be 0",
        ),
        (
            "surge and unavailable 0%",
            set(
                set(valid(), "/spec/rollout/maxSurge", json!("0%")),
                "/spec/rollout/maxUnavailable",
                json!("0%"),
            ),
            "cannot both be 0",
        ),
        (
            "negative drain",
            set(valid(), "/spec/rollout/drainSeconds", json!(-5)),
            "spec.rollout.drainSeconds",
        ),
        (
            "short progress deadline",
            set(valid(), "/spec/rollout/progressDeadlineSeconds", json!(10)),
            "spec.rollout.progressDeadlineSeconds",
        ),
        (
            "download backoff too high",
            set(valid(), "/spec/model/download", json!({"backoffLimit": 99})),
            "spec.model.download.backoffLimit",
        ),
        (
            "typo in a field name",
            set(valid(), "/spec/server/toolParser", json!("glm45")),
            "spec.server.toolParser: unknown field",
        ),
        (
            "wrong group",
            set(
                valid(),
                "/apiVersion",
                json!("serving.example.com/v1alpha1"),
            ),
            "apiVersion",
        ),
    ];
    let mut failures = Vec::new();
    for (name, obj, field) in cases {
        let errors = validate_object(CRD_YAML, &obj).unwrap();
        if !errors.iter().any(|e| e.contains(field)) {
            failures.push(format!(
                "{name}: expected an error naming {field:?}, got {errors:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn cel_messages_come_from_the_rules() {
    let obj = set(valid(), "/spec/autoscaling/minReplicas", json!(5));
    let errors = validate_glm_deployment(&obj).unwrap();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("spec.autoscaling.minReplicas must be <= spec.autoscaling.maxReplicas")
    );
}
