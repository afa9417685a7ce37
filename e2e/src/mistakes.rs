//! Mistakes a user makes in a GlmDeployment, each with the field the refusal must name. The
//! offline schema check (`tests/examples.rs`) and the real API server (`tests/cluster.rs`)
//! must both refuse every one of them.

use serde_json::{json, Value};

/// One mistake: what it is, how to make it in a valid document, and a piece of the error
/// message that names the field.
pub struct Mistake {
    pub what: &'static str,
    pub make: fn(&mut Value),
    pub field: &'static str,
}

/// Every mistake, applied to a valid GlmDeployment (the examples use `glm45.yaml`).
pub const MISTAKES: &[Mistake] = &[
    Mistake {
        what: "CEL: tensor parallelism must divide the GPUs",
        make: |g| g["spec"]["server"]["tensorParallelSize"] = json!(3),
        field: "tensorParallelSize",
    },
    Mistake {
        what: "CEL: min <= max replicas",
        make: |g| {
            g["spec"]["autoscaling"] = json!({"enabled": true, "minReplicas": 5, "maxReplicas": 2})
        },
        field: "minReplicas",
    },
    Mistake {
        what: "CEL: auto tool choice needs a tool parser",
        make: |g| g["spec"]["server"]["toolCallParser"] = json!("none"),
        field: "enableAutoToolChoice",
    },
    Mistake {
        what: "CEL: the operator owns --port",
        make: |g| g["spec"]["server"]["extraArgs"] = json!(["--port=9000"]),
        field: "extraArgs",
    },
    Mistake {
        what: "CEL: an existing claim and a size contradict each other",
        make: |g| g["spec"]["cache"]["existingClaim"] = json!("models"),
        field: "existingClaim",
    },
    Mistake {
        what: "enum: unknown parser name",
        make: |g| g["spec"]["server"]["reasoningParser"] = json!("glm46"),
        field: "reasoningParser",
    },
    Mistake {
        what: "pattern: repo must be owner/name",
        make: |g| g["spec"]["model"]["repo"] = json!("GLM-4.5-FP8"),
        field: "repo",
    },
    Mistake {
        what: "minimum: replicas",
        make: |g| g["spec"]["replicas"] = json!(-1),
        field: "replicas",
    },
    Mistake {
        what: "a typo is an unknown field, not silently ignored",
        make: |g| g["spec"]["server"]["toolParser"] = json!("glm45"),
        field: "toolParser",
    },
    Mistake {
        what: "type: gpus is a number",
        make: |g| g["spec"]["resources"]["gpus"] = json!("eight"),
        field: "gpus",
    },
    Mistake {
        what: "quantity: cpu is not a word",
        make: |g| g["spec"]["resources"]["cpu"] = json!("lots"),
        field: "resources.cpu",
    },
    Mistake {
        what: "quantity: no space before the unit",
        make: |g| g["spec"]["resources"]["memory"] = json!("1 gig"),
        field: "resources.memory",
    },
    Mistake {
        what: "quantity: a cache cannot be negative",
        make: |g| g["spec"]["cache"]["size"] = json!("-5Gi"),
        field: "cache.size",
    },
    Mistake {
        what: "quantity: a negative integer",
        make: |g| g["spec"]["resources"]["memory"] = json!(-1),
        field: "resources.memory",
    },
];
