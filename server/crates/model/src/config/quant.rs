//! `quantization_config`: the FP8 formats the CPU kernels run, everything else refused by
//! name. Two writers matter for GLM: the zai-org FP8 releases (`quant_method: "fp8"`,
//! e4m3 weights with `weight_block_size` 128x128 and `<name>_scale_inv`), and llm-compressor
//! (`quant_method: "compressed-tensors"`, `format: "float-quantized"`, 8-bit float weights
//! with a `weight_scale` per tensor, channel or block). Activation quantization settings
//! are accepted and not applied: activations stay f32, which is at least as exact.

use serde_json::Value;

use super::QuantizationConfig;
use crate::batch::ModelError;

/// How a checkpoint's float8 e4m3 weights are scaled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Fp8Scheme {
    /// `[rows, cols]` of a scale block; `None`: one scale per tensor or per output row.
    pub block: Option<[usize; 2]>,
}

fn err(message: String) -> ModelError {
    ModelError::Config(format!("quantization_config: {message}"))
}

/// A `[rows, cols]` block size from a JSON value, both positive.
fn block_of(v: &Value, field: &str) -> Result<[usize; 2], ModelError> {
    let dims: Vec<usize> = v
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_u64)
                .map(|d| d as usize)
                .collect()
        })
        .unwrap_or_default();
    match dims.as_slice() {
        [r, c] if *r > 0 && *c > 0 => Ok([*r, *c]),
        _ => Err(err(format!(
            "{field} must be two positive integers, got {v}"
        ))),
    }
}

impl QuantizationConfig {
    /// The FP8 scheme this config describes, or an error naming what is not supported.
    pub fn fp8_scheme(&self) -> Result<Fp8Scheme, ModelError> {
        match self.method() {
            "fp8" => self.zai_fp8(),
            "compressed-tensors" => self.compressed_tensors(),
            other => Err(err(format!(
                "quant_method {other:?} is not supported (fp8 with e4m3 weights, or \
                 compressed-tensors float-quantized 8-bit weights)"
            ))),
        }
    }

    fn zai_fp8(&self) -> Result<Fp8Scheme, ModelError> {
        if let Some(fmt) = self.rest.get("fmt") {
            if fmt.as_str() != Some("e4m3") {
                return Err(err(format!(
                    "quant_method \"fp8\" with fmt {fmt} is not supported (e4m3)"
                )));
            }
        }
        let block = match self.rest.get("weight_block_size") {
            None | Some(Value::Null) => None,
            Some(v) => Some(block_of(v, "weight_block_size")?),
        };
        Ok(Fp8Scheme { block })
    }

    fn compressed_tensors(&self) -> Result<Fp8Scheme, ModelError> {
        let format = self
            .rest
            .get("format")
            .and_then(Value::as_str)
            .unwrap_or("");
        if format != "float-quantized" {
            return Err(err(format!(
                "quant_method \"compressed-tensors\" with format {format:?} is not supported \
                 (float-quantized)"
            )));
        }
        let groups = self
            .rest
            .get("config_groups")
            .and_then(Value::as_object)
            .filter(|g| !g.is_empty())
            .ok_or_else(|| err("compressed-tensors without config_groups".into()))?;
        let mut scheme: Option<Fp8Scheme> = None;
        for (name, g) in groups {
            let w = g
                .get("weights")
                .filter(|w| !w.is_null())
                .ok_or_else(|| err(format!("config_groups.{name}.weights is missing")))?;
            let field = |f: &str| w.get(f).cloned().unwrap_or(Value::Null);
            let bits = field("num_bits");
            let kind = field("type");
            if bits.as_u64() != Some(8) || kind.as_str() != Some("float") {
                return Err(err(format!(
                    "config_groups.{name}.weights: {bits}-bit {kind} weights are not supported \
                     (8-bit float)"
                )));
            }
            let this = match field("strategy").as_str() {
                Some("tensor") | Some("channel") => Fp8Scheme { block: None },
                Some("block") => Fp8Scheme {
                    block: Some(block_of(
                        &field("block_structure"),
                        &format!("config_groups.{name}.weights.block_structure"),
                    )?),
                },
                _ => {
                    return Err(err(format!(
                        "config_groups.{name}.weights.strategy {} is not supported (tensor, \
                         channel, block)",
                        field("strategy")
                    )))
                }
            };
            match scheme {
                Some(s) if s != this => {
                    return Err(err(
                        "config_groups use different block sizes; one scheme is supported".into(),
                    ))
                }
                _ => scheme = Some(this),
            }
        }
        scheme.ok_or_else(|| err("compressed-tensors without config_groups".into()))
    }
}
