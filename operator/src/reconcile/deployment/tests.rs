use super::*;
use crate::fixtures::{glmd, SHA};
use glm_crds::{SecretKeyRef, ToolCallParser};

fn model() -> ServedModel {
    ServedModel {
        commit: SHA.into(),
        path: format!("/models/zai-org--GLM-4.5-Air/{SHA}"),
    }
}

fn build(g: &GlmDeployment) -> Deployment {
    desired_deployment(
        g,
        &DeploymentParams {
            image: "img:2",
            model: &model(),
            replicas: Some(desired_replicas(g)),
        },
    )
    .unwrap()
}

#[test]
fn serve_args_follow_the_contract() {
    let mut g = glmd();
    g.spec.server.max_model_len = Some(65536);
    g.spec.server.tensor_parallel_size = 4;
    g.spec.resources.gpus = 4;
    g.spec.server.dtype = glm_crds::Dtype::Bfloat16;
    g.spec.server.kv_cache_fraction = Some(0.85);
    g.spec.server.tool_call_parser = ToolCallParser::Glm45;
    g.spec.server.reasoning_parser = glm_crds::ReasoningParser::Glm45;
    g.spec.server.enable_auto_tool_choice = true;
    g.spec.server.extra_args = vec!["--max-num-seqs=64".into()];
    g.spec.rollout.drain_seconds = 120;
    let path = format!("/models/zai-org--GLM-4.5-Air/{SHA}");
    assert_eq!(
        serve_args(&g, &model()),
        [
            "serve",
            "--model",
            path.as_str(),
            "--served-model-name",
            "GLM-4.5-Air",
            "--host",
            "0.0.0.0",
            "--port",
            "8000",
            "--max-model-len",
            "65536",
            "--tensor-parallel-size",
            "4",
            "--dtype",
            "bfloat16",
            "--device",
            "cuda",
            "--kv-cache-memory",
            "0.85",
            "--tool-call-parser",
            "glm45",
            "--reasoning-parser",
            "glm45",
            "--enable-auto-tool-choice",
            "--drain-timeout",
            "120",
            "--max-num-seqs=64"
        ]
    );
    // Defaults add no optional flags but the device of the (default) GPU.
    let minimal = serve_args(&glmd(), &model());
    assert_eq!(minimal.len(), 13, "{minimal:?}");
    assert_eq!(minimal[9..11], ["--device", "cuda"]);
}

#[test]
fn pod_template_probes_drain_and_resources() {
    let mut g = glmd();
    g.spec.rollout.drain_seconds = 60;
    g.spec.resources.gpus = 2;
    g.spec.server.tensor_parallel_size = 2;
    g.spec.resources.memory = Some(Quantity("64Gi".into()));
    g.spec.server.api_key_secret_ref = Some(SecretKeyRef {
        name: "keys".into(),
        key: "api".into(),
    });
    g.spec.resources.priority_class_name = Some("inference".into());
    let d = build(&g);
    let spec = d.spec.unwrap();
    assert_eq!(spec.replicas, Some(2));
    assert_eq!(spec.progress_deadline_seconds, Some(3600));
    let ru = spec.strategy.unwrap().rolling_update.unwrap();
    assert_eq!(
        (ru.max_surge, ru.max_unavailable),
        (Some(IntOrString::Int(1)), Some(IntOrString::Int(0)))
    );
    let tpl = spec.template;
    assert_eq!(tpl.metadata.unwrap().labels.unwrap()[labels::REVISION], SHA);
    let pod = tpl.spec.unwrap();
    assert!(pod.termination_grace_period_seconds.unwrap() >= 60 + 10);
    assert_eq!(pod.priority_class_name.as_deref(), Some("inference"));
    let c = &pod.containers[0];
    assert_eq!(c.ports.as_ref().unwrap()[0].name.as_deref(), Some("http"));
    assert_eq!(
        c.liveness_probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap()
            .path
            .as_deref(),
        Some("/health")
    );
    assert_eq!(
        c.readiness_probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap()
            .path
            .as_deref(),
        Some("/ready")
    );
    let startup = c.startup_probe.as_ref().unwrap();
    assert!(startup.period_seconds.unwrap() * startup.failure_threshold.unwrap() >= 3600);
    let pre_stop = c.lifecycle.as_ref().unwrap().pre_stop.as_ref().unwrap();
    assert_eq!(
        pre_stop.exec.as_ref().unwrap().command.as_ref().unwrap(),
        &["sleep", "5"]
    );
    let res = c.resources.as_ref().unwrap();
    assert_eq!(
        res.limits.as_ref().unwrap()["nvidia.com/gpu"],
        Quantity("2".into())
    );
    assert_eq!(
        res.requests.as_ref().unwrap()["nvidia.com/gpu"],
        Quantity("2".into())
    );
    let env = c.env.as_ref().unwrap();
    assert_eq!(env[0].name, "GLM_API_KEY");
    assert_eq!(
        env[0]
            .value_from
            .as_ref()
            .unwrap()
            .secret_key_ref
            .as_ref()
            .unwrap()
            .key,
        "api"
    );
    let mounts = c.volume_mounts.as_ref().unwrap();
    assert_eq!(
        (mounts[0].mount_path.as_str(), mounts[0].read_only),
        ("/models", Some(true))
    );
    assert_eq!(mounts[1].mount_path, "/dev/shm");
}

#[test]
fn cpu_pods_request_no_gpu() {
    let mut g = glmd();
    g.spec.resources.gpus = 0;
    let d = build(&g);
    let c = &d.spec.unwrap().template.spec.unwrap().containers[0];
    assert!(c.resources.as_ref().unwrap().limits.is_none());
}

#[test]
fn replicas_hook() {
    struct Case {
        enabled: bool,
        spec_replicas: i32,
        decided: Option<i32>,
        status_replicas: i32,
        want: i32,
    }
    let cases = [
        Case {
            enabled: false,
            spec_replicas: 3,
            decided: Some(9),
            status_replicas: 1,
            want: 3,
        },
        Case {
            enabled: true,
            spec_replicas: 3,
            decided: Some(3),
            status_replicas: 1,
            want: 3,
        },
        Case {
            enabled: true,
            spec_replicas: 3,
            decided: Some(99),
            status_replicas: 1,
            want: 4,
        },
        Case {
            enabled: true,
            spec_replicas: 3,
            decided: None,
            status_replicas: 2,
            want: 2,
        },
        Case {
            enabled: true,
            spec_replicas: 3,
            decided: None,
            status_replicas: 0,
            want: 1,
        },
    ];
    for (i, c) in cases.iter().enumerate() {
        let mut g = glmd();
        g.spec.replicas = c.spec_replicas;
        g.spec.autoscaling.enabled = c.enabled;
        g.spec.autoscaling.min_replicas = 1;
        g.spec.autoscaling.max_replicas = 4;
        g.status = Some(glm_crds::GlmDeploymentStatus {
            replicas: c.status_replicas,
            autoscaling: Some(glm_crds::AutoscalingStatus {
                desired_replicas: c.decided,
                ..Default::default()
            }),
            ..Default::default()
        });
        assert_eq!(desired_replicas(&g), c.want, "case {i}");
    }
}

#[test]
fn served_model_round_trips_through_the_deployment() {
    let d = build(&glmd());
    assert_eq!(served_model_of(&d), Some(model()));
}

#[test]
fn builtin_demo_model_runs_without_cache_or_download() {
    let mut g = glmd();
    g.spec.model.repo = glm_crds::DEMO_REPO.into();
    let demo = ServedModel {
        commit: glm_crds::DEMO_MODEL.into(),
        path: glm_crds::DEMO_MODEL.into(),
    };
    let d = desired_deployment(
        &g,
        &DeploymentParams {
            image: "img:2",
            model: &demo,
            replicas: Some(1),
        },
    )
    .unwrap();
    let pod = d.spec.unwrap().template.spec.unwrap();
    let args = pod.containers[0].args.clone().unwrap();
    assert_eq!(&args[..3], ["serve", "--model", "demo"]);
    let claims: Vec<_> = pod
        .volumes
        .unwrap_or_default()
        .into_iter()
        .filter(|v| v.persistent_volume_claim.is_some())
        .collect();
    assert!(claims.is_empty(), "the demo mounts no cache: {claims:?}");
    assert!(pod.containers[0]
        .volume_mounts
        .clone()
        .unwrap_or_default()
        .iter()
        .all(|m| m.mount_path != MODELS_MOUNT));
}

#[test]
fn the_model_path_comes_from_the_contract() {
    let g = glmd();
    let m = served_model(&g, SHA);
    assert_eq!(
        m.path,
        format!("/models/{}/{SHA}", g.spec.model.repo.replace('/', "--"))
    );
    assert_eq!(m.commit, SHA);
    let mut demo = glmd();
    demo.spec.model.repo = glm_crds::DEMO_REPO.into();
    assert_eq!(served_model(&demo, "demo").path, "demo");
}

#[test]
fn gpus_render_the_cuda_device_and_fractions_keep_their_point() {
    let mut g = glmd();
    g.spec.resources.gpus = 1;
    g.spec.server.kv_cache_fraction = Some(1.0);
    let args = serve_args(&g, &served_model(&g, SHA));
    assert!(
        args.windows(2).any(|w| w == ["--device", "cuda"]),
        "{args:?}"
    );
    // `1` would be one byte to the server.
    assert!(
        args.windows(2).any(|w| w == ["--kv-cache-memory", "1.0"]),
        "{args:?}"
    );
    g.spec.resources.gpus = 0;
    g.spec.server.kv_cache_fraction = Some(0.9);
    let args = serve_args(&g, &served_model(&g, SHA));
    assert!(!args.iter().any(|a| a == "--device"), "{args:?}");
    assert!(
        args.windows(2).any(|w| w == ["--kv-cache-memory", "0.9"]),
        "{args:?}"
    );
    assert_eq!(fraction_arg(0.85), "0.85");
    assert_eq!(fraction_arg(1.0), "1.0");
}

#[test]
fn rwo_caches_keep_every_replica_on_one_node() {
    let mut g = glmd();
    g.spec.cache.access_mode = glm_crds::AccessMode::ReadWriteOnce;
    g.spec.replicas = 2;
    let a = same_node_for_rwo_cache(&g).unwrap();
    let term = &a
        .pod_affinity
        .unwrap()
        .required_during_scheduling_ignored_during_execution
        .unwrap()[0];
    assert_eq!(term.topology_key, "kubernetes.io/hostname");
    assert_eq!(
        term.label_selector.as_ref().unwrap().match_labels.as_ref(),
        Some(&selector_labels(&g.name_any()))
    );
    let pod = build(&g).spec.unwrap().template.spec.unwrap();
    assert!(pod.affinity.is_some());

    g.spec.replicas = 1;
    assert_eq!(
        same_node_for_rwo_cache(&g),
        None,
        "one replica: nothing to pin"
    );
    g.spec.autoscaling.enabled = true;
    g.spec.autoscaling.max_replicas = 3;
    assert!(
        same_node_for_rwo_cache(&g).is_some(),
        "the autoscaler may add replicas"
    );
    g.spec.cache.access_mode = glm_crds::AccessMode::ReadWriteMany;
    assert_eq!(same_node_for_rwo_cache(&g), None);
}
