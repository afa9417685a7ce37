//! The subset of kustomize that `examples/gitops` uses, so the examples test sees exactly the
//! objects Argo CD would apply without needing kubectl. Anything outside the subset is an
//! error, never silently ignored; `tests/examples.rs` compares the result with
//! `kubectl kustomize` whenever kubectl is available.
//!
//! Supported `kustomization.yaml` fields: `resources` (files and directories with their own
//! kustomization), `namespace`, `labels` (without selectors or templates),
//! `commonAnnotations`, and `patches` (strategic-merge patches, which for custom resources
//! behave as JSON merge patches, or JSON 6902 operation lists), each with an optional
//! `target`. The transformers run in kustomize's order: patches, namespace, labels,
//! annotations.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use crate::manifest;

/// Why a kustomization could not be built.
#[derive(Debug, thiserror::Error)]
pub enum KustomizeError {
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    #[error("{path}: not a kustomization this subset understands: {message}")]
    Unsupported { path: String, message: String },
    #[error("{path}: patch {patch}: {message}")]
    Patch {
        path: String,
        patch: String,
        message: String,
    },
    #[error(transparent)]
    Manifest(#[from] manifest::ManifestError),
}

impl KustomizeError {
    /// Stable snake_case tag of the error.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Io { .. } => "io",
            Self::Unsupported { .. } => "unsupported",
            Self::Patch { .. } => "patch",
            Self::Manifest(e) => e.kind(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Kustomization {
    #[serde(default)]
    api_version: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    resources: Vec<String>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    labels: Vec<LabelSet>,
    #[serde(default)]
    common_annotations: BTreeMap<String, String>,
    #[serde(default)]
    patches: Vec<PatchEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct LabelSet {
    pairs: BTreeMap<String, String>,
    #[serde(default)]
    include_selectors: bool,
    #[serde(default)]
    include_templates: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchEntry {
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    patch: Option<String>,
    #[serde(default)]
    target: Option<Target>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Target {
    #[serde(default)]
    group: Option<String>,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
}

/// Kinds the namespace transformer leaves alone.
const CLUSTER_SCOPED: &[&str] = &[
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "PersistentVolume",
    "StorageClass",
    "PriorityClass",
];

/// Builds the kustomization in `dir` (like `kubectl kustomize dir`).
pub fn build(dir: &Path) -> Result<Vec<Value>, KustomizeError> {
    let file = dir.join("kustomization.yaml");
    let text = std::fs::read_to_string(&file).map_err(|e| io_err(&file, e))?;
    let k: Kustomization = serde_yaml::from_str(&text).map_err(|e| unsupported(&file, e))?;
    if let Some(kind) = &k.kind {
        if kind != "Kustomization" {
            return Err(unsupported(&file, format!("kind {kind}")));
        }
    }
    if let Some(av) = &k.api_version {
        if !av.starts_with("kustomize.config.k8s.io/") {
            return Err(unsupported(&file, format!("apiVersion {av}")));
        }
    }

    let mut objects = Vec::new();
    for r in &k.resources {
        let p = dir.join(r);
        if p.is_dir() {
            objects.extend(build(&p)?);
        } else {
            objects.extend(manifest::read_documents(&p)?);
        }
    }

    for entry in &k.patches {
        apply_patch_entry(dir, &file, entry, &mut objects)?;
    }
    if let Some(ns) = &k.namespace {
        for o in &mut objects {
            set_namespace(&file, o, ns)?;
        }
    }
    for set in &k.labels {
        if set.include_selectors || set.include_templates {
            return Err(unsupported(
                &file,
                "labels with includeSelectors or includeTemplates",
            ));
        }
        for o in &mut objects {
            insert_map(o, "/metadata", "labels", &set.pairs);
        }
    }
    if !k.common_annotations.is_empty() {
        for o in &mut objects {
            insert_map(o, "/metadata", "annotations", &k.common_annotations);
        }
    }
    Ok(objects)
}

fn apply_patch_entry(
    dir: &Path,
    file: &Path,
    entry: &PatchEntry,
    objects: &mut [Value],
) -> Result<(), KustomizeError> {
    let (name, text) = match (&entry.path, &entry.patch) {
        (Some(p), None) => {
            let full = dir.join(p);
            let text = std::fs::read_to_string(&full).map_err(|e| io_err(&full, e))?;
            (p.clone(), text)
        }
        (None, Some(inline)) => ("(inline)".to_owned(), inline.clone()),
        _ => {
            return Err(unsupported(
                file,
                "a patch needs exactly one of path and patch",
            ))
        }
    };
    let patch_err = |message: String| KustomizeError::Patch {
        path: file.display().to_string(),
        patch: name.clone(),
        message,
    };
    let patch: Value = serde_yaml::from_str(&text).map_err(|e| patch_err(e.to_string()))?;

    let (target, ops) = match &patch {
        // JSON 6902: a list of operations; it needs a target.
        Value::Array(ops) => {
            let t = entry
                .target
                .as_ref()
                .ok_or_else(|| patch_err("a JSON 6902 patch needs a target".into()))?;
            (clone_target(t), Some(ops))
        }
        // Strategic merge: the patch names its target unless `target` does.
        Value::Object(_) => {
            let t = match &entry.target {
                Some(t) => clone_target(t),
                None => {
                    let id = manifest::ObjectId::of(&patch).ok_or_else(|| {
                        patch_err(
                            "a merge patch without target needs apiVersion, kind and metadata.name"
                                .into(),
                        )
                    })?;
                    let (group, version) = split_api_version(&id.api_version);
                    Target {
                        group: Some(group.to_owned()),
                        version: Some(version.to_owned()),
                        kind: Some(id.kind),
                        name: Some(id.name),
                        namespace: id.namespace,
                    }
                }
            };
            (t, None)
        }
        _ => return Err(patch_err("a patch is a map or a list of operations".into())),
    };

    let mut matched = 0;
    for o in objects.iter_mut().filter(|o| matches(&target, o)) {
        matched += 1;
        match ops {
            Some(ops) => json6902(o, ops).map_err(&patch_err)?,
            None => merge_patch(o, &strip_identity(&patch)),
        }
    }
    if matched == 0 {
        return Err(patch_err("matches no resource".into()));
    }
    Ok(())
}

fn clone_target(t: &Target) -> Target {
    Target {
        group: t.group.clone(),
        version: t.version.clone(),
        kind: t.kind.clone(),
        name: t.name.clone(),
        namespace: t.namespace.clone(),
    }
}

fn split_api_version(av: &str) -> (&str, &str) {
    av.rsplit_once('/').unwrap_or(("", av))
}

fn matches(t: &Target, o: &Value) -> bool {
    let Some(id) = manifest::ObjectId::of(o) else {
        return false;
    };
    let (group, version) = split_api_version(&id.api_version);
    t.group.as_deref().is_none_or(|g| g == group)
        && t.version.as_deref().is_none_or(|v| v == version)
        && t.kind.as_deref().is_none_or(|k| k == id.kind)
        && t.name.as_deref().is_none_or(|n| n == id.name)
        && t.namespace
            .as_deref()
            .is_none_or(|ns| Some(ns) == id.namespace.as_deref())
}

/// A merge patch must not rename or retype its target: drop the identity fields.
fn strip_identity(patch: &Value) -> Value {
    let mut p = patch.clone();
    if let Some(m) = p.as_object_mut() {
        m.remove("apiVersion");
        m.remove("kind");
        if let Some(meta) = m.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("name");
            meta.remove("namespace");
        }
    }
    p
}

/// RFC 7386 JSON merge patch: maps merge, `null` deletes, everything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(serde_json::Map::new());
    }
    if let Value::Object(t) = target {
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

/// RFC 6902 `add`, `replace` and `remove` (the operations the examples need).
pub fn json6902(target: &mut Value, ops: &[Value]) -> Result<(), String> {
    for op in ops {
        let kind = op.get("op").and_then(Value::as_str).unwrap_or_default();
        let path = op
            .get("path")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("operation without path: {op}"))?;
        let (parent, last) = path
            .rsplit_once('/')
            .ok_or_else(|| format!("bad path {path}"))?;
        let last = last.replace("~1", "/").replace("~0", "~");
        let container = target
            .pointer_mut(parent)
            .ok_or_else(|| format!("{path}: parent does not exist"))?;
        match (kind, container) {
            ("add" | "replace", Value::Object(m)) => {
                let v = op
                    .get("value")
                    .ok_or_else(|| format!("{kind} {path} without value"))?;
                if kind == "replace" && !m.contains_key(&last) {
                    return Err(format!("replace {path}: no such field"));
                }
                m.insert(last, v.clone());
            }
            ("add", Value::Array(a)) => {
                let v = op
                    .get("value")
                    .ok_or_else(|| format!("add {path} without value"))?;
                if last == "-" {
                    a.push(v.clone());
                } else {
                    let i: usize = last.parse().map_err(|_| format!("bad index in {path}"))?;
                    if i > a.len() {
                        return Err(format!("add {path}: index out of range"));
                    }
                    a.insert(i, v.clone());
                }
            }
            ("replace", Value::Array(a)) => {
                let v = op
                    .get("value")
                    .ok_or_else(|| format!("replace {path} without value"))?;
                let i: usize = last.parse().map_err(|_| format!("bad index in {path}"))?;
                let slot = a
                    .get_mut(i)
                    .ok_or_else(|| format!("replace {path}: index out of range"))?;
                *slot = v.clone();
            }
            ("remove", Value::Object(m)) => {
                m.remove(&last)
                    .ok_or_else(|| format!("remove {path}: no such field"))?;
            }
            ("remove", Value::Array(a)) => {
                let i: usize = last.parse().map_err(|_| format!("bad index in {path}"))?;
                if i >= a.len() {
                    return Err(format!("remove {path}: index out of range"));
                }
                a.remove(i);
            }
            (other, _) => return Err(format!("unsupported operation {other:?} at {path}")),
        }
    }
    Ok(())
}

fn set_namespace(file: &Path, o: &mut Value, ns: &str) -> Result<(), KustomizeError> {
    let kind = o.get("kind").and_then(Value::as_str).unwrap_or_default();
    if CLUSTER_SCOPED.contains(&kind) {
        return Ok(());
    }
    if kind == "RoleBinding" {
        // kustomize also rewrites ServiceAccount subjects; this subset does not.
        return Err(unsupported(file, "namespace with a RoleBinding"));
    }
    insert_map(
        o,
        "",
        "metadata",
        &BTreeMap::from([("namespace".to_owned(), ns.to_owned())]),
    );
    Ok(())
}

/// Adds `pairs` to the map at `<parent>/<key>`, creating it when absent.
fn insert_map(o: &mut Value, parent: &str, key: &str, pairs: &BTreeMap<String, String>) {
    let Some(Value::Object(p)) = o.pointer_mut(parent) else {
        return;
    };
    let entry = p
        .entry(key.to_owned())
        .or_insert_with(|| Value::Object(serde_json::Map::new()));
    if !entry.is_object() {
        *entry = Value::Object(serde_json::Map::new());
    }
    if let Value::Object(m) = entry {
        for (k, v) in pairs {
            m.insert(k.clone(), Value::String(v.clone()));
        }
    }
}

/// Every directory under `root` (itself included) that holds a kustomization.yaml.
pub fn find_kustomizations(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        if d.join("kustomization.yaml").is_file() {
            out.push(d.clone());
        }
        if let Ok(rd) = std::fs::read_dir(&d) {
            for e in rd.flatten() {
                if e.path().is_dir() {
                    stack.push(e.path());
                }
            }
        }
    }
    out.sort();
    out
}

fn io_err(path: &Path, e: std::io::Error) -> KustomizeError {
    KustomizeError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

fn unsupported(path: &Path, e: impl ToString) -> KustomizeError {
    KustomizeError::Unsupported {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

#[cfg(test)]
mod tests;
