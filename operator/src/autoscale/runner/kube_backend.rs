//! [`ScaleBackend`] over the Kubernetes API: GET the Deployment, LIST its pods, PATCH the
//! scale subresource, publish Events on the GlmDeployment.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Api, Client};
use serde_json::json;
use tracing::warn;

use super::{ObjectKey, Observed, RunnerError, ScaleBackend, ScaleLoopConfig};
use crate::autoscale::{foreign_replicas_manager, Decision, AUTOSCALER_FIELD_MANAGER};
use crate::scrape::targets_from_pods;

#[derive(Clone)]
pub struct KubeBackend {
    client: Client,
    recorder: Recorder,
}

impl KubeBackend {
    /// `reporter` names the operator in Events (`controller`: "glm-operator", `instance`:
    /// the pod name).
    pub fn new(client: Client, reporter: Reporter) -> Self {
        let recorder = Recorder::new(client.clone(), reporter);
        Self { client, recorder }
    }
}

/// Reference to the GlmDeployment an Event is about.
fn glmd_reference(key: &ObjectKey, uid: Option<String>) -> ObjectReference {
    ObjectReference {
        api_version: Some(format!("{}/{}", glm_crds::API_GROUP, glm_crds::API_VERSION)),
        kind: Some(glm_crds::KIND.to_string()),
        name: Some(key.name.clone()),
        namespace: Some(key.namespace.clone()),
        uid,
        ..Default::default()
    }
}

impl ScaleBackend for KubeBackend {
    async fn observe(
        &self,
        key: &ObjectKey,
        config: &ScaleLoopConfig,
    ) -> Result<Observed, RunnerError> {
        let deployments: Api<Deployment> = Api::namespaced(self.client.clone(), &key.namespace);
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &key.namespace);
        let lp = ListParams::default().labels(&config.pod_selector);
        let (deployment, pods) =
            futures::future::join(deployments.get_opt(&config.deployment), pods.list(&lp)).await;
        let deployment = deployment?
            .ok_or_else(|| RunnerError::DeploymentNotFound(config.deployment.clone()))?;
        let current = deployment
            .spec
            .as_ref()
            .and_then(|s| s.replicas)
            // The API server defaults replicas to 1.
            .unwrap_or(1);
        Ok(Observed {
            current_replicas: u32::try_from(current).unwrap_or(0),
            pods: targets_from_pods(&pods?.items),
            foreign_owner: foreign_replicas_manager(&deployment),
        })
    }

    async fn scale(
        &self,
        key: &ObjectKey,
        config: &ScaleLoopConfig,
        replicas: u32,
    ) -> Result<(), RunnerError> {
        let deployments: Api<Deployment> = Api::namespaced(self.client.clone(), &key.namespace);
        // A merge patch on the scale subresource is recorded as its own managedFields entry
        // (manager glm-operator, subresource scale), so the reconcile's server-side apply of
        // the Deployment, which leaves replicas out, neither conflicts with it nor resets it.
        let patch = json!({ "spec": { "replicas": replicas } });
        let params = PatchParams {
            field_manager: Some(AUTOSCALER_FIELD_MANAGER.to_string()),
            ..Default::default()
        };
        deployments
            .patch_scale(&config.deployment, &params, &Patch::Merge(&patch))
            .await?;
        Ok(())
    }

    async fn record(&self, key: &ObjectKey, config: &ScaleLoopConfig, decision: &Decision) {
        let event = Event {
            type_: EventType::Normal,
            reason: decision.reason.as_str().to_string(),
            note: Some(decision.message()),
            action: "Scale".to_string(),
            secondary: None,
        };
        if let Err(e) = self
            .recorder
            .publish(&event, &glmd_reference(key, config.object_uid.clone()))
            .await
        {
            warn!(%key, error = %e, "publishing the scale Event failed");
        }
    }
}

#[cfg(test)]
mod tests;
