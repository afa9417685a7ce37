//! A deterministic random Glm4Moe model (about 7M parameters) with the fixture tokenizer
//! and the GLM-4.5 chat template, so demos and tests run with nothing downloaded.
//!
//! The weights come from a fixed-seed SplitMix64 stream (not `rand`'s StdRng, whose stream
//! may change between rand versions), so the same crate version always writes the same
//! bytes.

use std::path::Path;

use half::bf16;
use safetensors::tensor::{Dtype, TensorView};
use serde_json::{json, Value};

use crate::batch::ModelError;

const TOKENIZER_JSON: &[u8] = include_bytes!("../../../fixtures/tokenizer/tokenizer.json");
const TOKENIZER_CONFIG: &[u8] = include_bytes!("../../../fixtures/tokenizer/tokenizer_config.json");
const CHAT_TEMPLATE: &[u8] = include_bytes!("../../../fixtures/chat-templates/glm45.jinja");

const SEED: u64 = 0x5EED_0045;

/// Shape of the demo model.
#[derive(Debug, Clone, Copy)]
struct Shape {
    vocab: usize,
    hidden: usize,
    layers: usize,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    intermediate: usize,
    moe_intermediate: usize,
    experts: usize,
    top_k: usize,
}

const SHAPE: Shape = Shape {
    vocab: 2048,
    hidden: 256,
    layers: 4,
    heads: 4,
    kv_heads: 2,
    head_dim: 64,
    intermediate: 704,
    moe_intermediate: 128,
    experts: 16,
    top_k: 4,
};

/// Writes config.json, generation_config.json, model.safetensors (bf16), tokenizer.json,
/// tokenizer_config.json and chat_template.jinja into `dir` (created if needed).
pub fn write_demo_model(dir: &Path) -> Result<(), ModelError> {
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| ModelError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let eos = eos_ids()?;
    let s = SHAPE;
    let config = json!({
        "architectures": ["Glm4MoeForCausalLM"],
        "model_type": "glm4_moe",
        "attention_bias": true,
        "attention_dropout": 0.0,
        "eos_token_id": eos,
        "pad_token_id": eos[0],
        "first_k_dense_replace": 1,
        "head_dim": s.head_dim,
        "hidden_act": "silu",
        "hidden_size": s.hidden,
        "initializer_range": 0.02,
        "intermediate_size": s.intermediate,
        "max_position_embeddings": 8192,
        "moe_intermediate_size": s.moe_intermediate,
        "n_group": 1,
        "n_routed_experts": s.experts,
        "n_shared_experts": 1,
        "norm_topk_prob": true,
        "num_attention_heads": s.heads,
        "num_experts_per_tok": s.top_k,
        "num_hidden_layers": s.layers,
        "num_key_value_heads": s.kv_heads,
        "num_nextn_predict_layers": 0,
        "partial_rotary_factor": 0.5,
        "rms_norm_eps": 1e-5,
        "rope_scaling": null,
        "rope_theta": 1000000.0,
        "routed_scaling_factor": 2.5,
        "tie_word_embeddings": false,
        "topk_group": 1,
        "torch_dtype": "bfloat16",
        "use_cache": true,
        "use_qk_norm": true,
        "vocab_size": s.vocab
    });
    let generation = json!({"eos_token_id": eos, "pad_token_id": eos[0]});
    let write = |name: &str, bytes: &[u8]| {
        let p = dir.join(name);
        std::fs::write(&p, bytes).map_err(io(&p))
    };
    write("config.json", pretty(&config).as_bytes())?;
    write("generation_config.json", pretty(&generation).as_bytes())?;
    write("tokenizer.json", TOKENIZER_JSON)?;
    write("tokenizer_config.json", tokenizer_config()?.as_bytes())?;
    write("chat_template.jinja", CHAT_TEMPLATE)?;
    write_weights(&dir.join("model.safetensors"))
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}

/// The fixture tokenizer_config.json without its inline `chat_template`, so the GLM-4.5
/// template in chat_template.jinja is the only one.
fn tokenizer_config() -> Result<String, ModelError> {
    let mut v: Value = serde_json::from_slice(TOKENIZER_CONFIG)
        .map_err(|e| ModelError::Config(format!("embedded tokenizer_config.json: {e}")))?;
    if let Some(o) = v.as_object_mut() {
        o.remove("chat_template");
    }
    Ok(pretty(&v))
}

/// Ids of `<|endoftext|>`, `<|user|>` and `<|observation|>` in the embedded tokenizer (the
/// real GLM-4.5 eos set), looked up rather than hard-coded.
fn eos_ids() -> Result<Vec<u32>, ModelError> {
    let v: Value = serde_json::from_slice(TOKENIZER_JSON)
        .map_err(|e| ModelError::Config(format!("embedded tokenizer.json: {e}")))?;
    let added = v
        .get("added_tokens")
        .and_then(Value::as_array)
        .ok_or_else(|| ModelError::Config("embedded tokenizer.json has no added_tokens".into()))?;
    ["<|endoftext|>", "<|user|>", "<|observation|>"]
        .iter()
        .map(|name| {
            added
                .iter()
                .find(|t| t.get("content").and_then(Value::as_str) == Some(name))
                .and_then(|t| t.get("id").and_then(Value::as_u64))
                .map(|id| id as u32)
                .ok_or_else(|| ModelError::Config(format!("embedded tokenizer lacks {name}")))
        })
        .collect()
}

/// SplitMix64 with Box-Muller normals: tiny, fast and stable forever.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f32 {
        let (u1, u2) = (self.uniform(), self.uniform());
        ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
    }
}

/// Every tensor name and shape of the demo model, in a fixed order.
fn tensor_specs(s: &Shape) -> Vec<(String, Vec<usize>)> {
    let (h, hd) = (s.hidden, s.head_dim);
    let mut v = vec![
        ("model.embed_tokens.weight".to_owned(), vec![s.vocab, h]),
        ("model.norm.weight".to_owned(), vec![h]),
        ("lm_head.weight".to_owned(), vec![s.vocab, h]),
    ];
    let mlp = |v: &mut Vec<(String, Vec<usize>)>, p: String, inter: usize| {
        v.push((format!("{p}.gate_proj.weight"), vec![inter, h]));
        v.push((format!("{p}.up_proj.weight"), vec![inter, h]));
        v.push((format!("{p}.down_proj.weight"), vec![h, inter]));
    };
    for l in 0..s.layers {
        let p = format!("model.layers.{l}");
        v.push((format!("{p}.input_layernorm.weight"), vec![h]));
        v.push((format!("{p}.post_attention_layernorm.weight"), vec![h]));
        let a = format!("{p}.self_attn");
        for (name, out) in [
            ("q_proj", s.heads * hd),
            ("k_proj", s.kv_heads * hd),
            ("v_proj", s.kv_heads * hd),
        ] {
            v.push((format!("{a}.{name}.weight"), vec![out, h]));
            v.push((format!("{a}.{name}.bias"), vec![out]));
        }
        v.push((format!("{a}.o_proj.weight"), vec![h, s.heads * hd]));
        v.push((format!("{a}.q_norm.weight"), vec![hd]));
        v.push((format!("{a}.k_norm.weight"), vec![hd]));
        if l == 0 {
            mlp(&mut v, format!("{p}.mlp"), s.intermediate);
        } else {
            v.push((format!("{p}.mlp.gate.weight"), vec![s.experts, h]));
            v.push((
                format!("{p}.mlp.gate.e_score_correction_bias"),
                vec![s.experts],
            ));
            for e in 0..s.experts {
                mlp(&mut v, format!("{p}.mlp.experts.{e}"), s.moe_intermediate);
            }
            mlp(
                &mut v,
                format!("{p}.mlp.shared_experts"),
                s.moe_intermediate,
            );
        }
    }
    v
}

/// Initialisation as the fixtures' make_model.py: well-scaled so logits have real margins.
fn init_value(rng: &mut Rng, name: &str, shape: &[usize]) -> f32 {
    let n = rng.normal();
    let fan_in = *shape.last().unwrap_or(&1) as f32;
    if name.ends_with("norm.weight") || name.contains("layernorm") {
        1.0 + 0.1 * n
    } else if name.ends_with("e_score_correction_bias") || name.ends_with(".bias") {
        0.1 * n
    } else if name.contains("embed_tokens") {
        n
    } else if name == "lm_head.weight" {
        n * 6.0 / fan_in.sqrt()
    } else {
        n / fan_in.sqrt()
    }
}

fn write_weights(path: &Path) -> Result<(), ModelError> {
    let mut rng = Rng(SEED);
    let specs = tensor_specs(&SHAPE);
    let data: Vec<(String, Vec<usize>, Dtype, Vec<u8>)> = specs
        .into_iter()
        .map(|(name, shape)| {
            let n: usize = shape.iter().product();
            // The router correction bias stays f32, as in the released checkpoints.
            let (dtype, bytes) = if name.ends_with("e_score_correction_bias") {
                let b = (0..n)
                    .flat_map(|_| init_value(&mut rng, &name, &shape).to_le_bytes())
                    .collect();
                (Dtype::F32, b)
            } else {
                let b = (0..n)
                    .flat_map(|_| bf16::from_f32(init_value(&mut rng, &name, &shape)).to_le_bytes())
                    .collect();
                (Dtype::BF16, b)
            };
            (name, shape, dtype, bytes)
        })
        .collect();
    let views = data
        .iter()
        .map(|(name, shape, dtype, bytes)| {
            TensorView::new(*dtype, shape.clone(), bytes)
                .map(|v| (name.clone(), v))
                .map_err(|e| ModelError::Tensor {
                    tensor: name.clone(),
                    file: path.display().to_string(),
                    message: e.to_string(),
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let metadata = Some(std::collections::HashMap::from([(
        "format".to_owned(),
        "pt".to_owned(),
    )]));
    safetensors::serialize_to_file(views, metadata, path).map_err(|e| ModelError::Tensor {
        tensor: "(all)".into(),
        file: path.display().to_string(),
        message: e.to_string(),
    })
}

#[cfg(test)]
#[path = "demo/tests.rs"]
mod tests;
