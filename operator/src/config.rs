//! Operator configuration: flags with environment fallbacks, parsed once in main.

use clap::{Parser, ValueEnum};

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Json,
    Text,
}

/// glm-operator: runs GLM model deployments on Kubernetes.
#[derive(Clone, Debug, Parser)]
#[command(name = "glm-operator", version)]
pub struct Config {
    /// Namespaces to watch (comma-separated); all namespaces when empty.
    #[arg(
        long = "namespace",
        env = "GLM_OPERATOR_NAMESPACES",
        value_delimiter = ','
    )]
    pub namespaces: Vec<String>,
    /// Server image used when a GlmDeployment sets no spec.server.image.
    #[arg(long, env = "GLM_OPERATOR_DEFAULT_IMAGE", default_value = glm_crds::DEFAULT_SERVER_IMAGE)]
    pub default_image: String,
    /// Log format.
    #[arg(
        long,
        env = "GLM_OPERATOR_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,
    /// Port of /healthz, /readyz and /metrics.
    #[arg(long, env = "GLM_OPERATOR_ADMIN_PORT", default_value_t = 8080)]
    pub admin_port: u16,
    /// Hold a Lease so only one replica reconciles.
    #[arg(long, env = "GLM_OPERATOR_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,
    /// Name of the leader Lease.
    #[arg(
        long,
        env = "GLM_OPERATOR_LEASE_NAME",
        default_value = "glm-operator-leader"
    )]
    pub lease_name: String,
    /// Namespace of the leader Lease (the operator's own namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    /// Identity in the Lease (the pod name).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Seconds a Lease stays valid without renewal.
    #[arg(long, env = "GLM_OPERATOR_LEASE_SECONDS", default_value_t = 15)]
    pub lease_seconds: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_namespace_list() {
        let c = Config::try_parse_from(["glm-operator"]).unwrap();
        assert!(c.namespaces.is_empty());
        assert_eq!(c.default_image, "ghcr.io/glm-dev/glm-server:0.1.0");
        assert_eq!(c.log_format, LogFormat::Text);
        assert!(c.leader_election);
        let c = Config::try_parse_from([
            "glm-operator",
            "--namespace",
            "a,b",
            "--log-format",
            "json",
            "--leader-election",
            "false",
        ])
        .unwrap();
        assert_eq!(c.namespaces, ["a", "b"]);
        assert_eq!(c.log_format, LogFormat::Json);
        assert!(!c.leader_election);
    }
}
