//! Names, labels and owner references shared by every child builder.

use std::collections::BTreeMap;

use glm_crds::{labels, GlmDeployment};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};

use crate::{Error, Result};

/// Kubernetes object names are at most 63 characters where they become labels or DNS names.
const MAX_NAME: usize = 63;

/// Name and namespace of a GlmDeployment, checked once.
pub(crate) fn name_ns(glmd: &GlmDeployment) -> Result<(String, String)> {
    let name = glmd
        .meta()
        .name
        .clone()
        .ok_or(Error::MissingObjectKey("metadata.name"))?;
    let ns = glmd
        .namespace()
        .ok_or(Error::MissingObjectKey("metadata.namespace"))?;
    Ok((name, ns))
}

/// Controller owner reference pointing at the GlmDeployment (needs its uid).
pub(crate) fn owner_ref(glmd: &GlmDeployment) -> Result<OwnerReference> {
    glmd.controller_owner_ref(&())
        .ok_or(Error::MissingObjectKey("metadata.uid"))
}

/// Labels that select the server pods (immutable once the Deployment exists).
pub fn selector_labels(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (labels::NAME.to_string(), labels::NAME_VALUE.to_string()),
        (labels::INSTANCE.to_string(), truncate(name, MAX_NAME)),
        (labels::DEPLOYMENT.to_string(), truncate(name, MAX_NAME)),
    ])
}

/// `status.selector`: the selector labels as a label-selector string.
pub fn selector_string(name: &str) -> String {
    selector_labels(name)
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Labels for a child object of the given component (`server`, `download`, `cache`).
pub fn child_labels(name: &str, component: &str) -> BTreeMap<String, String> {
    let mut l = selector_labels(name);
    l.insert(
        labels::MANAGED_BY.to_string(),
        labels::MANAGED_BY_VALUE.to_string(),
    );
    l.insert(labels::COMPONENT.to_string(), component.to_string());
    l
}

/// Metadata of a child object: name, namespace, labels and (optionally) the controller owner.
pub(crate) fn child_meta(
    glmd: &GlmDeployment,
    child_name: String,
    component: &str,
    owned: bool,
) -> Result<ObjectMeta> {
    let (name, ns) = name_ns(glmd)?;
    let owner_references = if owned {
        Some(vec![owner_ref(glmd)?])
    } else {
        None
    };
    Ok(ObjectMeta {
        name: Some(child_name),
        namespace: Some(ns),
        labels: Some(child_labels(&name, component)),
        owner_references,
        ..ObjectMeta::default()
    })
}

/// Cuts `s` to `max` bytes on a char boundary, without a trailing `-` or `.`.
pub(crate) fn truncate(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].trim_end_matches(['-', '.']).to_string()
}

/// 64-bit FNV-1a: a stable short hash for names (not security relevant; a std `Hasher` is
/// not guaranteed stable across Rust releases, and names must never change on upgrade).
pub(crate) fn fnv1a(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in part.bytes().chain(std::iter::once(0u8)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// The name clients send as `model`: `spec.model.servedModelName`, else the repo's name part.
pub fn served_model_name(glmd: &GlmDeployment) -> String {
    let m = &glmd.spec.model;
    m.served_model_name.clone().unwrap_or_else(|| {
        m.repo
            .rsplit_once('/')
            .map_or(m.repo.as_str(), |(_, n)| n)
            .to_string()
    })
}

/// In-cluster URL of the Service.
pub fn endpoint(name: &str, ns: &str) -> String {
    format!("http://{name}.{ns}.svc:{}", glm_crds::SERVER_PORT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncate_respects_limits_and_trailing_separators() {
        assert_eq!(truncate("abc", 63), "abc");
        assert_eq!(truncate("abcd-efgh", 5), "abcd");
        assert_eq!(truncate(&"x".repeat(80), 63).len(), 63);
    }

    #[test]
    fn fnv_is_stable_and_separates_parts() {
        // Fixed value: names derived from it must never change between operator versions.
        assert_eq!(fnv1a(&["a"]), fnv1a(&["a"]));
        assert_ne!(fnv1a(&["ab", "c"]), fnv1a(&["a", "bc"]));
        assert_eq!(format!("{:016x}", fnv1a(&[""])), "af63bd4c8601b7df");
    }

    #[test]
    fn selector_string_is_sorted_and_complete() {
        assert_eq!(
            selector_string("g"),
            "app.kubernetes.io/instance=g,app.kubernetes.io/name=glm-server,serving.glm.dev/deployment=g"
        );
    }
}
