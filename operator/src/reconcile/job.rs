//! The download Job: `glm-server download` per docs/contract.md, one per (GlmDeployment,
//! requested model). Jobs are immutable, so a Job is created once and never re-applied; a
//! different repo/revision/include/endpoint/token gets a different name (hash suffix).

use std::collections::BTreeMap;

use glm_crds::{annotations, labels, model_dir, GlmDeployment, MODELS_MOUNT};
use k8s_openapi::{
    api::{
        batch::v1::{
            Job, JobSpec, PodFailurePolicy, PodFailurePolicyOnExitCodesRequirement,
            PodFailurePolicyOnPodConditionsPattern, PodFailurePolicyRule,
        },
        core::v1::{
            Container, KeyToPath, PersistentVolumeClaimVolumeSource, PodSpec, PodTemplateSpec,
            ResourceRequirements, SecretVolumeSource, Volume, VolumeMount,
        },
    },
    apimachinery::pkg::{api::resource::Quantity, apis::meta::v1::ObjectMeta},
};
use kube::ResourceExt;

use super::{
    meta::{child_meta, fnv1a, truncate},
    pvc::cache_claim_name,
};
use crate::Result;

/// Where the hub token Secret is mounted in the download pod.
pub const TOKEN_DIR: &str = "/var/run/glm/hf-token";
/// Kubernetes' default termination message path, passed explicitly per the contract.
pub const TERMINATION_MESSAGE_PATH: &str = "/dev/termination-log";
/// Container name of the download pod (used when reading its log).
pub const CONTAINER: &str = "download";

/// Exit statuses of `glm-server download` that no retry can fix (docs/contract.md):
/// invalid_argument, not_found, unauthorized, gated.
pub const PERMANENT_EXIT_CODES: [i32; 4] = [2, 3, 4, 5];

/// Fail the Job at once on a permanent failure; a pod evicted or preempted does not count
/// against `backoffLimit`.
pub fn pod_failure_policy() -> PodFailurePolicy {
    PodFailurePolicy {
        rules: vec![
            PodFailurePolicyRule {
                action: "FailJob".into(),
                on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
                    container_name: Some(CONTAINER.into()),
                    operator: "In".into(),
                    values: PERMANENT_EXIT_CODES.to_vec(),
                }),
                on_pod_conditions: None,
            },
            PodFailurePolicyRule {
                action: "Ignore".into(),
                on_exit_codes: None,
                on_pod_conditions: Some(vec![PodFailurePolicyOnPodConditionsPattern {
                    type_: "DisruptionTarget".into(),
                    status: "True".into(),
                }]),
            },
        ],
    }
}

/// Short hash of everything that decides what the Job downloads.
pub fn download_key(glmd: &GlmDeployment) -> String {
    let m = &glmd.spec.model;
    let token = m
        .token_secret_ref
        .as_ref()
        .map(|t| format!("{}/{}", t.name, t.key))
        .unwrap_or_default();
    let mut parts: Vec<&str> = vec![
        &m.repo,
        &m.revision,
        m.hub_endpoint.as_deref().unwrap_or(""),
        &token,
    ];
    parts.extend(m.include.iter().map(String::as_str));
    format!("{:010x}", fnv1a(&parts) & 0xff_ffff_ffff)
}

/// Deterministic Job name: `<name>-dl-<key>`, at most 63 characters.
pub fn job_name(glmd: &GlmDeployment) -> String {
    format!(
        "{}-dl-{}",
        truncate(&glmd.name_any(), 63 - 14),
        download_key(glmd)
    )
}

/// Inputs besides the GlmDeployment.
#[derive(Clone, Debug)]
pub struct JobParams<'a> {
    /// Image with the `glm-server` binary.
    pub image: &'a str,
}

/// `glm-server download ...` arguments.
pub fn download_args(glmd: &GlmDeployment) -> Vec<String> {
    let m = &glmd.spec.model;
    let mut args = vec![
        "download".into(),
        "--repo".into(),
        m.repo.clone(),
        "--revision".into(),
        m.revision.clone(),
        "--dir".into(),
        model_dir(&m.repo),
    ];
    for glob in &m.include {
        args.extend(["--include".into(), glob.clone()]);
    }
    if let Some(endpoint) = &m.hub_endpoint {
        args.extend(["--hub-endpoint".into(), endpoint.clone()]);
    }
    if let Some(token) = &m.token_secret_ref {
        args.extend(["--token-file".into(), format!("{TOKEN_DIR}/{}", token.key)]);
    }
    args.extend([
        "--termination-message-path".into(),
        TERMINATION_MESSAGE_PATH.into(),
    ]);
    args
}

/// The download Job.
pub fn desired_job(glmd: &GlmDeployment, params: &JobParams<'_>) -> Result<Job> {
    let name = job_name(glmd);
    let mut meta = child_meta(glmd, name, "download", true)?;
    let key = download_key(glmd);
    if let Some(l) = meta.labels.as_mut() {
        l.insert(labels::DOWNLOAD_KEY.into(), key);
    }
    meta.annotations = Some(BTreeMap::from([
        (
            annotations::GENERATION.to_string(),
            glmd.metadata.generation.unwrap_or(0).to_string(),
        ),
        (
            annotations::REQUESTED_REVISION.to_string(),
            glmd.spec.model.revision.clone(),
        ),
    ]));
    let pod_labels = meta.labels.clone();
    let spec = &glmd.spec;

    let mut volumes = vec![Volume {
        name: "cache".into(),
        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
            claim_name: cache_claim_name(glmd),
            read_only: Some(false),
        }),
        ..Volume::default()
    }];
    let mut mounts = vec![VolumeMount {
        name: "cache".into(),
        mount_path: MODELS_MOUNT.into(),
        ..VolumeMount::default()
    }];
    if let Some(token) = &spec.model.token_secret_ref {
        // A file, not an env var: it stays out of `kubectl describe` and process listings.
        volumes.push(Volume {
            name: "hf-token".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(token.name.clone()),
                items: Some(vec![KeyToPath {
                    key: token.key.clone(),
                    path: token.key.clone(),
                    mode: None,
                }]),
                default_mode: Some(0o400),
                optional: Some(false),
            }),
            ..Volume::default()
        });
        mounts.push(VolumeMount {
            name: "hf-token".into(),
            mount_path: TOKEN_DIR.into(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
    }

    let container = Container {
        name: CONTAINER.into(),
        image: Some(params.image.to_string()),
        command: Some(vec!["glm-server".into()]),
        args: Some(download_args(glmd)),
        termination_message_path: Some(TERMINATION_MESSAGE_PATH.into()),
        termination_message_policy: Some("File".into()),
        volume_mounts: Some(mounts),
        resources: Some(ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".to_string(), Quantity("500m".into())),
                ("memory".to_string(), Quantity("512Mi".into())),
            ])),
            limits: Some(BTreeMap::from([(
                "memory".to_string(),
                Quantity("2Gi".into()),
            )])),
            ..ResourceRequirements::default()
        }),
        ..Container::default()
    };

    let r = &spec.resources;
    Ok(Job {
        metadata: meta,
        spec: Some(JobSpec {
            backoff_limit: Some(spec.model.download.backoff_limit),
            pod_failure_policy: Some(pod_failure_policy()),
            active_deadline_seconds: Some(spec.model.download.active_deadline_seconds),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: pod_labels,
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".into()),
                    containers: vec![container],
                    volumes: Some(volumes),
                    // Same placement as the servers: with node-local (WaitForFirstConsumer)
                    // storage the cache binds where the download runs.
                    node_selector: (!r.node_selector.is_empty()).then(|| r.node_selector.clone()),
                    tolerations: (!r.tolerations.is_empty()).then(|| r.tolerations.clone()),
                    affinity: r.affinity.clone(),
                    ..PodSpec::default()
                }),
            },
            ..JobSpec::default()
        }),
        status: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::glmd;
    use glm_crds::SecretKeyRef;

    #[test]
    fn permanent_failures_fail_the_job_at_once() {
        let job = desired_job(&glmd(), &JobParams { image: "img" }).unwrap();
        let spec = job.spec.unwrap();
        assert_eq!(
            spec.template.spec.unwrap().restart_policy.as_deref(),
            Some("Never")
        );
        let rules = spec.pod_failure_policy.unwrap().rules;
        let fail = rules.iter().find(|r| r.action == "FailJob").unwrap();
        let codes = fail.on_exit_codes.as_ref().unwrap();
        assert_eq!(codes.container_name.as_deref(), Some(CONTAINER));
        assert_eq!(
            (codes.operator.as_str(), codes.values.as_slice()),
            ("In", &[2, 3, 4, 5][..])
        );
        assert!(rules.iter().any(|r| r.action == "Ignore"));
    }

    #[test]
    fn args_follow_the_contract() {
        let mut g = glmd();
        g.spec.model.include = vec!["*.safetensors".into(), "*.json".into()];
        g.spec.model.hub_endpoint = Some("https://mirror.example".into());
        g.spec.model.token_secret_ref = Some(SecretKeyRef {
            name: "hf".into(),
            key: "token".into(),
        });
        assert_eq!(
            download_args(&g),
            [
                "download",
                "--repo",
                "zai-org/GLM-4.5-Air",
                "--revision",
                "main",
                "--dir",
                "/models/zai-org--GLM-4.5-Air",
                "--include",
                "*.safetensors",
                "--include",
                "*.json",
                "--hub-endpoint",
                "https://mirror.example",
                "--token-file",
                "/var/run/glm/hf-token/token",
                "--termination-message-path",
                "/dev/termination-log"
            ]
        );
        let minimal = download_args(&glmd());
        assert!(!minimal.contains(&"--token-file".to_string()));
        assert!(!minimal.contains(&"--include".to_string()));
    }

    #[test]
    fn job_name_changes_with_what_is_downloaded_only() {
        let base = glmd();
        let mut other_rev = glmd();
        other_rev.spec.model.revision = "v1.1".into();
        let mut other_replicas = glmd();
        other_replicas.spec.replicas = 7;
        assert_ne!(job_name(&base), job_name(&other_rev));
        assert_eq!(job_name(&base), job_name(&other_replicas));
        assert!(job_name(&base).starts_with("glm45-dl-"));
        let mut long = glmd();
        long.metadata.name = Some("x".repeat(80));
        assert!(job_name(&long).len() <= 63);
    }

    #[test]
    fn job_spec_limits_token_and_cache() {
        let mut g = glmd();
        g.spec.model.download.backoff_limit = 5;
        g.spec.model.download.active_deadline_seconds = 3600;
        g.spec.model.token_secret_ref = Some(SecretKeyRef {
            name: "hf".into(),
            key: "tok".into(),
        });
        let job = desired_job(&g, &JobParams { image: "img:1" }).unwrap();
        assert_eq!(
            job.metadata.annotations.as_ref().unwrap()[annotations::GENERATION],
            "3"
        );
        assert_eq!(
            job.metadata.owner_references.as_ref().unwrap()[0].name,
            "glm45"
        );
        let spec = job.spec.unwrap();
        assert_eq!(spec.backoff_limit, Some(5));
        assert_eq!(spec.active_deadline_seconds, Some(3600));
        let pod = spec.template.spec.unwrap();
        assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
        let vols = pod.volumes.unwrap();
        assert_eq!(
            vols[0].persistent_volume_claim.as_ref().unwrap().claim_name,
            "glm45-cache"
        );
        let secret = vols[1].secret.as_ref().unwrap();
        assert_eq!(secret.secret_name.as_deref(), Some("hf"));
        assert_eq!(secret.items.as_ref().unwrap()[0].key, "tok");
        let c = &pod.containers[0];
        assert_eq!(c.image.as_deref(), Some("img:1"));
        assert_eq!(c.command.as_ref().unwrap(), &["glm-server"]);
        let mounts = c.volume_mounts.as_ref().unwrap();
        assert_eq!(
            (mounts[0].mount_path.as_str(), mounts[0].read_only),
            ("/models", None)
        );
        assert_eq!(
            (mounts[1].mount_path.as_str(), mounts[1].read_only),
            (TOKEN_DIR, Some(true))
        );
    }
}
