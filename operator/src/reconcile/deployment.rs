//! The server Deployment: `glm-server serve` per docs/contract.md on the verified model
//! directory, with probes sized for big models and a drain-aware termination.

use std::collections::BTreeMap;

use glm_crds::{labels, GlmDeployment, MODELS_MOUNT, SERVER_PORT};
use k8s_openapi::{
    api::{
        apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment},
        core::v1::{
            Affinity, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource,
            ExecAction, HTTPGetAction, Lifecycle, LifecycleHandler,
            PersistentVolumeClaimVolumeSource, PodAffinity, PodAffinityTerm, PodSpec,
            PodTemplateSpec, Probe, ResourceRequirements, SecretKeySelector, Volume, VolumeMount,
        },
    },
    apimachinery::pkg::{
        api::resource::Quantity,
        apis::meta::v1::{LabelSelector, ObjectMeta},
        util::intstr::IntOrString,
    },
};
use kube::ResourceExt;

use super::{
    meta::{child_meta, selector_labels, served_model_name},
    pvc::cache_claim_name,
};
use crate::Result;

/// Container name of the server.
pub const CONTAINER: &str = "server";
/// Seconds between endpoint removal and the start of the drain (contract: preStop sleep 5).
pub const PRE_STOP_SLEEP_SECONDS: i64 = 5;
/// Startup budget: 10 s x 360 = 1 h to load hundreds of GB of weights before liveness applies.
const STARTUP_PERIOD_SECONDS: i32 = 10;
const STARTUP_FAILURE_THRESHOLD: i32 = 360;

/// The model the Deployment serves: a verified directory and its commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServedModel {
    pub commit: String,
    pub path: String,
}

/// The model a verified commit is served from, per docs/contract.md: the built-in demo is
/// `demo`, anything else `/models/OWNER--NAME/<commit>`.
pub fn served_model(glmd: &GlmDeployment, commit: &str) -> ServedModel {
    let path = if glmd.spec.model.is_builtin_demo() {
        glm_crds::DEMO_MODEL.to_string()
    } else {
        format!("{}/{commit}", glm_crds::model_dir(&glmd.spec.model.repo))
    };
    ServedModel {
        commit: commit.to_string(),
        path,
    }
}

/// Inputs besides the GlmDeployment.
#[derive(Clone, Debug)]
pub struct DeploymentParams<'a> {
    /// Server image (spec.server.image or the operator default).
    pub image: &'a str,
    /// Verified model directory; only known after the download Job succeeded.
    pub model: &'a ServedModel,
    /// Replicas to write; `None` leaves the field to its owner (the autoscaler's scale
    /// writes, or an HPA/KEDA): see `crate::autoscale::replicas_for_apply`.
    pub replicas: Option<i32>,
}

/// Replicas the Deployment should have when nothing better is known. Autoscaling off:
/// `spec.replicas` (which HPA/KEDA may drive through the scale subresource). On: the last
/// decision recorded in `status.autoscaling.desiredReplicas`, else the current count, clamped
/// to min/max (used for the first apply, before the autoscaler's loop has decided).
pub fn desired_replicas(glmd: &GlmDeployment) -> i32 {
    let a = &glmd.spec.autoscaling;
    if !a.enabled {
        return glmd.spec.replicas.max(0);
    }
    let status = glmd.status.as_ref();
    let decided = status
        .and_then(|s| s.autoscaling.as_ref())
        .and_then(|a| a.desired_replicas);
    let current = status.map(|s| s.replicas).filter(|r| *r > 0);
    let min = a.min_replicas.max(0);
    decided
        .or(current)
        .unwrap_or(min)
        .clamp(min, a.max_replicas.max(min))
}

/// `glm-server serve ...` arguments.
pub fn serve_args(glmd: &GlmDeployment, model: &ServedModel) -> Vec<String> {
    let s = &glmd.spec.server;
    let mut args = vec![
        "serve".into(),
        "--model".into(),
        model.path.clone(),
        "--served-model-name".into(),
        served_model_name(glmd),
        "--host".into(),
        "0.0.0.0".into(),
        "--port".into(),
        SERVER_PORT.to_string(),
    ];
    if let Some(n) = s.max_model_len {
        args.extend(["--max-model-len".into(), n.to_string()]);
    }
    if s.tensor_parallel_size > 1 {
        args.extend([
            "--tensor-parallel-size".into(),
            s.tensor_parallel_size.to_string(),
        ]);
    }
    if s.dtype != glm_crds::Dtype::Auto {
        args.extend(["--dtype".into(), s.dtype.as_str().into()]);
    }
    if glmd.spec.resources.gpus > 0 {
        args.extend(["--device".into(), "cuda".into()]);
    }
    if let Some(f) = s.kv_cache_fraction {
        args.extend(["--kv-cache-memory".into(), fraction_arg(f)]);
    }
    if let Some(p) = s.tool_call_parser.flag() {
        args.extend(["--tool-call-parser".into(), p.into()]);
    }
    if let Some(p) = s.reasoning_parser.flag() {
        args.extend(["--reasoning-parser".into(), p.into()]);
    }
    if s.enable_auto_tool_choice {
        args.push("--enable-auto-tool-choice".into());
    }
    args.extend([
        "--drain-timeout".into(),
        glmd.spec.rollout.drain_seconds.to_string(),
    ]);
    args.extend(s.extra_args.iter().cloned());
    args
}

/// A fraction as the server reads it: always with a decimal point, because `--kv-cache-memory`
/// takes bytes too and `1` would be one byte (`1.0` is all of the memory left).
pub fn fraction_arg(f: f64) -> String {
    let s = f.to_string();
    if s.contains(['.', 'e', 'E']) || !f.is_finite() {
        s
    } else {
        format!("{s}.0")
    }
}

fn http_probe(path: &str, period: i32, failure_threshold: i32, timeout: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("http".into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failure_threshold),
        timeout_seconds: Some(timeout),
        ..Probe::default()
    }
}

fn container_resources(glmd: &GlmDeployment) -> ResourceRequirements {
    let r = &glmd.spec.resources;
    let mut requests = BTreeMap::new();
    let mut limits = BTreeMap::new();
    if r.gpus > 0 {
        // Extended resources must have requests == limits.
        requests.insert(r.gpu_resource_name.clone(), Quantity(r.gpus.to_string()));
        limits.insert(r.gpu_resource_name.clone(), Quantity(r.gpus.to_string()));
    }
    if let Some(cpu) = &r.cpu {
        requests.insert("cpu".into(), cpu.clone());
    }
    if let Some(mem) = &r.memory {
        requests.insert("memory".into(), mem.clone());
        limits.insert("memory".into(), mem.clone());
    }
    ResourceRequirements {
        requests: (!requests.is_empty()).then_some(requests),
        limits: (!limits.is_empty()).then_some(limits),
        ..ResourceRequirements::default()
    }
}

fn env(glmd: &GlmDeployment) -> Option<Vec<EnvVar>> {
    let s = &glmd.spec.server;
    let mut env = Vec::new();
    if let Some(key) = &s.api_key_secret_ref {
        env.push(EnvVar {
            name: "GLM_API_KEY".into(),
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: key.name.clone(),
                    key: key.key.clone(),
                    optional: Some(false),
                }),
                ..EnvVarSource::default()
            }),
            ..EnvVar::default()
        });
    }
    env.extend(s.env.iter().filter(|e| e.name != "GLM_API_KEY").cloned());
    (!env.is_empty()).then_some(env)
}

/// A ReadWriteOnce cache attaches to one node at a time: with more than one replica possible
/// (replicas or the autoscaler's maximum), every server pod must run on the node that has it,
/// or a real CSI driver refuses the second attach and the pod never starts. Pinned with a
/// required pod affinity to the other server pods on the same host (the first pod is placed
/// freely). A user-given `spec.resources.affinity` replaces this: they decide.
pub fn same_node_for_rwo_cache(glmd: &GlmDeployment) -> Option<Affinity> {
    let spec = &glmd.spec;
    let many = spec.replicas > 1 || (spec.autoscaling.enabled && spec.autoscaling.max_replicas > 1);
    let rwo = spec.cache.access_mode == glm_crds::AccessMode::ReadWriteOnce;
    if spec.model.is_builtin_demo() || !rwo || !many {
        return None;
    }
    Some(Affinity {
        pod_affinity: Some(PodAffinity {
            required_during_scheduling_ignored_during_execution: Some(vec![PodAffinityTerm {
                label_selector: Some(LabelSelector {
                    match_labels: Some(selector_labels(&glmd.name_any())),
                    match_expressions: None,
                }),
                topology_key: "kubernetes.io/hostname".into(),
                ..PodAffinityTerm::default()
            }]),
            ..PodAffinity::default()
        }),
        ..Affinity::default()
    })
}

/// The server Deployment.
pub fn desired_deployment(
    glmd: &GlmDeployment,
    params: &DeploymentParams<'_>,
) -> Result<Deployment> {
    let name = glmd.name_any();
    let meta = child_meta(glmd, name.clone(), "server", true)?;
    let mut pod_labels = meta.labels.clone().unwrap_or_default();
    pod_labels.insert(labels::REVISION.into(), params.model.commit.clone());
    let spec = &glmd.spec;

    let (mut volumes, mut mounts) = (Vec::new(), Vec::new());
    // The built-in demo model is generated in the pod; everything else is read from the cache.
    if !spec.model.is_builtin_demo() {
        volumes.push(Volume {
            name: "cache".into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: cache_claim_name(glmd),
                read_only: Some(true),
            }),
            ..Volume::default()
        });
        mounts.push(VolumeMount {
            name: "cache".into(),
            mount_path: MODELS_MOUNT.into(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
    }
    if spec.resources.gpus > 1 {
        // Multi-GPU collectives exchange through /dev/shm; the container default is 64 MiB.
        volumes.push(Volume {
            name: "dshm".into(),
            empty_dir: Some(EmptyDirVolumeSource {
                medium: Some("Memory".into()),
                size_limit: None,
            }),
            ..Volume::default()
        });
        mounts.push(VolumeMount {
            name: "dshm".into(),
            mount_path: "/dev/shm".into(),
            ..VolumeMount::default()
        });
    }

    let container = Container {
        name: CONTAINER.into(),
        image: Some(params.image.to_string()),
        command: Some(vec!["glm-server".into()]),
        args: Some(serve_args(glmd, params.model)),
        ports: Some(vec![ContainerPort {
            name: Some("http".into()),
            container_port: SERVER_PORT,
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        }]),
        env: env(glmd),
        resources: Some(container_resources(glmd)),
        volume_mounts: Some(mounts),
        startup_probe: Some(http_probe(
            "/health",
            STARTUP_PERIOD_SECONDS,
            STARTUP_FAILURE_THRESHOLD,
            5,
        )),
        liveness_probe: Some(http_probe("/health", 10, 3, 5)),
        readiness_probe: Some(http_probe("/ready", 5, 2, 3)),
        lifecycle: Some(Lifecycle {
            // Let endpoints and load balancers drop the pod before SIGTERM starts the drain.
            pre_stop: Some(LifecycleHandler {
                exec: Some(ExecAction {
                    command: Some(vec!["sleep".into(), PRE_STOP_SLEEP_SECONDS.to_string()]),
                }),
                ..LifecycleHandler::default()
            }),
            ..Lifecycle::default()
        }),
        ..Container::default()
    };

    let r = &spec.resources;
    Ok(Deployment {
        metadata: meta,
        spec: Some(DeploymentSpec {
            replicas: params.replicas,
            selector: LabelSelector {
                match_labels: Some(selector_labels(&name)),
                match_expressions: None,
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(spec.rollout.max_surge.clone()),
                    max_unavailable: Some(spec.rollout.max_unavailable.clone()),
                }),
            }),
            progress_deadline_seconds: Some(spec.rollout.progress_deadline_seconds),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    volumes: Some(volumes),
                    termination_grace_period_seconds: Some(
                        i64::from(spec.rollout.drain_seconds) + PRE_STOP_SLEEP_SECONDS + 10,
                    ),
                    node_selector: (!r.node_selector.is_empty()).then(|| r.node_selector.clone()),
                    tolerations: (!r.tolerations.is_empty()).then(|| r.tolerations.clone()),
                    affinity: r.affinity.clone().or_else(|| same_node_for_rwo_cache(glmd)),
                    priority_class_name: r.priority_class_name.clone(),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        status: None,
    })
}

/// The model an existing Deployment serves (its `--model` argument and revision label), so a
/// new download can run while the old pods keep serving the old directory.
pub fn served_model_of(deployment: &Deployment) -> Option<ServedModel> {
    let template = &deployment.spec.as_ref()?.template;
    let commit = template
        .metadata
        .as_ref()?
        .labels
        .as_ref()?
        .get(labels::REVISION)?
        .clone();
    let container = template
        .spec
        .as_ref()?
        .containers
        .iter()
        .find(|c| c.name == CONTAINER)?;
    let args = container.args.as_ref()?;
    let i = args.iter().position(|a| a == "--model")?;
    Some(ServedModel {
        commit,
        path: args.get(i + 1)?.clone(),
    })
}

#[cfg(test)]
#[path = "deployment/tests.rs"]
mod tests;
