//! Which cluster the suite runs against: the one in `KUBECONFIG` (kind, k3d, any cluster),
//! or, when none is configured, the real control plane and stand-in kubelet that
//! `e2e/local-cluster.sh up` starts from `KUBEBUILDER_ASSETS` (default `../shared/k8s`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use super::E2eError;

/// The label the stand-in kubelet puts on its nodes: pods there are local processes whose
/// pod IPs (127.0.0.x) this machine reaches directly.
const STANDIN_NODE_LABEL: &str = "standin-kubelet=true";

/// A connected cluster.
pub struct Cluster {
    pub client: Client,
    /// The kubeconfig file the operator process must use (`None`: its defaults, the same
    /// cluster the tests reach).
    pub kubeconfig: Option<PathBuf>,
    /// Pods run on this machine (stand-in kubelet): talk to pod IPs instead of the API
    /// server's service proxy, which needs Endpoints the stand-in cannot publish.
    pub local_pods: bool,
}

/// Why no cluster could be used.
pub enum NoCluster {
    /// A configured cluster does not answer: the suite skips (it never waits on a cluster).
    Unreachable(String),
    /// The local cluster was asked for and did not start: a failure.
    Failed(E2eError),
}

/// Is a cluster configured? `GLM_E2E_CLUSTER=local` forces the local one; otherwise any
/// `KUBECONFIG` or `~/.kube/config` counts.
fn configured_cluster() -> bool {
    if std::env::var("GLM_E2E_CLUSTER").as_deref() == Ok("local") {
        return false;
    }
    if std::env::var_os("KUBECONFIG").is_some_and(|v| !v.is_empty()) {
        return true;
    }
    std::env::var_os("HOME")
        .map(|h| Path::new(&h).join(".kube").join("config"))
        .is_some_and(|p| p.is_file())
}

/// Connects to the configured cluster, or starts the local one.
pub async fn connect() -> Result<Cluster, NoCluster> {
    let (client, kubeconfig) = if configured_cluster() {
        let client = with_timeout(async { Client::try_default().await.map_err(|e| e.to_string()) })
            .await
            .map_err(NoCluster::Unreachable)?;
        (client, None)
    } else {
        let path = start_local().map_err(NoCluster::Failed)?;
        let client = with_timeout(client_from(&path))
            .await
            .map_err(|e| NoCluster::Failed(E2eError::Operator(e)))?;
        (client, Some(path))
    };
    let answer = with_timeout(async {
        client
            .apiserver_version()
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
    .await;
    if let Err(e) = answer {
        return Err(match kubeconfig {
            Some(_) => NoCluster::Failed(E2eError::Operator(format!(
                "local control plane does not answer: {e}"
            ))),
            None => NoCluster::Unreachable(e),
        });
    }
    let nodes: Api<Node> = Api::all(client.clone());
    let local_pods = nodes
        .list(&ListParams::default().labels(STANDIN_NODE_LABEL).limit(1))
        .await
        .is_ok_and(|l| !l.items.is_empty());
    Ok(Cluster {
        client,
        kubeconfig,
        local_pods,
    })
}

async fn with_timeout<T>(
    fut: impl std::future::Future<Output = Result<T, String>>,
) -> Result<T, String> {
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .map_err(|_| "the API server did not answer within 10 s".to_owned())?
}

async fn client_from(path: &Path) -> Result<Client, String> {
    let kubeconfig = Kubeconfig::read_from(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Client::try_from(config).map_err(|e| e.to_string())
}

/// Runs `e2e/local-cluster.sh up` (idempotent, serialised by a lock in the script) and
/// returns the admin kubeconfig it prints.
fn start_local() -> Result<PathBuf, E2eError> {
    let script = crate::workspace_root().join("e2e").join("local-cluster.sh");
    let out = std::process::Command::new("bash")
        .arg(&script)
        .arg("up")
        .output()
        .map_err(|e| E2eError::Operator(format!("{}: {e}", script.display())))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(E2eError::Operator(format!(
            "{} up failed ({}): {}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    kubeconfig_from_script(&stdout).ok_or_else(|| {
        E2eError::Operator(format!(
            "{} up printed no `export KUBECONFIG=` line: {stdout}",
            script.display()
        ))
    })
}

/// The path in the script's `export KUBECONFIG=<path>` line.
fn kubeconfig_from_script(stdout: &str) -> Option<PathBuf> {
    stdout
        .lines()
        .filter_map(|l| l.trim().strip_prefix("export KUBECONFIG="))
        .map(|p| PathBuf::from(p.trim()))
        .next_back()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_names_its_kubeconfig() {
        let out = "noise\nexport KUBECONFIG=/tmp/x/cp/admin.kubeconfig\n";
        assert_eq!(
            kubeconfig_from_script(out),
            Some(PathBuf::from("/tmp/x/cp/admin.kubeconfig"))
        );
        assert_eq!(kubeconfig_from_script("started\n"), None);
    }
}
