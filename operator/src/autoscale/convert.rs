//! From the CRD's `spec.autoscaling` to the decision's policy and the loop's config.

use std::time::Duration;

use glm_crds::AutoscalingSpec;

use super::{AutoscalePolicy, ScaleLoopConfig};

fn non_negative(v: i32) -> u32 {
    u32::try_from(v).unwrap_or(0)
}

fn seconds(v: i32) -> Duration {
    Duration::from_secs(u64::from(non_negative(v)))
}

/// Negative values (which the CRD schema already rejects) become 0 and then fail
/// [`AutoscalePolicy::validate`] where 0 is not allowed, rather than wrapping around.
impl From<&AutoscalingSpec> for AutoscalePolicy {
    fn from(spec: &AutoscalingSpec) -> Self {
        Self {
            min_replicas: non_negative(spec.min_replicas),
            max_replicas: non_negative(spec.max_replicas),
            target_per_replica: f64::from(spec.target_queue_depth_per_replica),
            scale_up_stabilization: seconds(spec.scale_up_stabilization_seconds),
            scale_down_stabilization: seconds(spec.scale_down_stabilization_seconds),
            ..Self::default()
        }
    }
}

impl ScaleLoopConfig {
    /// The loop config of one GlmDeployment: `deployment` is the server Deployment's name,
    /// `pod_selector` the label selector of its pods, `object_uid` the GlmDeployment's uid.
    pub fn from_spec(
        spec: &AutoscalingSpec,
        deployment: String,
        pod_selector: String,
        object_uid: Option<String>,
    ) -> Self {
        Self {
            policy: AutoscalePolicy::from(spec),
            interval: seconds(spec.scrape_interval_seconds),
            deployment,
            pod_selector,
            object_uid,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crd_defaults_map_to_a_valid_policy() {
        let spec = AutoscalingSpec::default();
        let c = ScaleLoopConfig::from_spec(&spec, "d".into(), "a=b".into(), None);
        assert_eq!(c.interval, Duration::from_secs(5));
        assert_eq!(c.policy.min_replicas, 1);
        assert_eq!(c.policy.max_replicas, 4);
        assert_eq!(c.policy.target_per_replica, 8.0);
        assert_eq!(c.policy.scale_down_stabilization, Duration::from_secs(300));
        assert_eq!(c.policy.scale_up_stabilization, Duration::ZERO);
        c.policy.validate().unwrap();
    }

    #[test]
    fn negative_values_do_not_wrap() {
        let spec = AutoscalingSpec {
            max_replicas: -1,
            scale_down_stabilization_seconds: -5,
            ..AutoscalingSpec::default()
        };
        let p = AutoscalePolicy::from(&spec);
        assert_eq!(p.scale_down_stabilization, Duration::ZERO);
        assert_eq!(p.validate().unwrap_err().kind(), "zero_max_replicas");
    }
}
