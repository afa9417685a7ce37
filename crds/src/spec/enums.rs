//! Closed value sets of the spec (rendered as schema `enum`s).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Tool-call parser names (`--tool-call-parser`).
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ToolCallParser {
    Glm45,
    Glm47,
    #[default]
    None,
}

impl ToolCallParser {
    /// The flag value, `None` when no parser runs.
    pub fn flag(self) -> Option<&'static str> {
        match self {
            Self::Glm45 => Some("glm45"),
            Self::Glm47 => Some("glm47"),
            Self::None => None,
        }
    }
}

/// Reasoning parser names (`--reasoning-parser`).
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReasoningParser {
    Glm45,
    #[default]
    None,
}

impl ReasoningParser {
    /// The flag value, `None` when no parser runs.
    pub fn flag(self) -> Option<&'static str> {
        match self {
            Self::Glm45 => Some("glm45"),
            Self::None => None,
        }
    }
}

/// Model dtype (`--dtype`).
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    #[default]
    Auto,
    Bfloat16,
    Float16,
    Float32,
    Fp8,
}

impl Dtype {
    /// The flag value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Bfloat16 => "bfloat16",
            Self::Float16 => "float16",
            Self::Float32 => "float32",
            Self::Fp8 => "fp8",
        }
    }
}

/// PVC access mode.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum AccessMode {
    ReadWriteMany,
    #[default]
    ReadWriteOnce,
}

impl AccessMode {
    /// The Kubernetes spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ReadWriteMany => "ReadWriteMany",
            Self::ReadWriteOnce => "ReadWriteOnce",
        }
    }
}
