//! `GlmDeployment.spec`: what the user asks for. Schema validation (enums, minimums, patterns and
//! CEL `x-kubernetes-validations`) lives on the fields so `kubectl apply` refuses a wrong object
//! with a message that names the field.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::core::v1::{Affinity, EnvVar, Toleration},
    apimachinery::pkg::{api::resource::Quantity, util::intstr::IntOrString},
};
use kube::CustomResource;
use schemars::{JsonSchema, Schema};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::GlmDeploymentStatus;

mod enums;
pub use enums::{AccessMode, Dtype, ReasoningParser, ToolCallParser};

/// `owner/name` on the hub; the same rule the hub applies to repo ids.
pub const REPO_PATTERN: &str = r"^[A-Za-z0-9][-A-Za-z0-9_.]*/[-A-Za-z0-9_.]+$";
/// A branch, tag or commit sha (`refs/pr/1` included).
pub const REVISION_PATTERN: &str = r"^[A-Za-z0-9][-A-Za-z0-9_./]*$";
/// A DNS-1123 subdomain (Secret and PVC names).
pub const DNS_SUBDOMAIN_PATTERN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
/// A key inside a Secret.
pub const SECRET_KEY_PATTERN: &str = r"^[-._a-zA-Z0-9]+$";
/// An extended resource name such as `nvidia.com/gpu` or `amd.com/gpu`.
pub const RESOURCE_NAME_PATTERN: &str =
    r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$";
/// The name clients send as `model`.
pub const SERVED_MODEL_NAME_PATTERN: &str = r"^[A-Za-z0-9][-A-Za-z0-9_./:]*$";
/// A hub mirror endpoint.
pub const HUB_ENDPOINT_PATTERN: &str = r"^https?://[^\s]+$";

/// A Kubernetes quantity that is not negative (`500m`, `16Gi`, `1.5`, `2e3`), the grammar of
/// apimachinery's `resource.Quantity`. CEL's `quantity()` is newer than Kubernetes 1.28, so a
/// pattern it is: `kubectl apply` refuses `lots`, `1 gig` or `-5Gi` naming the field, instead
/// of the API server refusing the child the operator renders from it.
pub const QUANTITY_PATTERN: &str =
    r"^\+?([0-9]+(\.[0-9]*)?|\.[0-9]+)(([KMGTPE]i)|[numkMGTPE]|[eE][-+]?[0-9]+)?$";

/// Schema of a quantity field: the pattern for the string form, a minimum for the integer form.
fn quantity_schema(s: &mut Schema) {
    s.insert("pattern".into(), json!(QUANTITY_PATTERN));
    s.insert("minimum".into(), json!(0));
}

/// Appends CEL rules (`x-kubernetes-validations`) to a schema; `field_path` is relative to it.
fn add_rules(schema: &mut Schema, rules: &[(&str, &str, Option<&str>)]) {
    let list: Vec<serde_json::Value> = rules
        .iter()
        .map(|(rule, message, field_path)| {
            let mut v = json!({"rule": rule, "message": message});
            if let (Some(fp), Some(obj)) = (field_path, v.as_object_mut()) {
                obj.insert("fieldPath".into(), json!(fp));
            }
            v
        })
        .collect();
    schema.insert("x-kubernetes-validations".into(), json!(list));
}

fn spec_rules(s: &mut Schema) {
    add_rules(
        s,
        &[(
            "!has(self.server) || !has(self.server.tensorParallelSize) || \
             self.server.tensorParallelSize == 1 || \
             (has(self.resources) && has(self.resources.gpus) && self.resources.gpus > 0 && \
             self.resources.gpus % self.server.tensorParallelSize == 0)",
            "spec.server.tensorParallelSize must divide spec.resources.gpus (GPUs per pod)",
            Some(".server.tensorParallelSize"),
        )],
    );
}

/// A GLM model served by a fleet of `glm-server` pods, with its model cache, download Job,
/// autoscaling and rollout policy.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "serving.glm.dev",
    version = "v1alpha1",
    kind = "GlmDeployment",
    plural = "glmdeployments",
    shortname = "glmd",
    namespaced,
    status = "GlmDeploymentStatus",
    derive = "PartialEq",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Replicas","type":"integer","jsonPath":".status.readyReplicas"}"#,
    printcolumn = r#"{"name":"Model","type":"string","jsonPath":".spec.model.repo"}"#,
    printcolumn = r#"{"name":"Revision","type":"string","jsonPath":".status.resolvedRevision"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = spec_rules)]
pub struct GlmDeploymentSpec {
    /// Which model to serve and how to fetch it.
    pub model: ModelSpec,
    /// The glm-server container.
    #[serde(default)]
    pub server: ServerSpec,
    /// Per-pod compute and scheduling.
    #[serde(default)]
    pub resources: ResourcesSpec,
    /// The model cache volume.
    pub cache: CacheSpec,
    /// Server pods when autoscaling is off (the scale subresource writes this).
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0))]
    pub replicas: i32,
    /// Built-in autoscaling on the servers' queue depth.
    #[serde(default)]
    pub autoscaling: AutoscalingSpec,
    /// Rolling update and drain policy.
    #[serde(default)]
    pub rollout: RolloutSpec,
}

fn default_replicas() -> i32 {
    1
}

fn model_rules(s: &mut Schema) {
    add_rules(
        s,
        &[(
            "!has(self.revision) || !self.revision.contains('..')",
            "spec.model.revision must not contain '..'",
            Some(".revision"),
        )],
    );
}

/// The model on the hub.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = model_rules)]
pub struct ModelSpec {
    /// `owner/name` on the hub, e.g. `zai-org/GLM-4.5-Air`. The reserved `glm-dev/demo`
    /// serves the built-in demo model (no cache, no download).
    #[schemars(regex(pattern = REPO_PATTERN), length(min = 3, max = 200))]
    pub repo: String,
    /// Branch, tag or commit sha; resolved to a commit sha before anything is served.
    #[serde(default = "default_revision")]
    #[schemars(regex(pattern = REVISION_PATTERN), length(min = 1, max = 255))]
    pub revision: String,
    /// Name clients pass as `model`; defaults to the repo name without the owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = SERVED_MODEL_NAME_PATTERN), length(min = 1, max = 128))]
    pub served_model_name: Option<String>,
    /// Hub mirror (like `HF_ENDPOINT`), e.g. `https://hf-mirror.example.com`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = HUB_ENDPOINT_PATTERN))]
    pub hub_endpoint: Option<String>,
    /// Secret holding the hub token (mounted as a file into the download Job).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_secret_ref: Option<SecretKeyRef>,
    /// Only files matching these globs are downloaded (all files when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 512)))]
    pub include: Vec<String>,
    /// Download Job policy.
    #[serde(default)]
    pub download: DownloadSpec,
}

impl ModelSpec {
    /// Whether this is the built-in demo model ([`crate::DEMO_REPO`]).
    pub fn is_builtin_demo(&self) -> bool {
        self.repo == crate::DEMO_REPO
    }
}

fn default_revision() -> String {
    "main".into()
}

/// A key in a Secret of the GlmDeployment's namespace.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Secret name.
    #[schemars(regex(pattern = DNS_SUBDOMAIN_PATTERN), length(min = 1, max = 253))]
    pub name: String,
    /// Key inside the Secret.
    #[serde(default = "default_secret_key")]
    #[schemars(regex(pattern = SECRET_KEY_PATTERN), length(min = 1, max = 253))]
    pub key: String,
}

fn default_secret_key() -> String {
    "token".into()
}

/// Download Job policy.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DownloadSpec {
    /// Pod retries before the Job is marked failed.
    #[serde(default = "default_backoff_limit")]
    #[schemars(range(min = 0, max = 20))]
    pub backoff_limit: i32,
    /// Wall-clock limit of the whole download Job, in seconds.
    #[serde(default = "default_active_deadline")]
    #[schemars(range(min = 60))]
    pub active_deadline_seconds: i64,
}

impl Default for DownloadSpec {
    fn default() -> Self {
        Self {
            backoff_limit: default_backoff_limit(),
            active_deadline_seconds: default_active_deadline(),
        }
    }
}

fn default_backoff_limit() -> i32 {
    3
}

fn default_active_deadline() -> i64 {
    // 6 h: ~700 GB at ~50 MB/s with room for retries.
    21_600
}

fn server_rules(s: &mut Schema) {
    add_rules(
        s,
        &[
            (
                "!has(self.enableAutoToolChoice) || !self.enableAutoToolChoice || \
                 (has(self.toolCallParser) && self.toolCallParser != 'none')",
                "spec.server.enableAutoToolChoice requires spec.server.toolCallParser",
                Some(".enableAutoToolChoice"),
            ),
            (
                "!has(self.extraArgs) || self.extraArgs.all(a, !(a in ['--model', '--host', '--port'] || \
                 a.startsWith('--model=') || a.startsWith('--host=') || a.startsWith('--port=')))",
                "spec.server.extraArgs must not set --model, --host or --port (the operator sets them)",
                Some(".extraArgs"),
            ),
        ],
    );
}

/// The glm-server container.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = server_rules)]
pub struct ServerSpec {
    /// Server image; the operator's default image when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub image: Option<String>,
    /// Tool-call parser.
    #[serde(default)]
    pub tool_call_parser: ToolCallParser,
    /// Reasoning parser.
    #[serde(default)]
    pub reasoning_parser: ReasoningParser,
    /// Let the model decide to call tools when `tool_choice` is `auto`.
    #[serde(default)]
    pub enable_auto_tool_choice: bool,
    /// Context length limit (prompt + output tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_model_len: Option<i64>,
    /// GPUs one model replica is sharded over; must divide `resources.gpus`.
    #[serde(default = "default_tp")]
    #[schemars(range(min = 1, max = 16))]
    pub tensor_parallel_size: i32,
    /// Weight/activation dtype.
    #[serde(default)]
    pub dtype: Dtype,
    /// Fraction of free accelerator memory given to the KV cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.05, max = 1.0))]
    pub kv_cache_fraction: Option<f64>,
    /// Secret whose key becomes `GLM_API_KEY` (no key = open server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_secret_ref: Option<SecretKeyRef>,
    /// Extra arguments appended to `glm-server serve`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 1024)))]
    pub extra_args: Vec<String>,
    /// Extra environment variables for the server container.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
}

impl Default for ServerSpec {
    fn default() -> Self {
        Self {
            image: None,
            tool_call_parser: ToolCallParser::default(),
            reasoning_parser: ReasoningParser::default(),
            enable_auto_tool_choice: false,
            max_model_len: None,
            tensor_parallel_size: default_tp(),
            dtype: Dtype::default(),
            kv_cache_fraction: None,
            api_key_secret_ref: None,
            extra_args: Vec::new(),
            env: Vec::new(),
        }
    }
}

fn default_tp() -> i32 {
    1
}

/// Per-pod compute and scheduling.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourcesSpec {
    /// GPUs per pod (0 runs on CPU, e.g. the demo model).
    #[serde(default = "default_gpus")]
    #[schemars(range(min = 0, max = 16))]
    pub gpus: i32,
    /// Extended resource name of a GPU.
    #[serde(default = "default_gpu_resource")]
    #[schemars(regex(pattern = RESOURCE_NAME_PATTERN), length(min = 1, max = 253))]
    pub gpu_resource_name: String,
    /// CPU request (and limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = quantity_schema)]
    pub cpu: Option<Quantity>,
    /// Memory request (and limit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = quantity_schema)]
    pub memory: Option<Quantity>,
    /// Node selector for server pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Tolerations for server and download pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Affinity for server pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// PriorityClass for server pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub priority_class_name: Option<String>,
}

impl Default for ResourcesSpec {
    fn default() -> Self {
        Self {
            gpus: default_gpus(),
            gpu_resource_name: default_gpu_resource(),
            cpu: None,
            memory: None,
            node_selector: BTreeMap::new(),
            tolerations: Vec::new(),
            affinity: None,
            priority_class_name: None,
        }
    }
}

fn default_gpus() -> i32 {
    1
}

fn default_gpu_resource() -> String {
    crate::DEFAULT_GPU_RESOURCE.into()
}

fn cache_rules(s: &mut Schema) {
    add_rules(
        s,
        &[
            (
                "!has(self.existingClaim) || (!has(self.storageClassName) && !has(self.size))",
                "spec.cache.existingClaim cannot be combined with spec.cache.storageClassName or spec.cache.size",
                Some(".existingClaim"),
            ),
            (
                "has(self.existingClaim) || has(self.size)",
                "spec.cache.size is required unless spec.cache.existingClaim is set",
                Some(".size"),
            ),
        ],
    );
}

/// The model cache volume.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = cache_rules)]
pub struct CacheSpec {
    /// StorageClass of the PVC the operator creates (cluster default when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub storage_class_name: Option<String>,
    /// Size of the PVC the operator creates, e.g. `800Gi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = quantity_schema)]
    pub size: Option<Quantity>,
    /// Access mode of the PVC; ReadWriteMany lets replicas on several nodes share it.
    #[serde(default)]
    pub access_mode: AccessMode,
    /// Use this PVC instead of creating one; it is never created, owned or deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DNS_SUBDOMAIN_PATTERN), length(min = 1, max = 253))]
    pub existing_claim: Option<String>,
    /// Keep the PVC the operator created when the GlmDeployment is deleted.
    #[serde(default)]
    pub retain_on_delete: bool,
}

fn autoscaling_rules(s: &mut Schema) {
    add_rules(
        s,
        &[(
            "!has(self.minReplicas) || !has(self.maxReplicas) || self.minReplicas <= self.maxReplicas",
            "spec.autoscaling.minReplicas must be <= spec.autoscaling.maxReplicas",
            Some(".minReplicas"),
        )],
    );
}

/// Built-in autoscaling on queue depth.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = autoscaling_rules)]
pub struct AutoscalingSpec {
    /// Off: `spec.replicas` (or HPA/KEDA through the scale subresource) decides.
    #[serde(default)]
    pub enabled: bool,
    /// Lower bound.
    #[serde(default = "default_min_replicas")]
    #[schemars(range(min = 0))]
    pub min_replicas: i32,
    /// Upper bound.
    #[serde(default = "default_max_replicas")]
    #[schemars(range(min = 1))]
    pub max_replicas: i32,
    /// Waiting + running requests one replica should carry.
    #[serde(default = "default_target_queue_depth")]
    #[schemars(range(min = 1))]
    pub target_queue_depth_per_replica: i32,
    /// How often each ready pod's /metrics is read.
    #[serde(default = "default_scrape_interval")]
    #[schemars(range(min = 1, max = 300))]
    pub scrape_interval_seconds: i32,
    /// A higher recommendation must hold this long before scaling up (0 = at once).
    #[serde(default)]
    #[schemars(range(min = 0, max = 3600))]
    pub scale_up_stabilization_seconds: i32,
    /// Every recommendation over this window must be lower before scaling down.
    #[serde(default = "default_scale_down_window")]
    #[schemars(range(min = 0, max = 3600))]
    pub scale_down_stabilization_seconds: i32,
}

impl Default for AutoscalingSpec {
    fn default() -> Self {
        Self {
            enabled: false,
            min_replicas: default_min_replicas(),
            max_replicas: default_max_replicas(),
            target_queue_depth_per_replica: default_target_queue_depth(),
            scrape_interval_seconds: default_scrape_interval(),
            scale_up_stabilization_seconds: 0,
            scale_down_stabilization_seconds: default_scale_down_window(),
        }
    }
}

fn default_min_replicas() -> i32 {
    1
}
fn default_max_replicas() -> i32 {
    4
}
fn default_target_queue_depth() -> i32 {
    8
}
fn default_scrape_interval() -> i32 {
    5
}
fn default_scale_down_window() -> i32 {
    300
}

fn rollout_rules(s: &mut Schema) {
    add_rules(
        s,
        &[(
            "!(has(self.maxSurge) && has(self.maxUnavailable) && \
             string(self.maxSurge) in ['0', '0%'] && string(self.maxUnavailable) in ['0', '0%'])",
            "spec.rollout.maxSurge and spec.rollout.maxUnavailable cannot both be 0",
            Some(".maxSurge"),
        )],
    );
}

/// Rolling update and drain policy.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = rollout_rules)]
pub struct RolloutSpec {
    /// Extra pods during a rollout (count or percent).
    #[serde(default = "default_max_surge")]
    pub max_surge: IntOrString,
    /// Pods that may be unavailable during a rollout (count or percent).
    #[serde(default = "default_max_unavailable")]
    pub max_unavailable: IntOrString,
    /// Seconds a terminating server finishes in-flight requests (`--drain-timeout`).
    #[serde(default = "default_drain_seconds")]
    #[schemars(range(min = 0, max = 3600))]
    pub drain_seconds: i32,
    /// New pods not ready within this many seconds mark the rollout failed.
    #[serde(default = "default_progress_deadline")]
    #[schemars(range(min = 60))]
    pub progress_deadline_seconds: i32,
}

impl Default for RolloutSpec {
    fn default() -> Self {
        Self {
            max_surge: default_max_surge(),
            max_unavailable: default_max_unavailable(),
            drain_seconds: default_drain_seconds(),
            progress_deadline_seconds: default_progress_deadline(),
        }
    }
}

fn default_max_surge() -> IntOrString {
    IntOrString::Int(1)
}
fn default_max_unavailable() -> IntOrString {
    // Zero-drop by default: never take a serving pod away before its replacement is ready.
    IntOrString::Int(0)
}
fn default_drain_seconds() -> i32 {
    30
}
fn default_progress_deadline() -> i32 {
    // Large models take tens of minutes to load from a network volume.
    3600
}
