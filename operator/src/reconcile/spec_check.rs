//! The operator's own check of a spec before it creates anything. The CRD schema refuses most
//! mistakes at `kubectl apply`, but an object can predate a schema fix or come from a CRD
//! installed without validation; children built from a broken spec would fail later and worse.

use glm_crds::GlmDeployment;

/// Every problem found, each naming the field; empty = the spec can be honoured.
pub fn check_spec(glmd: &GlmDeployment) -> Vec<String> {
    let s = &glmd.spec;
    let mut problems = Vec::new();
    let repo_ok =
        s.model.repo.split_once('/').is_some_and(|(owner, name)| {
            !owner.is_empty() && !name.is_empty() && !name.contains('/')
        });
    if !repo_ok {
        problems.push(format!(
            "spec.model.repo must be owner/name, got {:?}",
            s.model.repo
        ));
    }
    if s.model.revision.is_empty() || s.model.revision.contains("..") {
        problems.push(format!(
            "spec.model.revision is not a valid revision: {:?}",
            s.model.revision
        ));
    }
    let tp = s.server.tensor_parallel_size;
    let gpus = s.resources.gpus;
    if tp < 1 {
        problems.push("spec.server.tensorParallelSize must be >= 1".into());
    } else if tp > 1 && (gpus <= 0 || gpus % tp != 0) {
        problems.push(format!(
            "spec.server.tensorParallelSize ({tp}) must divide spec.resources.gpus ({gpus})"
        ));
    }
    if gpus < 0 {
        problems.push("spec.resources.gpus must be >= 0".into());
    }
    let a = &s.autoscaling;
    if a.enabled && a.min_replicas > a.max_replicas {
        problems.push(format!(
            "spec.autoscaling.minReplicas ({}) must be <= spec.autoscaling.maxReplicas ({})",
            a.min_replicas, a.max_replicas
        ));
    }
    if a.enabled && a.target_queue_depth_per_replica < 1 {
        problems.push("spec.autoscaling.targetQueueDepthPerReplica must be >= 1".into());
    }
    if s.replicas < 0 {
        problems.push("spec.replicas must be >= 0".into());
    }
    let c = &s.cache;
    match (&c.existing_claim, &c.size) {
        (Some(_), Some(_)) => {
            problems.push("spec.cache.existingClaim cannot be combined with spec.cache.size".into())
        }
        (Some(_), None) if c.storage_class_name.is_some() => problems.push(
            "spec.cache.existingClaim cannot be combined with spec.cache.storageClassName".into(),
        ),
        (None, None) => problems
            .push("spec.cache.size is required unless spec.cache.existingClaim is set".into()),
        _ => {}
    }
    if s.server.enable_auto_tool_choice && s.server.tool_call_parser.flag().is_none() {
        problems
            .push("spec.server.enableAutoToolChoice requires spec.server.toolCallParser".into());
    }
    if s.rollout.drain_seconds < 0 {
        problems.push("spec.rollout.drainSeconds must be >= 0".into());
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::glmd;

    #[test]
    fn valid_fixture_passes() {
        assert_eq!(check_spec(&glmd()), Vec::<String>::new());
    }

    #[test]
    fn each_mistake_names_its_field() {
        type Mutate = fn(&mut GlmDeployment);
        let cases: Vec<(Mutate, &str)> = vec![
            (|g| g.spec.model.repo = "noslash".into(), "spec.model.repo"),
            (
                |g| g.spec.model.revision = "a..b".into(),
                "spec.model.revision",
            ),
            (
                |g| {
                    g.spec.server.tensor_parallel_size = 3;
                    g.spec.resources.gpus = 4
                },
                "spec.server.tensorParallelSize",
            ),
            (
                |g| {
                    g.spec.server.tensor_parallel_size = 2;
                    g.spec.resources.gpus = 0
                },
                "spec.server.tensorParallelSize",
            ),
            (
                |g| {
                    g.spec.autoscaling.enabled = true;
                    g.spec.autoscaling.min_replicas = 5
                },
                "spec.autoscaling.minReplicas",
            ),
            (
                |g| g.spec.cache.existing_claim = Some("x".into()),
                "spec.cache.existingClaim",
            ),
            (|g| g.spec.cache.size = None, "spec.cache.size"),
            (
                |g| g.spec.server.enable_auto_tool_choice = true,
                "spec.server.enableAutoToolChoice",
            ),
            (|g| g.spec.replicas = -1, "spec.replicas"),
        ];
        for (mutate, field) in cases {
            let mut g = glmd();
            mutate(&mut g);
            let problems = check_spec(&g);
            assert!(
                problems.iter().any(|p| p.contains(field)),
                "{field}: {problems:?}"
            );
        }
    }
}
