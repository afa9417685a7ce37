//! Load generator for any OpenAI-compatible server (glm-server, vLLM, ...).
//!
//! For each concurrency level it keeps that many streaming `/v1/completions` requests in
//! flight (fixed output length via `ignore_eos`) and prints generated tokens/s, time to
//! first token and inter-token latency (p50/p99).
//!
//! glm-loadgen --url http://127.0.0.1:8000 --concurrency 1,8,32 --max-tokens 128
//!
//! `--json-schema FILE` constrains every request with that schema (`response_format`
//! json_schema): run once with and once without to measure the cost of structured outputs.
//! Choose a schema whose shortest output is longer than `--max-tokens` (a grammar that
//! completes ends its request early, and fewer tokens would be measured).
//!
//! Each stream keeps its own keep-alive connection. A request that fails before any response
//! on a connection an earlier request used is retried once on a fresh one: stock llama-server
//! closes the connection after each streamed response, and a client only finds out when it
//! sends the next request on it.

use std::{
    process::ExitCode,
    sync::Arc,
    time::{Duration, Instant},
};

use clap::Parser;
use futures::StreamExt;
use serde_json::{json, Value};

#[derive(Debug, Parser)]
#[command(
    name = "glm-loadgen",
    about = "Throughput and latency of an OpenAI-compatible server"
)]
struct Args {
    /// Base URL of the server (without /v1).
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    url: String,
    /// Model name; defaults to the first entry of /v1/models.
    #[arg(long)]
    model: Option<String>,
    #[arg(long, env = "GLM_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Concurrency levels to measure, in order.
    #[arg(long, value_delimiter = ',', default_value = "1,8,32")]
    concurrency: Vec<usize>,
    /// Requests per level (default: 4 x concurrency, at least 8).
    #[arg(long)]
    requests: Option<usize>,
    /// Generated tokens per request.
    #[arg(long, default_value_t = 128)]
    max_tokens: usize,
    /// Approximate prompt length in words.
    #[arg(long, default_value_t = 64)]
    prompt_words: usize,
    /// Warm-up requests before measuring.
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Constrain every request with this JSON Schema file (structured outputs).
    #[arg(long)]
    json_schema: Option<std::path::PathBuf>,
    /// The schema, read from `--json-schema` at start.
    #[arg(skip)]
    schema: Option<Value>,
}

#[derive(Debug, Default)]
struct Sample {
    ttft: Option<Duration>,
    itl: Vec<Duration>,
    tokens: usize,
    error: Option<String>,
    /// The request failed before a response came back, and not for want of a connection:
    /// the connection it went out on was dead (see [`should_retry`]).
    dead_connection: bool,
    /// Sent again after such a failure.
    retried: bool,
}

/// One stream's HTTP client: one keep-alive connection, reused request after request.
struct Conn {
    client: reqwest::Client,
    /// A request got a response on this client, so its connection may be reused now.
    used: bool,
}

impl Conn {
    fn new() -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .build()
            .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
        Ok(Self {
            client,
            used: false,
        })
    }
}

/// Whether a failed request is sent again: once, when it failed before any response on a
/// connection that an earlier request had used (a server may close an idle keep-alive
/// connection at any time). A failure on a fresh connection is the server's answer.
fn should_retry(sample: &Sample, reused: bool) -> bool {
    reused && sample.dead_connection && !sample.retried
}

/// [`one_request`] on `conn`, retried per [`should_retry`].
async fn request(conn: &mut Conn, args: &Args, model: &str, i: usize) -> Sample {
    let reused = conn.used;
    let mut sample = one_request(&conn.client, args, model, i).await;
    if should_retry(&sample, reused) {
        // The dead connection left the pool with its error: this one goes out on a new one.
        sample = one_request(&conn.client, args, model, i).await;
        sample.retried = true;
    }
    conn.used |= !sample.dead_connection;
    sample
}

fn prompt(i: usize, words: usize) -> String {
    const WORDS: &[&str] = &[
        "the",
        "model",
        "serves",
        "many",
        "users",
        "with",
        "paged",
        "attention",
        "and",
        "batching",
        "tokens",
        "flow",
        "through",
        "a",
        "shared",
        "engine",
        "while",
        "streams",
        "wait",
    ];
    let mut s = format!("Request {i}:");
    for k in 0..words {
        s.push(' ');
        s.push_str(WORDS[(i * 7 + k * 13) % WORDS.len()]);
    }
    s
}

async fn one_request(client: &reqwest::Client, args: &Args, model: &str, i: usize) -> Sample {
    let mut sample = Sample::default();
    let mut body = json!({
        "model": model,
        "prompt": prompt(i, args.prompt_words),
        "max_tokens": args.max_tokens,
        "temperature": 0,
        "ignore_eos": true,
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    if let Some(schema) = &args.schema {
        body["response_format"] = json!({
            "type": "json_schema",
            "json_schema": {"name": "bench", "schema": schema},
        });
    }
    let mut req = client
        .post(format!("{}/v1/completions", args.url))
        .json(&body);
    if let Some(k) = &args.api_key {
        req = req.bearer_auth(k);
    }
    let start = Instant::now();
    let resp = match req.send().await {
        Ok(r) if r.status().is_success() => r,
        Ok(r) => {
            sample.error = Some(format!("HTTP {}", r.status()));
            return sample;
        }
        Err(e) => {
            sample.dead_connection = !e.is_connect() && !e.is_timeout() && !e.is_builder();
            sample.error = Some(e.to_string());
            return sample;
        }
    };
    let mut last = start;
    let mut chunks = 0usize;
    let mut buf = String::new();
    let mut body = resp.bytes_stream();
    while let Some(b) = body.next().await {
        let b = match b {
            Ok(b) => b,
            Err(e) => {
                sample.error = Some(e.to_string());
                return sample;
            }
        };
        buf.push_str(&String::from_utf8_lossy(&b));
        while let Some(pos) = buf.find("\n\n") {
            let event: String = buf.drain(..pos + 2).collect();
            let Some(data) = event.trim().strip_prefix("data:").map(str::trim) else {
                continue;
            };
            if data == "[DONE]" {
                continue;
            }
            let Ok(v) = serde_json::from_str::<Value>(data) else {
                continue;
            };
            if let Some(n) = v["usage"]["completion_tokens"].as_u64() {
                sample.tokens = n as usize;
            }
            let has_text = v["choices"].as_array().is_some_and(|c| {
                c.iter()
                    .any(|c| c["text"].as_str().is_some_and(|t| !t.is_empty()))
            });
            if has_text {
                let now = Instant::now();
                if sample.ttft.is_none() {
                    sample.ttft = Some(now - start);
                } else {
                    sample.itl.push(now - last);
                }
                last = now;
                chunks += 1;
            }
        }
    }
    if sample.tokens == 0 {
        sample.tokens = chunks;
    }
    sample
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

struct LevelResult {
    concurrency: usize,
    tok_per_s: f64,
}

async fn run_level(args: &Arc<Args>, model: &str, c: usize) -> LevelResult {
    let n = args.requests.unwrap_or((4 * c).max(8));
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let workers: Vec<_> = (0..c)
        .map(|_| {
            let (args, model, next) = (Arc::clone(args), model.to_string(), Arc::clone(&next));
            tokio::spawn(async move {
                let mut out = Vec::new();
                let mut conn = match Conn::new() {
                    Ok(c) => c,
                    Err(e) => {
                        out.push(Sample {
                            error: Some(e),
                            ..Sample::default()
                        });
                        return out;
                    }
                };
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    out.push(request(&mut conn, &args, &model, 1000 + i).await);
                }
                out
            })
        })
        .collect();
    let mut samples = Vec::new();
    for w in workers {
        if let Ok(s) = w.await {
            samples.extend(s);
        }
    }
    let wall = start.elapsed().as_secs_f64();
    let errors = samples.iter().filter(|s| s.error.is_some()).count();
    let retried = samples.iter().filter(|s| s.retried).count();
    let tokens: usize = samples.iter().map(|s| s.tokens).sum();
    let mut ttft: Vec<Duration> = samples.iter().filter_map(|s| s.ttft).collect();
    let mut itl: Vec<Duration> = samples.iter().flat_map(|s| s.itl.iter().copied()).collect();
    ttft.sort();
    itl.sort();
    let tok_per_s = tokens as f64 / wall;
    println!(
        "{:>11} {:>8} {:>6} {:>12.1} {:>10.1} {:>10.1} {:>10.2} {:>10.2}",
        c,
        samples.len(),
        errors,
        tok_per_s,
        percentile(&ttft, 0.5),
        percentile(&ttft, 0.99),
        percentile(&itl, 0.5),
        percentile(&itl, 0.99),
    );
    if let Some(e) = samples.iter().find_map(|s| s.error.as_ref()) {
        eprintln!("first error at concurrency {c}: {e}");
    }
    if retried > 0 {
        eprintln!("{retried} requests at concurrency {c} were sent again after the server closed a reused connection");
    }
    LevelResult {
        concurrency: c,
        tok_per_s,
    }
}

async fn first_model(client: &reqwest::Client, args: &Args) -> Result<String, String> {
    let mut req = client.get(format!("{}/v1/models", args.url));
    if let Some(k) = &args.api_key {
        req = req.bearer_auth(k);
    }
    let v: Value = req
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    v["data"][0]["id"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("no model in /v1/models: {v}"))
}

#[tokio::main]
async fn main() -> ExitCode {
    let mut args = Args::parse();
    if let Some(path) = &args.json_schema {
        let schema = std::fs::read_to_string(path)
            .map_err(|e| e.to_string())
            .and_then(|t| serde_json::from_str::<Value>(&t).map_err(|e| e.to_string()));
        match schema {
            Ok(s) => args.schema = Some(s),
            Err(e) => {
                eprintln!("--json-schema {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
        }
    }
    let args = Arc::new(args);
    let mut conn = match Conn::new() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let model = match &args.model {
        Some(m) => m.clone(),
        None => match first_model(&conn.client, &args).await {
            Ok(m) => {
                conn.used = true;
                m
            }
            Err(e) => {
                eprintln!("cannot list models at {}: {e}", args.url);
                return ExitCode::FAILURE;
            }
        },
    };
    for i in 0..args.warmup {
        let s = request(&mut conn, &args, &model, i).await;
        if let Some(e) = s.error {
            eprintln!("warm-up request failed: {e}");
            return ExitCode::FAILURE;
        }
    }
    println!(
        "# {} model={} max_tokens={} prompt_words={} json_schema={}",
        args.url,
        model,
        args.max_tokens,
        args.prompt_words,
        args.json_schema
            .as_ref()
            .map_or("none".to_string(), |p| p.display().to_string())
    );
    println!(
        "{:>11} {:>8} {:>6} {:>12} {:>10} {:>10} {:>10} {:>10}",
        "concurrency",
        "requests",
        "errors",
        "gen_tok/s",
        "ttft_p50",
        "ttft_p99",
        "itl_p50",
        "itl_p99"
    );
    let mut results = Vec::new();
    for &c in &args.concurrency {
        results.push(run_level(&args, &model, c.max(1)).await);
    }
    if let (Some(base), Some(top)) = (
        results.iter().find(|r| r.concurrency == 1),
        results.iter().max_by_key(|r| r.concurrency),
    ) {
        if top.concurrency > 1 && base.tok_per_s > 0.0 {
            println!(
                "# throughput at {} streams = {:.2}x batch-1 (latencies in ms)",
                top.concurrency,
                top.tok_per_s / base.tok_per_s
            );
        }
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::{TcpListener, TcpStream},
    };

    use super::*;

    #[test]
    fn retries_once_only_a_dead_reused_connection() {
        let dead = Sample {
            dead_connection: true,
            ..Sample::default()
        };
        assert!(should_retry(&dead, true));
        assert!(
            !should_retry(&dead, false),
            "a fresh connection's failure stands"
        );
        let again = Sample {
            dead_connection: true,
            retried: true,
            ..Sample::default()
        };
        assert!(!should_retry(&again, true), "once only");
        let answered = Sample {
            error: Some("HTTP 503 Service Unavailable".into()),
            ..Sample::default()
        };
        assert!(!should_retry(&answered, true), "an HTTP error is an answer");
    }

    /// Reads one request (headers and a content-length body); false at end of stream.
    async fn read_request(sock: &mut TcpStream) -> bool {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if buf.len() >= end + 4 + len {
                    return true;
                }
            }
            match sock.read(&mut chunk).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// A streamed completion of two tokens, as chunked SSE on a keep-alive connection.
    async fn respond(sock: &mut TcpStream) {
        let mut out =
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
                .to_vec();
        for event in [
            r#"data: {"choices":[{"text":"hel"}]}"#,
            r#"data: {"choices":[{"text":"lo"}],"usage":{"completion_tokens":2}}"#,
            "data: [DONE]",
        ] {
            let data = format!("{event}\n\n");
            out.extend_from_slice(format!("{:x}\r\n{data}\r\n", data.len()).as_bytes());
        }
        out.extend_from_slice(b"0\r\n\r\n");
        sock.write_all(&out).await.unwrap();
    }

    fn args(url: &str) -> Args {
        Args::parse_from(["glm-loadgen", "--url", url, "--model", "m"])
    }

    #[tokio::test]
    async fn a_request_on_a_connection_the_server_closed_is_sent_again() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        // Like stock llama-server: the first connection serves one streamed response, then
        // closes on the next request without answering it.
        let server = tokio::spawn(async move {
            let (mut first, _) = listener.accept().await.unwrap();
            assert!(read_request(&mut first).await);
            respond(&mut first).await;
            assert!(
                read_request(&mut first).await,
                "the second request reuses it"
            );
            drop(first);
            let (mut second, _) = listener.accept().await.unwrap();
            assert!(read_request(&mut second).await);
            respond(&mut second).await;
            // Hold the connection until the client is done with it.
            read_request(&mut second).await;
        });
        let args = args(&url);
        let mut conn = Conn::new().unwrap();
        let a = request(&mut conn, &args, "m", 0).await;
        assert_eq!((a.error.as_deref(), a.tokens, a.retried), (None, 2, false));
        let b = request(&mut conn, &args, "m", 1).await;
        assert_eq!(b.error, None);
        assert!(b.retried);
        assert_eq!(b.tokens, 2);
        assert!(b.ttft.is_some());
        drop(conn);
        server.await.unwrap();
    }

    #[tokio::test]
    async fn a_fresh_connection_closed_without_an_answer_is_an_error() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.unwrap();
            assert!(read_request(&mut sock).await);
        });
        let mut conn = Conn::new().unwrap();
        let s = request(&mut conn, &args(&url), "m", 0).await;
        server.await.unwrap();
        assert!(s.error.is_some());
        assert!(s.dead_connection);
        assert!(!s.retried);
        assert!(!conn.used);
    }
}
