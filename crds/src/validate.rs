//! Client-side validation of an object against a CRD schema, the way the apiserver (with
//! `kubectl apply`'s strict field validation) would: structural checks (types, required,
//! unknown fields, enums, minimums/maximums, lengths, patterns) and the CEL
//! `x-kubernetes-validations` rules, evaluated with `self` bound to the value at each level
//! after schema defaults are applied (no `oldSelf`: creation semantics).
//!
//! Every message starts with the path of the offending field, e.g.
//! `spec.model.repo: should match '^...'`.
//!
//! Enabled by the `validate` feature; the crate's tests and the examples test use it.

mod structural;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{core::cel::Validator, CustomResourceExt};
use serde_json::Value;

use crate::GlmDeployment;

/// Why an object could not be validated at all (as opposed to being invalid).
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("the CRD has no openAPIV3Schema for version {0}")]
    MissingSchema(String),
    #[error("the CRD has no version {0}")]
    UnknownVersion(String),
    #[error("cannot read the CRD: {0}")]
    Parse(String),
}

impl SchemaError {
    /// Stable snake_case tag.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::MissingSchema(_) => "missing_schema",
            Self::UnknownVersion(_) => "unknown_version",
            Self::Parse(_) => "parse",
        }
    }
}

/// The `openAPIV3Schema` of `version` in `crd`, as JSON.
pub fn schema_of(crd: &CustomResourceDefinition, version: &str) -> Result<Value, SchemaError> {
    let v = crd
        .spec
        .versions
        .iter()
        .find(|v| v.name == version)
        .ok_or_else(|| SchemaError::UnknownVersion(version.to_string()))?;
    let schema = v
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .ok_or_else(|| SchemaError::MissingSchema(version.to_string()))?;
    serde_json::to_value(schema).map_err(|e| SchemaError::Parse(e.to_string()))
}

/// Validates `object` against the `openAPIV3Schema` `schema` (structural checks, then CEL).
/// Returns one message per problem, each starting with the field path; empty = valid.
pub fn validate_against_schema(schema: &Value, object: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    structural::check(schema, object, "", &mut errors);
    // CEL rules assume a structurally valid object (types, required fields); evaluating them on
    // a broken one only adds noise, as the apiserver also reports schema errors first.
    if errors.is_empty() {
        if let Err(cel_errors) = Validator::new().validate(schema, object, None) {
            for e in cel_errors.iter() {
                errors.push(format_cel_error(&e.field_path, &e.message));
            }
        }
    }
    errors
}

fn format_cel_error(field_path: &str, message: &str) -> String {
    let path = field_path.trim_start_matches('.');
    if path.is_empty() {
        message.to_string()
    } else {
        format!("{path}: {message}")
    }
}

/// Validates `object` against the CRD given as YAML (e.g. `crds/glmdeployment.yaml`), using the
/// version named in the object's `apiVersion`.
pub fn validate_object(crd_yaml: &str, object: &Value) -> Result<Vec<String>, SchemaError> {
    let crd: CustomResourceDefinition =
        serde_yaml::from_str(crd_yaml).map_err(|e| SchemaError::Parse(e.to_string()))?;
    validate_object_with_crd(&crd, object)
}

/// Validates `object` against `crd`, using the version named in the object's `apiVersion`.
pub fn validate_object_with_crd(
    crd: &CustomResourceDefinition,
    object: &Value,
) -> Result<Vec<String>, SchemaError> {
    let expected_group = &crd.spec.group;
    let api_version = object
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let mut errors = Vec::new();
    let version = match api_version.split_once('/') {
        Some((group, version)) if group == expected_group => version.to_string(),
        _ => {
            errors.push(format!(
                "apiVersion: must be {expected_group}/<version>, got {api_version:?}"
            ));
            return Ok(errors);
        }
    };
    let kind = object
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if kind != crd.spec.names.kind {
        errors.push(format!(
            "kind: must be {}, got {kind:?}",
            crd.spec.names.kind
        ));
    }
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if name.is_empty() {
        errors.push("metadata.name: required".to_string());
    }
    let schema = schema_of(crd, &version)?;
    errors.extend(validate_against_schema(&schema, object));
    Ok(errors)
}

/// Validates `object` against this crate's GlmDeployment CRD.
pub fn validate_glm_deployment(object: &Value) -> Result<Vec<String>, SchemaError> {
    validate_object_with_crd(&GlmDeployment::crd(), object)
}
