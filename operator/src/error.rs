//! The operator's error type. `kind()` is the stable label of the failure metric.

/// Everything a reconcile can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed (network, 5xx, conflict...): retried with backoff.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The spec cannot be honoured; reported as `Degraded` until the spec changes.
    #[error("invalid spec: {0}")]
    InvalidSpec(String),
    /// `spec.cache.existingClaim` names a PVC that does not exist.
    #[error("cache claim {0} not found")]
    CacheClaimNotFound(String),
    /// The apiserver refused a child object as invalid (e.g. an immutable field changed).
    #[error("{kind} {name} rejected by the apiserver: {message}")]
    ChildRejected {
        kind: &'static str,
        name: String,
        message: String,
    },
    /// The object lacks a field the apiserver always sets (name, namespace, uid).
    #[error("object has no {0}")]
    MissingObjectKey(&'static str),
    /// JSON (de)serialization of an object.
    #[error("serialization: {0}")]
    Serialization(#[from] serde_json::Error),
    /// Operator configuration or startup problem.
    #[error("config: {0}")]
    Config(String),
}

impl Error {
    /// Stable snake_case tag used as metric label and in logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Kube(kube::Error::Api(status)) => match status.code {
                404 => "kube_not_found",
                409 => "kube_conflict",
                403 | 401 => "kube_forbidden",
                422 | 400 => "kube_invalid",
                _ => "kube_api",
            },
            Self::Kube(_) => "kube_transport",
            Self::InvalidSpec(_) => "invalid_spec",
            Self::CacheClaimNotFound(_) => "cache_claim_not_found",
            Self::ChildRejected { .. } => "child_rejected",
            Self::MissingObjectKey(_) => "missing_object_key",
            Self::Serialization(_) => "serialization",
            Self::Config(_) => "config",
        }
    }

    /// Errors the user must fix in the spec or cluster; retrying without a change cannot help,
    /// so they become a `Degraded` condition and a Warning Event instead of a hot retry loop.
    pub fn needs_user_action(&self) -> bool {
        matches!(
            self,
            Self::InvalidSpec(_) | Self::CacheClaimNotFound(_) | Self::ChildRejected { .. }
        )
    }

    /// The condition/Event reason for errors that need user action.
    pub fn reason(&self) -> &'static str {
        use glm_crds::reasons;
        match self {
            Self::InvalidSpec(_) => reasons::INVALID_SPEC,
            Self::CacheClaimNotFound(_) => reasons::CACHE_CLAIM_NOT_FOUND,
            Self::ChildRejected { .. } => reasons::CHILD_REJECTED,
            _ => "ReconcileFailed",
        }
    }
}

/// Did the API server refuse the object's content, so that sending it again cannot help?
/// 400/422 (invalid), and the 500 it answers when the applied object does not even decode
/// (`failed to create typed patch object`, `unable to convert unstructured object`: e.g. a
/// quantity that is no quantity).
pub fn refused_content(code: u16, message: &str) -> bool {
    matches!(code, 400 | 422)
        || (code == 500
            && (message.contains("failed to create typed patch object")
                || message.contains("unable to convert unstructured object")
                || message.contains("quantities must match")))
}

/// Result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_refusals_are_told_from_transient_failures() {
        assert!(refused_content(
            422,
            "spec.ports[1].name: Duplicate value: \"http\""
        ));
        assert!(refused_content(400, "bad request"));
        // What kube-apiserver v1.28.7 answers to `resources.requests.cpu: lots` in an apply.
        assert!(refused_content(
            500,
            "failed to convert new object (default/q; apps/v1, Kind=Deployment) to proper \
             version: unable to convert unstructured object to apps/v1, Kind=Deployment: \
             quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
        ));
        assert!(!refused_content(500, "etcdserver: request timed out"));
        assert!(!refused_content(409, "conflict"));
        assert!(!refused_content(503, "unavailable"));
    }
}
