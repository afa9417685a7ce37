//! Helpers shared by the integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use glm_model::{CacheConfig, CausalLm, ForwardBatch, SeqInput};

pub const BLOCK: usize = 16;

/// `$GLM_FIXTURES` (a test binary carried to another machine) or the repo's fixtures.
pub fn fixtures() -> PathBuf {
    std::env::var_os("GLM_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures"))
}

pub fn fixture_dir() -> PathBuf {
    fixtures().join("glm4moe-tiny")
}

pub struct Case {
    pub name: String,
    pub input_ids: Vec<u32>,
    pub first_step_logits: Vec<f32>,
    pub generated_ids: Vec<u32>,
    pub step_top1_margin: Vec<f32>,
}

pub fn golden_cases() -> Vec<Case> {
    golden_cases_in(&fixture_dir())
}

/// The cases of `dir/golden.json`.
pub fn golden_cases_in(dir: &std::path::Path) -> Vec<Case> {
    let text = std::fs::read_to_string(dir.join("golden.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let ids = |v: &serde_json::Value| -> Vec<u32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect()
    };
    let floats = |v: &serde_json::Value| -> Vec<f32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect()
    };
    v["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| Case {
            name: c["name"].as_str().unwrap().to_owned(),
            input_ids: ids(&c["input_ids"]),
            first_step_logits: floats(&c["first_step_logits"]),
            generated_ids: ids(&c["generated_ids"]),
            step_top1_margin: floats(&c["step_top1_margin"]),
        })
        .collect()
}

pub fn init(model: &mut dyn CausalLm, num_blocks: usize) {
    model
        .init_cache(CacheConfig {
            num_blocks,
            block_size: BLOCK,
        })
        .unwrap();
}

pub fn argmax(v: &[f32]) -> u32 {
    glm_model::sampling::argmax(v)
}

/// Greedy generation of one sequence whose blocks are `table`; the prompt is fed in chunks
/// of `chunk` tokens. Returns the first-step logits and the generated tokens.
pub fn greedy(
    model: &mut dyn CausalLm,
    prompt: &[u32],
    steps: usize,
    chunk: usize,
    table: &[u32],
) -> (Vec<f32>, Vec<u32>) {
    let mut cached = 0;
    let mut logits = None;
    for part in prompt.chunks(chunk) {
        let last = cached + part.len() == prompt.len();
        let out = model
            .forward(&ForwardBatch {
                seqs: vec![SeqInput {
                    tokens: part.to_vec(),
                    num_cached: cached,
                    block_table: table.to_vec(),
                    want_logits: last,
                }],
            })
            .unwrap();
        cached += part.len();
        logits = out.into_iter().next().unwrap();
    }
    let first = logits.unwrap();
    let mut tokens = vec![argmax(&first)];
    while tokens.len() < steps {
        let out = model
            .forward(&ForwardBatch {
                seqs: vec![SeqInput {
                    tokens: vec![*tokens.last().unwrap()],
                    num_cached: cached,
                    block_table: table.to_vec(),
                    want_logits: true,
                }],
            })
            .unwrap();
        cached += 1;
        tokens.push(argmax(out[0].as_ref().unwrap()));
    }
    (first, tokens)
}

/// Loads `dir` with `opts` and checks it against the transformers goldens in
/// `dir/golden.json`: first-step logits within `tol`, greedy tokens equal up to the first
/// step whose reference margin is small. Prompts use a reversed block table on purpose.
pub fn check_goldens(label: &str, dir: &std::path::Path, opts: &glm_model::LoadOptions, tol: f32) {
    let mut m = load(dir, opts);
    let cases = golden_cases_in(dir);
    assert_eq!(cases.len(), 6);
    for case in &cases {
        let blocks = (case.input_ids.len() + case.generated_ids.len()).div_ceil(BLOCK) + 1;
        init(m.as_mut(), blocks);
        let table: Vec<u32> = (0..blocks as u32).rev().collect(); // non-contiguous on purpose
        let (first, tokens) = greedy(
            m.as_mut(),
            &case.input_ids,
            case.generated_ids.len(),
            usize::MAX,
            &table,
        );
        let max_diff = first
            .iter()
            .zip(&case.first_step_logits)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        let n = comparable_steps(&case.step_top1_margin);
        println!(
            "{label} {}: max |logit diff| {max_diff:.2e}; {n} comparable greedy steps",
            case.name
        );
        assert!(
            max_diff < tol,
            "{label} {}: first-step logits differ by {max_diff}",
            case.name
        );
        assert!(n >= 1);
        assert_eq!(
            tokens[..n],
            case.generated_ids[..n],
            "{label} {}: greedy tokens differ within the first {n} steps",
            case.name
        );
    }
}

/// Number of leading steps that must match exactly: up to the first step whose reference
/// top-1 margin is below 0.02 (float rounding may flip the argmax there).
pub fn comparable_steps(margins: &[f32]) -> usize {
    margins
        .iter()
        .position(|&m| m < 0.02)
        .unwrap_or(margins.len())
}

/// The backends every golden runs through: the fast `cpu` kernels, the device-generic
/// `reference` tensor path on candle's CPU device, and, when `GLM_TEST_DEVICE` names one
/// (e.g. `cuda:0`), the `cuda` backend there, with weights as `GLM_TEST_DTYPE` (default auto:
/// bf16). Each entry: (label, options, logit tolerance against transformers).
pub fn backends() -> Vec<(String, glm_model::LoadOptions, f32)> {
    use glm_model::{Backend, BackendChoice, DeviceSpec, LoadOptions, WeightDtype};
    let mut v = vec![
        ("cpu".to_owned(), LoadOptions::default(), 1e-3),
        (
            "reference".to_owned(),
            LoadOptions {
                backend: BackendChoice::Fixed(Backend::Reference),
                ..LoadOptions::default()
            },
            1e-3,
        ),
    ];
    match std::env::var("GLM_TEST_DEVICE") {
        Ok(d) => {
            let device: DeviceSpec = d.parse().unwrap();
            let dtype: WeightDtype = std::env::var("GLM_TEST_DTYPE")
                .unwrap_or_else(|_| "auto".into())
                .parse()
                .unwrap();
            // bf16 products (the GPU default) round activations to 8 bits of mantissa.
            let tol = if dtype == WeightDtype::F32 {
                1e-3
            } else {
                6e-2
            };
            v.push((
                format!("{d} {dtype:?}"),
                LoadOptions {
                    backend: BackendChoice::Auto,
                    device,
                    dtype,
                },
                tol,
            ));
        }
        Err(_) => println!("GLM_TEST_DEVICE unset: the device backend is skipped"),
    }
    v
}

pub fn load(dir: &std::path::Path, opts: &glm_model::LoadOptions) -> Box<dyn CausalLm> {
    glm_model::load_model(dir, opts).unwrap()
}
