//! The operator's own check of a spec before it creates anything. The CRD schema refuses most
//! mistakes at `kubectl apply`, but an object can predate a schema fix or come from a CRD
//! installed without validation; children built from a broken spec would fail later and worse.

use glm_crds::{reasons, GlmDeployment};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::status::{Problem, ProblemScope};

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
    let quantities = [
        ("spec.resources.cpu", &s.resources.cpu),
        ("spec.resources.memory", &s.resources.memory),
        ("spec.cache.size", &c.size),
    ];
    for (field, q) in quantities {
        if let Some(Quantity(text)) = q {
            if !is_quantity(text) {
                problems.push(format!(
                    "{field} must be a non-negative Kubernetes quantity such as 500m, 16Gi or 2, got {text:?}"
                ));
            }
        }
    }
    problems
}

/// The grammar of a non-negative `resource.Quantity` (the CRD's `QUANTITY_PATTERN`):
/// `+`? then digits with an optional fraction, then an optional suffix: a binary SI unit
/// (`Ki`..`Ei`), a decimal SI unit (`n u m k M G T P E`) or an exponent (`e3`, `E-2`).
pub fn is_quantity(text: &str) -> bool {
    let s = text.strip_prefix('+').unwrap_or(text);
    let number_len = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(number_len);
    let digits = number.chars().filter(char::is_ascii_digit).count();
    if digits == 0 || number.matches('.').count() > 1 {
        return false;
    }
    match suffix {
        "" | "n" | "u" | "m" | "k" | "M" | "G" | "T" | "P" | "E" => true,
        "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei" => true,
        _ => {
            let Some(exp) = suffix.strip_prefix(['e', 'E']) else {
                return false;
            };
            let exp = exp.strip_prefix(['+', '-']).unwrap_or(exp);
            !exp.is_empty() && exp.chars().all(|c| c.is_ascii_digit())
        }
    }
}

/// What the bundled glm-server cannot run yet, though the schema allows it (docs/contract.md):
/// the Deployment is not rendered (its pods would only crash), the model is still fetched.
pub fn unsupported_by_server(glmd: &GlmDeployment) -> Option<Problem> {
    let tp = glmd.spec.server.tensor_parallel_size;
    (tp > 1).then(|| Problem {
        reason: reasons::UNSUPPORTED_BY_SERVER,
        message: format!(
            "spec.server.tensorParallelSize is {tp}: glm-server does not support tensor \
             parallelism yet; the server Deployment is not created (the model cache is still \
             filled). Set it to 1 to serve from one GPU per replica."
        ),
        scope: ProblemScope::Server,
    })
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
    fn quantities_follow_the_api_server_grammar() {
        for ok in [
            "1", "500m", "16Gi", "1.5", ".5", "2e3", "1E-2", "+4", "800Gi", "0",
        ] {
            assert!(is_quantity(ok), "{ok}");
        }
        for bad in [
            "lots", "1 gig", "-5Gi", "", "Gi", "1.2.3", "5GB", "1e", "1ki", "5 ",
        ] {
            assert!(!is_quantity(bad), "{bad}");
        }
    }

    #[test]
    fn tensor_parallelism_is_refused_as_unsupported_by_the_server() {
        let mut g = glmd();
        g.spec.server.tensor_parallel_size = 1;
        assert_eq!(unsupported_by_server(&g), None);
        g.spec.resources.gpus = 8;
        g.spec.server.tensor_parallel_size = 8;
        let p = unsupported_by_server(&g).unwrap();
        assert_eq!(p.reason, "UnsupportedByServer");
        assert_eq!(p.scope, ProblemScope::Server);
        assert!(p.message.contains("spec.server.tensorParallelSize"));
        assert!(p.message.contains("tensor parallelism"));
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
            // Objects stored before the CRD had a quantity pattern.
            (
                |g| g.spec.resources.cpu = Some(Quantity("lots".into())),
                "spec.resources.cpu",
            ),
            (
                |g| g.spec.resources.memory = Some(Quantity("1 gig".into())),
                "spec.resources.memory",
            ),
            (
                |g| g.spec.cache.size = Some(Quantity("-5Gi".into())),
                "spec.cache.size",
            ),
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
