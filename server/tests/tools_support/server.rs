//! Starts the real HTTP app on a loopback port with a [`ScriptedModel`] behind the engine.

use std::{path::PathBuf, sync::Arc};

use glm_server::{
    api::{router, ApiConfig, AppState, Lifecycle},
    engine::{EngineConfig, EngineHandle},
    metrics::Metrics,
    validation::Limits,
};
use glm_tokenizer::GlmTokenizer;

use super::scripted::ScriptedModel;

pub const MODEL: &str = "glm-test";
pub const API_KEY: &str = "sk-test-key";

/// The scripted GLM outputs, keyed by a trigger the test puts in its last message.
pub const SCRIPTS: &[(&str, &str)] = &[
    (
        "SCRIPT weather",
        "<think>The user wants the weather, so I call the tool.</think>\n<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>Paris</arg_value>\n<arg_key>days</arg_key>\n<arg_value>3</arg_value>\n</tool_call>",
    ),
    (
        "SCRIPT two-calls",
        "<think>Two lookups.</think>\nChecking both.\n<tool_call>get_weather\n<arg_key>city</arg_key>\n<arg_value>北京 \"centre\"\nline 2</arg_value>\n</tool_call>\n<tool_call>get_time\n<arg_key>tz</arg_key>\n<arg_value>Asia/Shanghai</arg_value>\n</tool_call>",
    ),
    ("SCRIPT no-args", "<think>Time.</think>\n<tool_call>now\n</tool_call>"),
    ("SCRIPT hello", "<think>Just greet.</think>\nHello! I am a GLM test model."),
    ("SCRIPT nothink", "Plain answer without thinking."),
    ("SCRIPT stopseq", "<think>r</think>\nalpha beta END gamma"),
    ("SCRIPT sunny-result", "<think>The tool says sunny.</think>\nIt is sunny in Paris."),
    // GLM-4.7 layout: the prompt ends in `<think>`, so the output starts inside it.
    (
        "SCRIPT g47-call",
        "The user wants the time.</think>Let me check.<tool_call>get_time<arg_key>tz</arg_key><arg_value>UTC</arg_value></tool_call><tool_call>now</tool_call>",
    ),
    ("SCRIPT g47-hello", "A greeting.</think>Hi!"),
];

/// The chat layout (template + tool parser) a test server uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Glm45,
    Glm47,
}

pub struct TestServer {
    pub base: String,
    _dir: tempfile::TempDir,
}

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// A model directory: the fixture tokenizer and the layout's chat template.
fn model_dir(layout: Layout) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let tiny = fixtures().join("glm4moe-tiny");
    for f in [
        "tokenizer.json",
        "tokenizer_config.json",
        "config.json",
        "generation_config.json",
    ] {
        std::fs::copy(tiny.join(f), dir.path().join(f)).unwrap();
    }
    std::fs::copy(
        fixtures().join(match layout {
            Layout::Glm45 => "chat-templates/glm45.jinja",
            Layout::Glm47 => "chat-templates/glm47.jinja",
        }),
        dir.path().join("chat_template.jinja"),
    )
    .unwrap();
    dir
}

/// Starts the app in the GLM-4.5 layout. `auto_tools`: `--enable-auto-tool-choice`.
pub async fn start(auto_tools: bool) -> TestServer {
    start_layout(auto_tools, Layout::Glm45).await
}

/// Starts the app with the layout's template and `--tool-call-parser`.
pub async fn start_layout(auto_tools: bool, layout: Layout) -> TestServer {
    let dir = model_dir(layout);
    let tokenizer = GlmTokenizer::from_dir(dir.path()).unwrap();
    let template = tokenizer.chat_template().unwrap();
    let model = ScriptedModel::new(tokenizer.clone(), SCRIPTS);
    let metrics = Metrics::new(MODEL);
    let engine = EngineHandle::spawn(
        Box::new(model),
        EngineConfig {
            num_blocks: 512,
            block_size: 16,
            max_num_seqs: 8,
            max_num_batched_tokens: 512,
            max_model_len: 4096,
            max_queue: 64,
            enable_prefix_caching: true,
        },
        metrics.clone(),
    )
    .unwrap();
    let lifecycle = Arc::new(Lifecycle::default());
    lifecycle.set_ready(true);
    let state = AppState::new(
        engine,
        tokenizer,
        Some(template),
        metrics,
        ApiConfig {
            served_model_name: MODEL.into(),
            limits: Limits::default(),
            api_keys: glm_server::api::ApiKeys::new(Some(API_KEY), vec![]).unwrap(),
            tool_call_parser: Some(
                match layout {
                    Layout::Glm45 => "glm45",
                    Layout::Glm47 => "glm47",
                }
                .into(),
            ),
            reasoning_parser: Some("glm45".into()),
            enable_auto_tool_choice: auto_tools,
            ..ApiConfig::default()
        },
        lifecycle,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router(state)).await;
    });
    TestServer {
        base: format!("http://{addr}"),
        _dir: dir,
    }
}
