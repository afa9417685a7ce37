//! Offline checks of rendered Kubernetes manifests (Helm output, kustomize output, examples):
//! every object must parse as the Kubernetes type its `apiVersion`/`kind` names, with no field
//! the type does not know. There is no API server to ask, so the check is a round trip through
//! the k8s-openapi type: a field that vanishes or changes on the way is unknown or mistyped.

mod extra;

use std::fmt;
use std::path::Path;

use k8s_openapi::api::{
    apps::v1 as apps, batch::v1 as batch, coordination::v1 as coordination, core::v1 as core,
    networking::v1 as networking, policy::v1 as policy, rbac::v1 as rbac,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiextensions;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use extra::{ArgoApplication, ServiceMonitor};

/// Why a manifest was refused.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{source_name}: YAML document {index}: {message}")]
    Yaml {
        source_name: String,
        index: usize,
        message: String,
    },
    #[error("{0}: not an object with apiVersion, kind and metadata.name")]
    MissingTypeMeta(String),
    #[error("{object}: no Kubernetes type known for apiVersion {api_version}, kind {kind}")]
    UnknownKind {
        object: String,
        api_version: String,
        kind: String,
    },
    #[error("{object}: does not parse as {type_name}: {message}")]
    Parse {
        object: String,
        type_name: &'static str,
        message: String,
    },
    #[error("{object}: field {path} is not a field of {type_name}")]
    UnknownField {
        object: String,
        type_name: &'static str,
        path: String,
    },
    #[error("{object}: field {path} changes in a round trip through {type_name}: {original} became {round_trip}")]
    Mismatch {
        object: String,
        type_name: &'static str,
        path: String,
        original: String,
        round_trip: String,
    },
    #[error("{object}: refused by the GlmDeployment CRD schema: {message}")]
    Schema { object: String, message: String },
    #[error("{path}: {message}")]
    Io { path: String, message: String },
}

impl ManifestError {
    /// Stable snake_case tag of the error.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Yaml { .. } => "yaml",
            Self::MissingTypeMeta(_) => "missing_type_meta",
            Self::UnknownKind { .. } => "unknown_kind",
            Self::Parse { .. } => "parse",
            Self::UnknownField { .. } => "unknown_field",
            Self::Mismatch { .. } => "mismatch",
            Self::Schema { .. } => "schema",
            Self::Io { .. } => "io",
        }
    }
}

/// `apiVersion`, `kind`, namespace and name of one object, for messages and lookups.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectId {
    pub api_version: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectId {
    /// Reads the identity of `doc`; `None` when it is not a Kubernetes object.
    pub fn of(doc: &Value) -> Option<Self> {
        let s = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
        Some(Self {
            api_version: s(doc.get("apiVersion"))?,
            kind: s(doc.get("kind"))?,
            namespace: s(doc.pointer("/metadata/namespace")),
            name: s(doc.pointer("/metadata/name"))?,
        })
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {}/{}", self.kind, ns, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

/// Splits a multi-document YAML stream into JSON values, dropping empty documents (Helm
/// leaves them behind for templates whose `if` is false).
pub fn parse_documents(source_name: &str, text: &str) -> Result<Vec<Value>, ManifestError> {
    let mut docs = Vec::new();
    for (index, de) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value = Value::deserialize(de).map_err(|e| ManifestError::Yaml {
            source_name: source_name.to_owned(),
            index,
            message: e.to_string(),
        })?;
        if !value.is_null() {
            docs.push(value);
        }
    }
    Ok(docs)
}

/// Reads and splits one YAML file.
pub fn read_documents(path: &Path) -> Result<Vec<Value>, ManifestError> {
    let text = std::fs::read_to_string(path).map_err(|e| ManifestError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    parse_documents(&path.display().to_string(), &text)
}

/// Checks one object against its Kubernetes type; GlmDeployments are also validated against
/// the CRD schema and its CEL rules. Returns the object's identity.
pub fn check_object(doc: &Value) -> Result<ObjectId, ManifestError> {
    let id = ObjectId::of(doc).ok_or_else(|| {
        ManifestError::MissingTypeMeta(
            serde_json::to_string(doc)
                .unwrap_or_default()
                .chars()
                .take(120)
                .collect(),
        )
    })?;
    let object = id.to_string();
    match (id.api_version.as_str(), id.kind.as_str()) {
        ("v1", "ServiceAccount") => round_trip::<core::ServiceAccount>(&object, doc)?,
        ("v1", "Service") => round_trip::<core::Service>(&object, doc)?,
        ("v1", "ConfigMap") => round_trip::<core::ConfigMap>(&object, doc)?,
        ("v1", "Secret") => round_trip::<core::Secret>(&object, doc)?,
        ("v1", "Namespace") => round_trip::<core::Namespace>(&object, doc)?,
        ("v1", "PersistentVolumeClaim") => round_trip::<core::PersistentVolumeClaim>(&object, doc)?,
        ("v1", "Pod") => round_trip::<core::Pod>(&object, doc)?,
        ("apps/v1", "Deployment") => round_trip::<apps::Deployment>(&object, doc)?,
        ("batch/v1", "Job") => round_trip::<batch::Job>(&object, doc)?,
        ("policy/v1", "PodDisruptionBudget") => {
            round_trip::<policy::PodDisruptionBudget>(&object, doc)?
        }
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => {
            round_trip::<rbac::ClusterRole>(&object, doc)?
        }
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => {
            round_trip::<rbac::ClusterRoleBinding>(&object, doc)?
        }
        ("rbac.authorization.k8s.io/v1", "Role") => round_trip::<rbac::Role>(&object, doc)?,
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => {
            round_trip::<rbac::RoleBinding>(&object, doc)?
        }
        ("networking.k8s.io/v1", "NetworkPolicy") => {
            round_trip::<networking::NetworkPolicy>(&object, doc)?
        }
        ("coordination.k8s.io/v1", "Lease") => round_trip::<coordination::Lease>(&object, doc)?,
        ("apiextensions.k8s.io/v1", "CustomResourceDefinition") => {
            round_trip::<apiextensions::CustomResourceDefinition>(&object, doc)?
        }
        ("monitoring.coreos.com/v1", "ServiceMonitor") => {
            round_trip::<ServiceMonitor>(&object, doc)?
        }
        ("argoproj.io/v1alpha1", "Application") => round_trip::<ArgoApplication>(&object, doc)?,
        (av, "GlmDeployment") if av == glm_api_version() => {
            // The schema first: its messages name the field, serde's do not.
            crate::validate::validate_glm_deployment(doc).map_err(|message| {
                ManifestError::Schema {
                    object: object.clone(),
                    message,
                }
            })?;
            round_trip::<glm_crds::GlmDeployment>(&object, doc)?;
        }
        (av, k) => {
            return Err(ManifestError::UnknownKind {
                object,
                api_version: av.to_owned(),
                kind: k.to_owned(),
            })
        }
    }
    Ok(id)
}

/// `serving.glm.dev/v1alpha1`.
pub fn glm_api_version() -> String {
    format!("{}/{}", glm_crds::API_GROUP, glm_crds::API_VERSION)
}

/// Checks every object in every document; collects all failures instead of stopping at the
/// first so one run shows everything to fix.
pub fn check_all(docs: &[Value]) -> (Vec<ObjectId>, Vec<ManifestError>) {
    let mut ok = Vec::new();
    let mut errors = Vec::new();
    for doc in docs {
        match check_object(doc) {
            Ok(id) => ok.push(id),
            Err(e) => errors.push(e),
        }
    }
    (ok, errors)
}

fn round_trip<T: DeserializeOwned + Serialize>(
    object: &str,
    doc: &Value,
) -> Result<(), ManifestError> {
    let type_name = std::any::type_name::<T>()
        .rsplit("::")
        .next()
        .unwrap_or("object");
    let mut ignored = Vec::new();
    let typed: T = serde_ignored::deserialize(doc.clone(), |path| {
        ignored.push(json_path(&path));
    })
    .map_err(|e| ManifestError::Parse {
        object: object.to_owned(),
        type_name,
        message: e.to_string(),
    })?;
    // A field the type skipped is unknown to it, whatever its value (the round trip below
    // cannot see unknown fields whose value is an empty map or list).
    // kube's derived resources read apiVersion/kind through the dispatch, not as fields.
    if let Some(path) = ignored
        .into_iter()
        .find(|p| p != ".apiVersion" && p != ".kind")
    {
        return Err(ManifestError::UnknownField {
            object: object.to_owned(),
            type_name,
            path,
        });
    }
    let back = serde_json::to_value(&typed).map_err(|e| ManifestError::Parse {
        object: object.to_owned(),
        type_name,
        message: e.to_string(),
    })?;
    compare(doc, &back, "").map_err(|d| match d {
        Difference::Missing(path) => ManifestError::UnknownField {
            object: object.to_owned(),
            type_name,
            path,
        },
        Difference::Changed {
            path,
            original,
            round_trip,
        } => ManifestError::Mismatch {
            object: object.to_owned(),
            type_name,
            path,
            original,
            round_trip,
        },
    })
}

/// `.spec.containers[0].name` style, like [`compare`] reports paths.
fn json_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", json_path(parent)),
        Path::Map { parent, key } => format!("{}.{key}", json_path(parent)),
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => json_path(parent),
    }
}

/// The first way `original` is not contained in `round_trip`.
#[derive(Debug, PartialEq)]
pub enum Difference {
    /// A field of the original that the type dropped: unknown to it.
    Missing(String),
    /// A value the type changed (wrong type coerced, enum normalised, ...).
    Changed {
        path: String,
        original: String,
        round_trip: String,
    },
}

/// Is every non-null field of `original` present and equal in `round_trip`? Nulls are
/// skipped because `field:` with no value means "unset" to the API server as well. Fields
/// the type adds (defaults) are fine.
pub fn compare(original: &Value, round_trip: &Value, path: &str) -> Result<(), Difference> {
    match (original, round_trip) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, va) in a {
                if va.is_null() {
                    continue;
                }
                let p = format!("{path}.{k}");
                match b.get(k) {
                    Some(vb) => compare(va, vb, &p)?,
                    // An empty map or list the type serialises as absent carries no information.
                    None if is_empty_container(va) => {}
                    None => return Err(Difference::Missing(p)),
                }
            }
            Ok(())
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (va, vb)) in a.iter().zip(b).enumerate() {
                compare(va, vb, &format!("{path}[{i}]"))?;
            }
            Ok(())
        }
        (Value::Number(a), Value::Number(b)) if a.as_f64() == b.as_f64() => Ok(()),
        (a, b) if a == b => Ok(()),
        (a, b) => Err(Difference::Changed {
            path: if path.is_empty() {
                ".".into()
            } else {
                path.into()
            },
            original: a.to_string(),
            round_trip: b.to_string(),
        }),
    }
}

fn is_empty_container(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests;
