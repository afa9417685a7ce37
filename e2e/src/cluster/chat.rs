//! Talking to the glm-server pods behind a GlmDeployment's Service, the way in-cluster
//! clients do (spread over the Service's ready endpoints):
//! - on a real cluster, through the API server's service proxy
//!   (`/api/v1/namespaces/NS/services/NAME:http/proxy/...`): no port-forward, no kubectl,
//!   works on any cluster the kubeconfig reaches;
//! - on the stand-in kubelet (pods are local processes on 127.0.0.x, and the API server has
//!   no Endpoints for them), straight to the ready pods the Service selects, round robin,
//!   as kube-proxy would.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use glm_crds::GlmDeployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, ListParams};
use serde_json::{json, Value};
use tokio::sync::watch;

use super::{E2e, E2eError};

/// How requests reach the server pods.
pub enum Transport {
    /// The API server's service proxy.
    ApiProxy,
    /// Direct HTTP to the ready pods' IPs (local pods only).
    PodIps {
        http: reqwest::Client,
        next: AtomicUsize,
    },
}

impl Transport {
    pub fn new(local_pods: bool) -> Result<Self, E2eError> {
        if !local_pods {
            return Ok(Self::ApiProxy);
        }
        // No idle connections: a pooled connection to a pod that is draining can be closed
        // under a new request, which a Service (new connection per request here) never sees.
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(120))
            .build()
            .map_err(|e| E2eError::Http(e.to_string()))?;
        Ok(Self::PodIps {
            http,
            next: AtomicUsize::new(0),
        })
    }
}

/// `podIP:port` of every ready, non-terminating pod selected by `selector`, with the port the
/// Service's `targetPort` names (a number, or a container port name).
pub fn ready_backends(pods: &[Pod], target: &IntOrString) -> Vec<String> {
    let mut out = Vec::new();
    for pod in pods {
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let Some(status) = pod.status.as_ref() else {
            continue;
        };
        let ready = status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        let Some(ip) = status.pod_ip.as_deref() else {
            continue;
        };
        let port = match target {
            IntOrString::Int(p) => Some(*p),
            IntOrString::String(name) => pod
                .spec
                .iter()
                .flat_map(|s| s.containers.iter())
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .map(|p| p.container_port),
        };
        if let (true, Some(port)) = (ready, port) {
            out.push(format!("{ip}:{port}"));
        }
    }
    out.sort();
    out
}

/// One chat completion's result.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatOutcome {
    /// Assistant text (the concatenated deltas when streaming).
    pub content: String,
    pub finish_reason: Option<String>,
    /// Stream chunks received (0 when not streaming).
    pub chunks: usize,
}

/// Outcome of a load run.
#[derive(Debug, Default)]
pub struct LoadReport {
    pub ok: usize,
    /// One line per failed request: what failed and when (seconds since the start).
    pub failed: Vec<String>,
    pub elapsed: Duration,
}

impl E2e {
    /// The Service of a GlmDeployment: the host of `status.endpoint`
    /// (`http://NAME.NS.svc...`), else the GlmDeployment's own name.
    pub fn service_of(g: &GlmDeployment) -> String {
        g.status
            .as_ref()
            .and_then(|s| s.endpoint.as_deref())
            .and_then(|e| e.split("://").nth(1))
            .and_then(|rest| rest.split(['.', ':', '/']).next())
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .unwrap_or_else(|| g.metadata.name.clone().unwrap_or_default())
    }

    /// The name clients send as `model`: `spec.model.servedModelName`, else the repo name.
    pub fn model_name_of(g: &GlmDeployment) -> String {
        g.spec.model.served_model_name.clone().unwrap_or_else(|| {
            g.spec
                .model
                .repo
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_owned()
        })
    }

    fn proxy_path(&self, service: &str, path: &str) -> String {
        format!(
            "/api/v1/namespaces/{}/services/{service}:http/proxy{path}",
            self.namespace
        )
    }

    /// One ready backend of the Service's `http` port, round robin.
    async fn backend(&self, service: &str, next: &AtomicUsize) -> Result<String, E2eError> {
        let svc = Api::<Service>::namespaced(self.client.clone(), &self.namespace)
            .get(service)
            .await?;
        let spec = svc.spec.unwrap_or_default();
        let selector: BTreeMap<String, String> = spec.selector.unwrap_or_default();
        let port = spec
            .ports
            .unwrap_or_default()
            .into_iter()
            .find(|p| p.name.as_deref() == Some("http"))
            .ok_or_else(|| E2eError::Object(format!("Service {service} has no port `http`")))?;
        let target = port.target_port.unwrap_or(IntOrString::Int(port.port));
        let labels = selector
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        let pods = Api::<Pod>::namespaced(self.client.clone(), &self.namespace)
            .list(&ListParams::default().labels(&labels))
            .await?;
        let backends = ready_backends(&pods.items, &target);
        if backends.is_empty() {
            return Err(E2eError::Http(format!(
                "Service {service} has no ready endpoint"
            )));
        }
        let i = next.fetch_add(1, Ordering::Relaxed) % backends.len();
        Ok(backends[i].clone())
    }

    /// Sends one request to the Service and returns the body (error on non-2xx).
    async fn send(
        &self,
        service: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<String, E2eError> {
        match &self.transport {
            Transport::ApiProxy => {
                let uri = self.proxy_path(service, path);
                let req = match body {
                    Some(b) => http::Request::post(uri)
                        .header("content-type", "application/json")
                        .body(b),
                    None => http::Request::get(uri).body(Vec::new()),
                }
                .map_err(|e| E2eError::Http(e.to_string()))?;
                self.client
                    .request_text(req)
                    .await
                    .map_err(|e| E2eError::Http(format!("{path}: {e}")))
            }
            Transport::PodIps { http, next } => {
                let backend = self.backend(service, next).await?;
                let url = format!("http://{backend}{path}");
                let req = match body {
                    Some(b) => http
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(b),
                    None => http.get(&url),
                };
                let resp = req
                    .send()
                    .await
                    .map_err(|e| E2eError::Http(format!("{url}: {e}")))?;
                let status = resp.status();
                let text = resp
                    .text()
                    .await
                    .map_err(|e| E2eError::Http(format!("{url}: body: {e}")))?;
                if status.is_success() {
                    Ok(text)
                } else {
                    Err(E2eError::Http(format!("{url}: HTTP {status}: {text}")))
                }
            }
        }
    }

    /// GET on the Service, returning the body (error on non-2xx).
    pub async fn get_text(&self, service: &str, path: &str) -> Result<String, E2eError> {
        self.send(service, path, None).await
    }

    /// POSTs a JSON body to the Service and returns the JSON answer (error on non-2xx).
    pub async fn post_json(
        &self,
        service: &str,
        path: &str,
        body: &Value,
    ) -> Result<Value, E2eError> {
        let bytes = serde_json::to_vec(body).map_err(|e| E2eError::Http(e.to_string()))?;
        let text = self.send(service, path, Some(bytes)).await?;
        serde_json::from_str(&text).map_err(|e| E2eError::Http(format!("not JSON ({e}): {text}")))
    }

    /// One `/v1/chat/completions` request; `stream` exercises the SSE path.
    pub async fn chat(
        &self,
        service: &str,
        model: &str,
        prompt: &str,
        max_tokens: u32,
        stream: bool,
    ) -> Result<ChatOutcome, E2eError> {
        let body = json!({
            "model": model,
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": max_tokens,
            "temperature": 0,
            "stream": stream,
        });
        let body = serde_json::to_vec(&body).map_err(|e| E2eError::Http(e.to_string()))?;
        let text = self
            .send(service, "/v1/chat/completions", Some(body))
            .await
            .map_err(|e| E2eError::Http(format!("chat completion: {e}")))?;
        if stream {
            parse_sse(&text)
        } else {
            let v: Value = serde_json::from_str(&text)
                .map_err(|e| E2eError::Http(format!("not JSON ({e}): {text}")))?;
            let choice = v
                .pointer("/choices/0")
                .ok_or_else(|| E2eError::Http(format!("no choices: {text}")))?;
            Ok(ChatOutcome {
                content: choice
                    .pointer("/message/content")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                finish_reason: choice
                    .get("finish_reason")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                chunks: 0,
            })
        }
    }

    /// Runs `concurrency` clients in a loop (alternating streaming and plain requests of
    /// `max_tokens`) until `stop` turns true; every failure is recorded, none retried.
    pub async fn load(
        self: &Arc<Self>,
        service: &str,
        model: &str,
        concurrency: usize,
        max_tokens: u32,
        stop: watch::Receiver<bool>,
    ) -> LoadReport {
        let start = Instant::now();
        let mut tasks = Vec::new();
        for worker in 0..concurrency {
            let me = Arc::clone(self);
            let (service, model) = (service.to_owned(), model.to_owned());
            let stop = stop.clone();
            tasks.push(tokio::spawn(async move {
                let mut report = LoadReport::default();
                let mut n = 0usize;
                while !*stop.borrow() {
                    let prompt = format!("worker {worker} request {n}: tell me a story");
                    match me
                        .chat(&service, &model, &prompt, max_tokens, n.is_multiple_of(2))
                        .await
                    {
                        Ok(o) if o.finish_reason.is_some() => report.ok += 1,
                        Ok(o) => report.failed.push(format!(
                            "{:.1}s worker {worker}: no finish_reason ({o:?})",
                            start.elapsed().as_secs_f64()
                        )),
                        Err(e) => report.failed.push(format!(
                            "{:.1}s worker {worker}: {e}",
                            start.elapsed().as_secs_f64()
                        )),
                    }
                    n += 1;
                }
                report
            }));
        }
        let mut total = LoadReport::default();
        for t in tasks {
            match t.await {
                Ok(r) => {
                    total.ok += r.ok;
                    total.failed.extend(r.failed);
                }
                Err(e) => total.failed.push(format!("load worker panicked: {e}")),
            }
        }
        total.elapsed = start.elapsed();
        total
    }
}

/// Parses an OpenAI SSE body: `data: {chunk}` lines ending with `data: [DONE]`.
pub fn parse_sse(text: &str) -> Result<ChatOutcome, E2eError> {
    let mut out = ChatOutcome {
        content: String::new(),
        finish_reason: None,
        chunks: 0,
    };
    let mut done = false;
    for line in text.lines() {
        let Some(data) = line.strip_prefix("data:").map(str::trim) else {
            continue;
        };
        if data == "[DONE]" {
            done = true;
            break;
        }
        let v: Value = serde_json::from_str(data)
            .map_err(|e| E2eError::Http(format!("bad SSE chunk ({e}): {data}")))?;
        if let Some(err) = v.get("error") {
            return Err(E2eError::Http(format!("error event in stream: {err}")));
        }
        out.chunks += 1;
        if let Some(c) = v
            .pointer("/choices/0/delta/content")
            .and_then(Value::as_str)
        {
            out.content.push_str(c);
        }
        if let Some(f) = v
            .pointer("/choices/0/finish_reason")
            .and_then(Value::as_str)
        {
            out.finish_reason = Some(f.to_owned());
        }
    }
    if !done {
        return Err(E2eError::Http(format!(
            "stream ended without [DONE] after {} chunks",
            out.chunks
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_concatenates_deltas_and_needs_done() {
        let body = "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hel\"}}]}\n\n\
                    data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"},\"finish_reason\":\"stop\"}]}\n\n\
                    data: [DONE]\n\n";
        let o = parse_sse(body).unwrap();
        assert_eq!(o.content, "Hello");
        assert_eq!(o.finish_reason.as_deref(), Some("stop"));
        assert_eq!(o.chunks, 2);

        let cut = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}]}\n\n";
        assert_eq!(parse_sse(cut).unwrap_err().kind(), "http");
        let err = "data: {\"error\":{\"type\":\"service_unavailable\"}}\n\ndata: [DONE]\n\n";
        assert!(parse_sse(err)
            .unwrap_err()
            .to_string()
            .contains("service_unavailable"));
    }

    #[test]
    fn service_name_comes_from_the_endpoint() {
        let mut g = GlmDeployment::new(
            "demo",
            serde_json::from_value(
                json!({"model": {"repo": "glm-dev/demo"}, "cache": {"size": "1Gi"}}),
            )
            .unwrap(),
        );
        assert_eq!(E2e::service_of(&g), "demo");
        assert_eq!(E2e::model_name_of(&g), "demo");
        g.status = Some(glm_crds::GlmDeploymentStatus {
            endpoint: Some("http://demo-svc.ns.svc.cluster.local:8000/v1".into()),
            ..Default::default()
        });
        assert_eq!(E2e::service_of(&g), "demo-svc");
    }
}
