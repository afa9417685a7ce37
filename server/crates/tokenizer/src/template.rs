//! [`ChatTemplate`]: the model's own Jinja chat template rendered with minijinja exactly as
//! transformers' `apply_chat_template` renders it with Python Jinja2.
//!
//! What transformers does and this module reproduces:
//! - environment: `trim_blocks`, `lstrip_blocks`, loop controls, no auto-escaping;
//! - globals `raise_exception`, `strftime_now`, `namespace`; Python string/dict methods
//!   (`.strip()`, `.split()`, `.items()`, ...) through minijinja-contrib's pycompat;
//! - its own `tojson` (`json.dumps` with `ensure_ascii=False`, `", "`/`": "`);
//! - variables `messages`, `tools` (None when absent), `documents`, `add_generation_prompt`,
//!   the special-token strings and every chat-template kwarg at top level;
//! - messages are preprocessed: top-level null keys dropped, reasoning aliases unified.

mod pyjson;
mod strftime;

use std::path::Path;

use minijinja::value::{Kwargs, Serde, Value as JinjaValue, ValueKind};
use minijinja::{AutoEscape, Environment, Error as JinjaError, ErrorKind, State};
use serde_json::{Map, Value};

use crate::config::SpecialTokens;
use crate::error::{read_json, read_to_string, TokenizerError};

pub use pyjson::{dumps as python_json_dumps, float_repr as python_float_repr, DumpOptions};
pub use strftime::CivilTime;

/// The name transformers gives a lone template, and the one it picks by default from a list.
pub const DEFAULT_TEMPLATE_NAME: &str = "default";
/// The named template transformers picks when tools are passed and the model ships one.
pub const TOOL_USE_TEMPLATE_NAME: &str = "tool_use";

/// A compiled chat template (or set of named templates) plus the special-token variables.
/// `Send + Sync` and cheap enough to render concurrently from many requests.
#[derive(Debug, Clone)]
pub struct ChatTemplate {
    env: Environment<'static>,
    names: Vec<String>,
    special: SpecialTokens,
}

/// Marks an error raised by the template's `raise_exception(...)` so it can be told apart
/// from engine errors after minijinja wraps it.
#[derive(Debug)]
struct RaisedByTemplate(String);

impl std::fmt::Display for RaisedByTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RaisedByTemplate {}

impl ChatTemplate {
    /// Loads the template shipped in a model directory, as transformers does:
    /// `chat_template.jinja` wins over `tokenizer_config.json` `chat_template` (a string, or a
    /// list of `{name, template}`); `additional_chat_templates/NAME.jinja` add named ones.
    /// Special-token variables come from `tokenizer_config.json`.
    pub fn from_dir(dir: &Path) -> Result<Self, TokenizerError> {
        let config_path = dir.join("tokenizer_config.json");
        let config = if config_path.is_file() {
            Some(read_json(&config_path)?)
        } else {
            None
        };
        let special = match &config {
            Some(c) => SpecialTokens::from_tokenizer_config(c, &config_path)?,
            None => SpecialTokens::default(),
        };
        let mut templates: Vec<(String, String)> = Vec::new();
        if let Some(value) = config.as_ref().and_then(|c| c.get("chat_template")) {
            templates = templates_from_config(value, &config_path)?;
        }
        let jinja_path = dir.join("chat_template.jinja");
        if jinja_path.is_file() {
            let source = read_to_string(&jinja_path)?;
            templates.retain(|(name, _)| name != DEFAULT_TEMPLATE_NAME);
            templates.insert(0, (DEFAULT_TEMPLATE_NAME.to_string(), source));
        }
        let extra_dir = dir.join("additional_chat_templates");
        if extra_dir.is_dir() {
            let entries = std::fs::read_dir(&extra_dir).map_err(|source| TokenizerError::Io {
                path: extra_dir.clone(),
                source,
            })?;
            let mut extra = Vec::new();
            for entry in entries {
                let entry = entry.map_err(|source| TokenizerError::Io {
                    path: extra_dir.clone(),
                    source,
                })?;
                let path = entry.path();
                if path.extension().and_then(|e| e.to_str()) == Some("jinja") {
                    if let Some(stem) = path.file_stem().and_then(|s| s.to_str()) {
                        extra.push((stem.to_string(), read_to_string(&path)?));
                    }
                }
            }
            extra.sort();
            for (name, source) in extra {
                templates.retain(|(n, _)| *n != name);
                templates.push((name, source));
            }
        }
        if templates.is_empty() {
            return Err(TokenizerError::TemplateMissing(dir.to_path_buf()));
        }
        Self::from_named(templates, special)
    }

    /// Loads a template file given explicitly (`--chat-template PATH`), with the special
    /// tokens of the model.
    pub fn from_file(path: &Path, special: SpecialTokens) -> Result<Self, TokenizerError> {
        let source = read_to_string(path)?;
        Self::from_source(&source, special)
    }

    /// Compiles one template under the default name.
    pub fn from_source(source: &str, special: SpecialTokens) -> Result<Self, TokenizerError> {
        Self::from_named(
            vec![(DEFAULT_TEMPLATE_NAME.to_string(), source.to_string())],
            special,
        )
    }

    /// Compiles several named templates (the first is used when no name matches).
    pub fn from_named(
        templates: Vec<(String, String)>,
        special: SpecialTokens,
    ) -> Result<Self, TokenizerError> {
        let mut env = new_environment()?;
        let mut names = Vec::with_capacity(templates.len());
        for (name, source) in templates {
            env.add_template_owned(name.clone(), source).map_err(|e| {
                TokenizerError::TemplateSyntax {
                    name: name.clone(),
                    message: describe(&e),
                }
            })?;
            names.push(name);
        }
        if names.is_empty() {
            return Err(TokenizerError::InvalidInput(
                "no chat templates given".to_string(),
            ));
        }
        Ok(ChatTemplate {
            env,
            names,
            special,
        })
    }

    /// Names of the available templates, the default first.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The special-token variables passed to the template.
    pub fn special_tokens(&self) -> &SpecialTokens {
        &self.special
    }

    /// Renders a conversation as transformers'
    /// `apply_chat_template(messages, tools=tools, add_generation_prompt=..., tokenize=False,
    /// **kwargs)` does, picking the template as transformers does (`tool_use` when tools are
    /// given and it exists, else `default`).
    ///
    /// - `messages`: a JSON list of message objects (OpenAI shape);
    /// - `tools`: a JSON list of tool objects, or `None` (the template sees `None`);
    /// - `kwargs`: chat-template kwargs (`enable_thinking`, `clear_thinking`, ...), top level.
    pub fn render(
        &self,
        messages: &Value,
        tools: Option<&Value>,
        add_generation_prompt: bool,
        kwargs: &Map<String, Value>,
    ) -> Result<String, TokenizerError> {
        self.render_named(None, messages, tools, add_generation_prompt, kwargs)
    }

    /// [`render`](Self::render) with an explicit template name (`None`: automatic choice).
    pub fn render_named(
        &self,
        name: Option<&str>,
        messages: &Value,
        tools: Option<&Value>,
        add_generation_prompt: bool,
        kwargs: &Map<String, Value>,
    ) -> Result<String, TokenizerError> {
        let name = self.pick(name, tools.is_some())?;
        let _span = tracing::debug_span!("chat_template_render", template = name).entered();
        let messages = preprocess_messages(messages)?;
        let mut ctx = self.special.template_variables();
        ctx.insert("messages".into(), messages);
        ctx.insert("tools".into(), tools.cloned().unwrap_or(Value::Null));
        ctx.insert("documents".into(), Value::Null);
        ctx.insert(
            "add_generation_prompt".into(),
            Value::Bool(add_generation_prompt),
        );
        for (key, value) in kwargs {
            ctx.insert(key.clone(), value.clone());
        }
        let template = self
            .env
            .get_template(name)
            .map_err(|e| TokenizerError::TemplateRender {
                message: describe(&e),
            })?;
        template
            .render(JinjaValue::from(Serde(&ctx)))
            .map_err(render_error)
    }

    fn pick<'a>(
        &'a self,
        name: Option<&'a str>,
        has_tools: bool,
    ) -> Result<&'a str, TokenizerError> {
        if let Some(name) = name {
            return match self.names.iter().find(|n| *n == name) {
                Some(n) => Ok(n),
                None => Err(TokenizerError::TemplateNotFound {
                    name: name.to_string(),
                    available: self.names.join(", "),
                }),
            };
        }
        if has_tools {
            if let Some(n) = self.names.iter().find(|n| *n == TOOL_USE_TEMPLATE_NAME) {
                return Ok(n);
            }
        }
        let default = self
            .names
            .iter()
            .find(|n| *n == DEFAULT_TEMPLATE_NAME)
            .or_else(|| self.names.first());
        default
            .map(String::as_str)
            .ok_or_else(|| TokenizerError::TemplateNotFound {
                name: DEFAULT_TEMPLATE_NAME.to_string(),
                available: String::new(),
            })
    }
}

fn templates_from_config(
    value: &Value,
    path: &Path,
) -> Result<Vec<(String, String)>, TokenizerError> {
    let bad = |reason: &str| TokenizerError::Config {
        path: path.to_path_buf(),
        field: "chat_template".to_string(),
        reason: reason.to_string(),
    };
    match value {
        Value::Null => Ok(Vec::new()),
        Value::String(s) => Ok(vec![(DEFAULT_TEMPLATE_NAME.to_string(), s.clone())]),
        Value::Array(items) => items
            .iter()
            .map(|item| {
                let name = item.get("name").and_then(Value::as_str);
                let template = item.get("template").and_then(Value::as_str);
                match (name, template) {
                    (Some(n), Some(t)) => Ok((n.to_string(), t.to_string())),
                    _ => Err(bad("list entries need string `name` and `template`")),
                }
            })
            .collect(),
        _ => Err(bad("expected a string or a list of {name, template}")),
    }
}

/// transformers' message preprocessing: drop top-level keys whose value is null, and make
/// `reasoning_content` and `thinking` both carry the first non-null of `reasoning_content`,
/// `thinking`, `reasoning` (vLLM's newer field name).
fn preprocess_messages(messages: &Value) -> Result<Value, TokenizerError> {
    let Value::Array(list) = messages else {
        return Err(TokenizerError::InvalidInput(
            "messages must be a list".to_string(),
        ));
    };
    let mut out = Vec::with_capacity(list.len());
    for (i, message) in list.iter().enumerate() {
        let Value::Object(fields) = message else {
            return Err(TokenizerError::InvalidInput(format!(
                "message {i} must be an object"
            )));
        };
        let mut cleaned: Map<String, Value> = fields
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let reasoning = ["reasoning_content", "thinking", "reasoning"]
            .iter()
            .find_map(|k| cleaned.get(*k).cloned());
        if let Some(reasoning) = reasoning {
            cleaned.insert("reasoning_content".into(), reasoning.clone());
            cleaned.insert("thinking".into(), reasoning);
        }
        out.push(Value::Object(cleaned));
    }
    Ok(Value::Array(out))
}

fn new_environment() -> Result<Environment<'static>, TokenizerError> {
    let mut env = Environment::new();
    let syntax = minijinja::syntax::SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .build()
        .map_err(|e| TokenizerError::TemplateSyntax {
            name: String::new(),
            message: describe(&e),
        })?;
    env.set_syntax(syntax);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.set_formatter(python_formatter);
    env.add_filter("tojson", tojson);
    env.add_function("raise_exception", raise_exception);
    env.add_function("strftime_now", |format: String| {
        CivilTime::now().strftime(&format)
    });
    Ok(env)
}

fn raise_exception(message: String) -> Result<JinjaValue, JinjaError> {
    Err(
        JinjaError::new(ErrorKind::InvalidOperation, message.clone())
            .with_source(RaisedByTemplate(message)),
    )
}

/// Prints `{{ value }}` as Python's `str()` would (`None`, `True`, `1.0`, `['a']`).
fn python_formatter(
    out: &mut minijinja::Output<'_>,
    _state: &mut State<'_, '_>,
    value: &JinjaValue,
) -> Result<(), JinjaError> {
    let text = match value.kind() {
        ValueKind::Undefined => return Ok(()),
        ValueKind::String => {
            return out
                .write_str(value.as_str().unwrap_or_default())
                .map_err(JinjaError::from)
        }
        ValueKind::None | ValueKind::Bool | ValueKind::Number | ValueKind::Seq | ValueKind::Map => {
            match to_json(value) {
                Ok(json) => pyjson::python_str(&json),
                Err(_) => value.to_string(),
            }
        }
        _ => value.to_string(),
    };
    out.write_str(&text).map_err(JinjaError::from)
}

fn to_json(value: &JinjaValue) -> Result<Value, JinjaError> {
    serde_json::to_value(value).map_err(|e| {
        JinjaError::new(
            ErrorKind::InvalidOperation,
            format!("value is not JSON serializable: {e}"),
        )
    })
}

/// transformers' `tojson(x, ensure_ascii=False, indent=None, separators=None,
/// sort_keys=False)`: Python `json.dumps`, no HTML escaping.
fn tojson(
    value: &JinjaValue,
    ensure_ascii: Option<JinjaValue>,
    indent: Option<JinjaValue>,
    kwargs: Kwargs,
) -> Result<JinjaValue, JinjaError> {
    // Python accepts separators/sort_keys positionally too, but no template does that;
    // minijinja functions take at most five arguments, so those two are keyword-only here.
    let pick =
        |positional: Option<JinjaValue>, name: &str| -> Result<Option<JinjaValue>, JinjaError> {
            if kwargs.has(name) {
                Ok(Some(kwargs.get::<JinjaValue>(name)?))
            } else {
                Ok(positional)
            }
        };
    let mut opts = DumpOptions::default();
    if let Some(v) = pick(ensure_ascii, "ensure_ascii")? {
        opts.ensure_ascii = v.is_true();
    }
    if let Some(v) = pick(indent, "indent")? {
        opts.indent = match v.kind() {
            ValueKind::None | ValueKind::Undefined => None,
            ValueKind::Number => {
                let n = i64::try_from(v.clone()).map_err(|_| {
                    JinjaError::new(ErrorKind::InvalidOperation, "indent must be an integer")
                })?;
                Some(" ".repeat(usize::try_from(n).unwrap_or(0)))
            }
            ValueKind::String => Some(v.as_str().unwrap_or_default().to_string()),
            _ => {
                return Err(JinjaError::new(
                    ErrorKind::InvalidOperation,
                    "indent must be an integer or a string",
                ))
            }
        };
    }
    if let Some(v) = pick(None, "separators")? {
        if !v.is_none() && !v.is_undefined() {
            let parts: Vec<String> = v
                .try_iter()?
                .map(|p| p.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| {
                    JinjaError::new(ErrorKind::InvalidOperation, "separators must be strings")
                })?;
            match parts.as_slice() {
                [item, key] => opts.separators = Some((item.clone(), key.clone())),
                _ => {
                    return Err(JinjaError::new(
                        ErrorKind::InvalidOperation,
                        "separators must be a pair",
                    ))
                }
            }
        }
    }
    if let Some(v) = pick(None, "sort_keys")? {
        opts.sort_keys = v.is_true();
    }
    kwargs.assert_all_used()?;
    let json = to_json(value)?;
    Ok(JinjaValue::from_safe_string(pyjson::dumps(&json, &opts)))
}

/// One-line description of a minijinja error with its location and cause.
fn describe(error: &JinjaError) -> String {
    let mut message = match error.detail() {
        Some(detail) => detail.to_string(),
        None => error.to_string(),
    };
    if let (Some(name), Some(line)) = (error.name(), error.line()) {
        message.push_str(&format!(" (in {name} line {line})"));
    }
    message
}

fn render_error(error: JinjaError) -> TokenizerError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
    while let Some(err) = source {
        if let Some(raised) = err.downcast_ref::<RaisedByTemplate>() {
            return TokenizerError::TemplateRaised {
                message: raised.0.clone(),
            };
        }
        source = err.source();
    }
    TokenizerError::TemplateRender {
        message: describe(&error),
    }
}
