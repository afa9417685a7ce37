//! Checkpoint loading: shards + index, MTP layers, and errors that name the tensor and file.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::*;
use glm_model::glm4moe::load_mtp_layer;
use glm_model::load_model;
use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;

/// (dtype, shape, bytes) by tensor name.
type Entry = (Dtype, Vec<usize>, Vec<u8>);
type Tensors = BTreeMap<String, Entry>;

fn read_fixture_tensors() -> Tensors {
    let bytes = std::fs::read(fixture_dir().join("model.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    st.iter()
        .map(|(n, v)| {
            (
                n.to_owned(),
                (v.dtype(), v.shape().to_vec(), v.data().to_vec()),
            )
        })
        .collect()
}

fn write_tensors(path: &Path, t: &Tensors) {
    let views: Vec<(String, TensorView<'_>)> = t
        .iter()
        .map(|(n, (d, s, b))| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    safetensors::serialize_to_file(views, None, path).unwrap();
}

fn load_err(dir: &Path) -> glm_model::ModelError {
    match load_model(dir, &glm_model::LoadOptions::default()) {
        Ok(_) => panic!("loading {} should fail", dir.display()),
        Err(e) => e,
    }
}

/// A copy of the fixture's non-weight files in a temp dir.
fn fixture_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for f in ["config.json", "generation_config.json"] {
        std::fs::copy(fixture_dir().join(f), dir.path().join(f)).unwrap();
    }
    dir
}

#[test]
fn missing_tensor_is_an_error_naming_tensor_and_file() {
    let dir = fixture_copy();
    let mut t = read_fixture_tensors();
    t.remove("model.layers.2.mlp.experts.5.up_proj.weight");
    write_tensors(&dir.path().join("model.safetensors"), &t);
    let e = load_err(dir.path());
    assert_eq!(e.kind(), "tensor");
    let msg = e.to_string();
    assert!(
        msg.contains("model.layers.2.mlp.experts.5.up_proj.weight"),
        "{msg}"
    );
    assert!(
        msg.contains("model.safetensors") && msg.contains("missing"),
        "{msg}"
    );
}

#[test]
fn wrong_shape_is_an_error_naming_tensor_file_and_shapes() {
    let dir = fixture_copy();
    let mut t = read_fixture_tensors();
    let e = t.get_mut("model.layers.0.self_attn.q_norm.weight").unwrap();
    e.1 = vec![24, 2];
    write_tensors(&dir.path().join("model.safetensors"), &t);
    let e = load_err(dir.path());
    assert_eq!(e.kind(), "tensor");
    let msg = e.to_string();
    assert!(
        msg.contains("model.layers.0.self_attn.q_norm.weight"),
        "{msg}"
    );
    assert!(msg.contains("[24, 2]") && msg.contains("[48]"), "{msg}");
    assert!(msg.contains("model.safetensors"), "{msg}");
}

#[test]
fn unsupported_architecture_is_named() {
    let dir = fixture_copy();
    let p = dir.path().join("config.json");
    let text = std::fs::read_to_string(&p)
        .unwrap()
        .replace("Glm4MoeForCausalLM", "MysteryForCausalLM");
    std::fs::write(&p, text).unwrap();
    let e = load_err(dir.path());
    assert_eq!(e.kind(), "unsupported_architecture");
    assert!(e.to_string().contains("MysteryForCausalLM"));
}

#[test]
fn two_shards_with_index_and_mtp_layer_load_and_match_golden() {
    let dir = fixture_copy();
    let mut t = read_fixture_tensors();
    let cfg_path = dir.path().join("config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    let n = cfg["num_hidden_layers"].as_u64().unwrap() as usize;
    let h = cfg["hidden_size"].as_u64().unwrap() as usize;
    cfg["num_nextn_predict_layers"] = 1.into();
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();

    // MTP layer N: a copy of the last decoder layer plus the NextN-specific tensors.
    let last = format!("model.layers.{}.", n - 1);
    let mtp_prefix = format!("model.layers.{n}.");
    let copies: Vec<(String, Entry)> = t
        .iter()
        .filter(|(k, _)| k.starts_with(&last))
        .map(|(k, v)| (format!("{mtp_prefix}{}", &k[last.len()..]), v.clone()))
        .collect();
    let bf16_ones = |len: usize| -> Vec<u8> {
        (0..len)
            .flat_map(|_| half::bf16::from_f32(1.0).to_le_bytes())
            .collect()
    };
    let mut mtp: Tensors = copies.into_iter().collect();
    for name in ["enorm", "hnorm", "shared_head.norm"] {
        mtp.insert(
            format!("{mtp_prefix}{name}.weight"),
            (Dtype::BF16, vec![h], bf16_ones(h)),
        );
    }
    mtp.insert(
        format!("{mtp_prefix}eh_proj.weight"),
        (Dtype::BF16, vec![h, 2 * h], bf16_ones(2 * h * h)),
    );
    mtp.insert(
        format!("{mtp_prefix}shared_head.head.weight"),
        t["lm_head.weight"].clone(),
    );

    let lm_head = t.remove("lm_head.weight").unwrap();
    let mut shard2: Tensors = mtp;
    shard2.insert("lm_head.weight".into(), lm_head);
    let names = [
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
    ];
    write_tensors(&dir.path().join(names[0]), &t);
    write_tensors(&dir.path().join(names[1]), &shard2);
    let mut map = serde_json::Map::new();
    for k in t.keys() {
        map.insert(k.clone(), names[0].into());
    }
    for k in shard2.keys() {
        map.insert(k.clone(), names[1].into());
    }
    let index = serde_json::json!({"metadata": {"total_size": 0}, "weight_map": map});
    std::fs::write(
        dir.path().join("model.safetensors.index.json"),
        index.to_string(),
    )
    .unwrap();

    let mut m = load_model(dir.path(), &glm_model::LoadOptions::default()).unwrap();
    assert_eq!(m.info().num_hidden_layers, n);
    let case = &golden_cases()[0];
    let blocks = (case.input_ids.len() + 4).div_ceil(BLOCK) + 1;
    init(m.as_mut(), blocks);
    let table: Vec<u32> = (0..blocks as u32).collect();
    let (first, _) = greedy(m.as_mut(), &case.input_ids, 1, usize::MAX, &table);
    let d = first
        .iter()
        .zip(&case.first_step_logits)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(d < 1e-3, "sharded checkpoint logits differ by {d}");

    let mtp = load_mtp_layer(dir.path(), 0).unwrap();
    assert_eq!((mtp.eh_proj.in_dim, mtp.eh_proj.out_dim), (2 * h, h));
    assert!(load_mtp_layer(dir.path(), 1).is_err());

    // A tensor missing from a shard names that shard.
    shard2.remove(&format!("{mtp_prefix}enorm.weight"));
    write_tensors(&dir.path().join(names[1]), &shard2);
    let e = load_mtp_layer(dir.path(), 0).unwrap_err();
    assert!(e.to_string().contains("enorm.weight"), "{e}");
}

/// `--check`'s model side: config and backend decided without reading any weights.
#[test]
fn check_reads_the_config_but_no_weights() {
    let dir = fixture_copy(); // config only: no safetensors at all
    let plan =
        glm_model::check_model(dir.path(), &glm_model::LoadOptions::default(), true).unwrap();
    assert_eq!(plan.architecture, "Glm4MoeForCausalLM");
    assert_eq!(plan.backend, glm_model::Backend::Cpu);
    assert_eq!(plan.num_hidden_layers, 3);
    // 3 layers x (K + V) x 2 kv heads x 48 x 4 bytes.
    assert_eq!(plan.kv_bytes_per_token, 3 * 2 * 2 * 48 * 4);
    let gpu = glm_model::LoadOptions {
        device: glm_model::DeviceSpec::Cuda(0),
        ..Default::default()
    };
    // What any build accepts, and what this (CPU-only) build can run.
    assert_eq!(
        glm_model::check_model(dir.path(), &gpu, false)
            .unwrap()
            .backend,
        glm_model::Backend::Cuda
    );
    if !cfg!(feature = "cuda") {
        let e = glm_model::check_model(dir.path(), &gpu, true).unwrap_err();
        assert_eq!(e.kind(), "device", "{e}");
    }
    std::fs::write(
        dir.path().join("config.json"),
        r#"{"architectures": ["Glm4MoeForCausalLM"], "hidden_size": "wide"}"#,
    )
    .unwrap();
    let e = glm_model::check_model(dir.path(), &gpu, false).unwrap_err();
    assert!(e.to_string().contains("hidden_size"), "{e}");
}
