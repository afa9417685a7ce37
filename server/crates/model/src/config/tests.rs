use super::*;
use serde_json::json;

fn fixture_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/glm4moe-tiny")
}

#[test]
fn parses_fixture_config_with_all_fields() {
    let c = Glm4MoeConfig::from_dir(&fixture_dir()).unwrap();
    assert_eq!(c.architecture, GLM4_MOE);
    assert_eq!((c.hidden_size, c.head_dim, c.rotary_dim()), (128, 48, 24));
    assert_eq!((c.num_attention_heads, c.num_key_value_heads), (4, 2));
    assert_eq!((c.n_routed_experts, c.num_experts_per_tok), (8, 2));
    assert_eq!(
        (c.n_group, c.topk_group, c.first_k_dense_replace),
        (2, 1, 1)
    );
    assert!(c.use_qk_norm && c.attention_bias && c.norm_topk_prob && !c.tie_word_embeddings);
    assert_eq!(c.routed_scaling_factor, 2.5);
    assert_eq!(c.rope_theta, 1_000_000.0);
    assert_eq!(c.eos_token_ids, vec![2000, 2007, 2009]);
    assert_eq!(c.pad_token_id, Some(2000));
    assert!(!c.is_moe_layer(0) && c.is_moe_layer(1));
}

fn minimal() -> Value {
    json!({
        "architectures": ["Glm4MoeForCausalLM"],
        "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
        "vocab_size": 100, "num_key_value_heads": 2, "n_routed_experts": 4,
        "num_experts_per_tok": 2
    })
}

#[test]
fn absent_fields_take_hf_defaults() {
    let c = Glm4MoeConfig::from_json(&minimal()).unwrap();
    assert_eq!(c.head_dim, 16);
    assert_eq!(c.partial_rotary_factor, 0.5);
    assert_eq!(c.rope_theta, 10000.0);
    assert_eq!(c.rms_norm_eps, 1e-5);
    assert_eq!(c.first_k_dense_replace, 1);
    assert_eq!((c.n_group, c.topk_group, c.n_shared_experts), (1, 1, 1));
    assert_eq!(c.routed_scaling_factor, 1.0);
    assert!(c.norm_topk_prob && !c.use_qk_norm && !c.attention_bias);
    assert_eq!(c.num_nextn_predict_layers, 0);
    assert!(c.eos_token_ids.is_empty());
}

#[test]
fn rope_parameters_style_is_read() {
    let mut v = minimal();
    v["rope_parameters"] =
        json!({"rope_type": "default", "rope_theta": 5e5, "partial_rotary_factor": 0.25});
    let c = Glm4MoeConfig::from_json(&v).unwrap();
    assert_eq!(
        (c.rope_theta, c.partial_rotary_factor, c.rotary_dim()),
        (5e5, 0.25, 4)
    );
}

#[test]
fn errors_name_the_problem() {
    type Edit = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(Edit, &str, &str)> = vec![
        (
            Box::new(|v| v["architectures"] = json!(["LlamaForCausalLM"])),
            "unsupported_architecture",
            "LlamaForCausalLM",
        ),
        (
            Box::new(|v| {
                v.as_object_mut().unwrap().remove("architectures");
            }),
            "config",
            "architectures",
        ),
        (
            Box::new(|v| {
                v.as_object_mut().unwrap().remove("hidden_size");
            }),
            "config",
            "hidden_size",
        ),
        (
            Box::new(|v| v["head_dim"] = json!("x")),
            "config",
            "head_dim",
        ),
        (
            Box::new(|v| v["use_qk_norm"] = json!(1)),
            "config",
            "use_qk_norm",
        ),
        (
            Box::new(|v| v["num_key_value_heads"] = json!(3)),
            "config",
            "num_key_value_heads",
        ),
        (Box::new(|v| v["n_group"] = json!(3)), "config", "n_group"),
        (
            Box::new(|v| v["hidden_act"] = json!("gelu")),
            "config",
            "gelu",
        ),
        (
            Box::new(|v| v["rope_scaling"] = json!({"rope_type": "yarn", "factor": 4.0})),
            "config",
            "yarn",
        ),
        (
            Box::new(|v| v["eos_token_id"] = json!([-1])),
            "config",
            "eos_token_id",
        ),
    ];
    for (edit, kind, needle) in cases {
        let mut v = minimal();
        edit(&mut v);
        let e = Glm4MoeConfig::from_json(&v).unwrap_err();
        assert_eq!(e.kind(), kind, "{e}");
        assert!(e.to_string().contains(needle), "{e} should name {needle}");
    }
}

#[test]
fn generation_config_eos_ids_are_merged() {
    let dir = tempfile::tempdir().unwrap();
    let mut v = minimal();
    v["eos_token_id"] = json!(5);
    std::fs::write(dir.path().join("config.json"), v.to_string()).unwrap();
    std::fs::write(
        dir.path().join("generation_config.json"),
        json!({"eos_token_id": [5, 7]}).to_string(),
    )
    .unwrap();
    let c = Glm4MoeConfig::from_dir(dir.path()).unwrap();
    assert_eq!(c.eos_token_ids, vec![5, 7]);
}

#[test]
fn fp8_quantization_configs_are_read() {
    let mut v = minimal();
    let scheme = |v: &serde_json::Value| Glm4MoeConfig::from_json(v).map(|c| c.fp8);
    v["quantization_config"] = json!({"quant_method": "fp8", "fmt": "e4m3",
        "activation_scheme": "dynamic", "weight_block_size": [128, 128]});
    assert_eq!(
        scheme(&v).unwrap(),
        Some(Fp8Scheme {
            block: Some([128, 128])
        })
    );
    v["quantization_config"] = json!({"quant_method": "fp8"});
    assert_eq!(scheme(&v).unwrap(), Some(Fp8Scheme { block: None }));
    let ct = |strategy: &str, block: serde_json::Value| {
        json!({"quant_method": "compressed-tensors", "format": "float-quantized",
            "config_groups": {"group_0": {"targets": ["Linear"], "weights": {"num_bits": 8,
            "type": "float", "strategy": strategy, "block_structure": block},
            "input_activations": {"num_bits": 8, "type": "float", "dynamic": true}}},
            "ignore": ["lm_head"]})
    };
    v["quantization_config"] = ct("channel", json!(null));
    assert_eq!(scheme(&v).unwrap(), Some(Fp8Scheme { block: None }));
    v["quantization_config"] = ct("block", json!([128, 64]));
    assert_eq!(
        scheme(&v).unwrap(),
        Some(Fp8Scheme {
            block: Some([128, 64])
        })
    );
    assert_eq!(scheme(&minimal()).unwrap(), None);
}

#[test]
fn other_quantization_configs_are_refused_naming_the_method() {
    let mut v = minimal();
    let refused = |q: serde_json::Value, words: &[&str]| {
        let mut v = minimal();
        v["quantization_config"] = q;
        let e = Glm4MoeConfig::from_json(&v).unwrap_err();
        assert_eq!(e.kind(), "config");
        let msg = e.to_string();
        assert!(msg.contains("quantization_config"), "{msg}");
        for w in words {
            assert!(msg.contains(w), "{w} not in {msg}");
        }
    };
    refused(json!({"quant_method": "gptq", "bits": 4}), &["gptq"]);
    refused(json!({"quant_method": "awq"}), &["awq"]);
    refused(json!({"quant_method": "fp8", "fmt": "e5m2"}), &["e5m2"]);
    refused(
        json!({"quant_method": "fp8", "weight_block_size": [128]}),
        &["weight_block_size"],
    );
    refused(
        json!({"quant_method": "compressed-tensors", "format": "pack-quantized"}),
        &["compressed-tensors", "pack-quantized"],
    );
    refused(
        json!({"quant_method": "compressed-tensors", "format": "float-quantized",
            "config_groups": {"g": {"weights": {"num_bits": 4, "type": "float",
            "strategy": "group"}}}}),
        &["config_groups.g.weights", "4-bit"],
    );
    refused(
        json!({"quant_method": "compressed-tensors", "format": "float-quantized",
            "config_groups": {"g": {"weights": {"num_bits": 8, "type": "float",
            "strategy": "group"}}}}),
        &["strategy", "group"],
    );
    // The section is parsed: a malformed one names its field.
    v["quantization_config"] = json!({"quant_method": 8});
    let e = Glm4MoeConfig::from_json(&v).unwrap_err();
    assert!(e.to_string().contains("quant_method"), "{e}");
}
