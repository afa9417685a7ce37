//! The model cache PVC.
//!
//! Retention is decided by ownership, not a finalizer: without `cache.retainOnDelete` the PVC
//! carries a controller owner reference and Kubernetes garbage-collects it with the
//! GlmDeployment; with it, the PVC has no owner reference and outlives the GlmDeployment (a new
//! GlmDeployment of the same name adopts it again). Flipping the flag adds/removes the owner
//! reference on the next apply. An `existingClaim` is never created, owned or deleted.

use std::collections::BTreeMap;

use glm_crds::GlmDeployment;
use k8s_openapi::{
    api::core::v1::{PersistentVolumeClaim, PersistentVolumeClaimSpec, VolumeResourceRequirements},
    apimachinery::pkg::api::resource::Quantity,
};
use kube::ResourceExt;

use super::meta::{child_meta, truncate};
use crate::{Error, Result};

/// Name of the claim the server and the download Job mount.
pub fn cache_claim_name(glmd: &GlmDeployment) -> String {
    match &glmd.spec.cache.existing_claim {
        Some(claim) => claim.clone(),
        None => format!("{}-cache", truncate(&glmd.name_any(), 57)),
    }
}

/// The PVC the operator manages, or `None` when `cache.existingClaim` is used.
pub fn desired_pvc(glmd: &GlmDeployment) -> Result<Option<PersistentVolumeClaim>> {
    let cache = &glmd.spec.cache;
    if cache.existing_claim.is_some() {
        return Ok(None);
    }
    let size: Quantity = cache.size.clone().ok_or_else(|| {
        Error::InvalidSpec(
            "spec.cache.size is required unless spec.cache.existingClaim is set".into(),
        )
    })?;
    let meta = child_meta(
        glmd,
        cache_claim_name(glmd),
        "cache",
        !cache.retain_on_delete,
    )?;
    Ok(Some(PersistentVolumeClaim {
        metadata: meta,
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec![cache.access_mode.as_str().to_string()]),
            storage_class_name: cache.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([("storage".to_string(), size)])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        status: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::glmd;
    use glm_crds::AccessMode;

    #[test]
    fn pvc_ownership_follows_retain_on_delete() {
        struct Case {
            retain: bool,
            owned: bool,
        }
        for c in [
            Case {
                retain: false,
                owned: true,
            },
            Case {
                retain: true,
                owned: false,
            },
        ] {
            let mut g = glmd();
            g.spec.cache.retain_on_delete = c.retain;
            let pvc = desired_pvc(&g).unwrap().unwrap();
            assert_eq!(
                pvc.metadata.owner_references.is_some(),
                c.owned,
                "retain={}",
                c.retain
            );
            if let Some(refs) = &pvc.metadata.owner_references {
                assert_eq!(refs[0].kind, "GlmDeployment");
                assert_eq!(refs[0].controller, Some(true));
            }
        }
    }

    #[test]
    fn pvc_spec_from_cache() {
        let mut g = glmd();
        g.spec.cache.access_mode = AccessMode::ReadWriteMany;
        g.spec.cache.storage_class_name = Some("fast".into());
        let pvc = desired_pvc(&g).unwrap().unwrap();
        assert_eq!(pvc.metadata.name.as_deref(), Some("glm45-cache"));
        let spec = pvc.spec.unwrap();
        assert_eq!(spec.access_modes.unwrap(), vec!["ReadWriteMany"]);
        assert_eq!(spec.storage_class_name.as_deref(), Some("fast"));
        assert_eq!(
            spec.resources.unwrap().requests.unwrap()["storage"],
            Quantity("800Gi".into())
        );
    }

    #[test]
    fn existing_claim_is_never_managed() {
        let mut g = glmd();
        g.spec.cache.size = None;
        g.spec.cache.existing_claim = Some("shared-models".into());
        assert!(desired_pvc(&g).unwrap().is_none());
        assert_eq!(cache_claim_name(&g), "shared-models");
    }
}
