//! The only I/O of autoscaling: read each ready server pod's `/metrics` concurrently.
//!
//! Every ready pod is read at the same time with its own timeout, so one hung pod costs one
//! timeout, not one per pod. A failure becomes a [`PodSample`] with `load: None` and a
//! stable error kind: unknown load, never zero (docs/contract.md). Pods that are not ready
//! are not contacted; they are reported as starting capacity.

pub mod fake;
mod parse;

use std::net::IpAddr;
use std::time::Duration;

use futures::future::join_all;
use k8s_openapi::api::core::v1::Pod;
use tracing::{debug, info_span, Instrument};

use crate::autoscale::{Load, PodSample};
pub use parse::{parse_gauges, Gauges, ParseError, RUNNING, WAITING};

/// A pod the scraper may contact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodTarget {
    pub name: String,
    /// `status.podIP`; a ready pod without one is reported as `no_ip`.
    pub ip: Option<IpAddr>,
    pub ready: bool,
}

#[derive(Debug, Clone)]
pub struct ScrapeConfig {
    /// Port of the server's HTTP listener (docs/contract.md: 8000).
    pub port: u16,
    pub path: String,
    /// Whole request, connect to last byte.
    pub timeout: Duration,
    /// A /metrics body larger than this is refused (protects the operator's memory).
    pub max_body_bytes: usize,
}

impl Default for ScrapeConfig {
    fn default() -> Self {
        Self {
            port: 8000,
            path: "/metrics".to_string(),
            timeout: Duration::from_secs(2),
            max_body_bytes: 4 << 20,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ScrapeError {
    #[error("pod has no IP address yet")]
    NoIp,
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("connection failed: {0}")]
    Connect(String),
    #[error("HTTP status {0}")]
    Status(u16),
    #[error("body exceeds {0} bytes")]
    TooLarge(usize),
    #[error("reading body failed: {0}")]
    Body(String),
    #[error("body is not UTF-8")]
    Encoding,
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error("HTTP client could not be built: {0}")]
    Client(String),
}

impl ScrapeError {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::NoIp => "no_ip",
            Self::Timeout(_) => "timeout",
            Self::Connect(_) => "connect",
            Self::Status(_) => "http_status",
            Self::TooLarge(_) => "too_large",
            Self::Body(_) => "body",
            Self::Encoding => "encoding",
            Self::Parse(ParseError::MetricMissing(_)) => "metric_missing",
            Self::Client(_) => "client",
        }
    }

    fn from_reqwest(e: reqwest::Error, timeout: Duration) -> Self {
        if e.is_timeout() {
            Self::Timeout(timeout)
        } else if e.is_connect() {
            Self::Connect(e.to_string())
        } else {
            Self::Body(e.to_string())
        }
    }
}

/// Reads pods' /metrics. Cheap to clone (the HTTP client is reference-counted).
#[derive(Debug, Clone)]
pub struct Scraper {
    client: reqwest::Client,
    config: ScrapeConfig,
}

impl Scraper {
    pub fn new(config: ScrapeConfig) -> Result<Self, ScrapeError> {
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            // Pod IPs are reached directly; a cluster-wide HTTP proxy must not intercept.
            .no_proxy()
            .pool_max_idle_per_host(1)
            .build()
            .map_err(|e| ScrapeError::Client(e.to_string()))?;
        Ok(Self { client, config })
    }

    pub fn config(&self) -> &ScrapeConfig {
        &self.config
    }

    /// Samples every target concurrently; the output keeps the targets' order.
    pub async fn scrape_all(&self, targets: &[PodTarget]) -> Vec<PodSample> {
        join_all(targets.iter().map(|t| self.sample(t))).await
    }

    /// One pod's sample; not-ready pods are not contacted.
    pub async fn sample(&self, target: &PodTarget) -> PodSample {
        if !target.ready {
            return PodSample {
                name: target.name.clone(),
                ready: false,
                load: None,
                error: None,
            };
        }
        let result = match target.ip {
            Some(ip) => {
                self.scrape(ip)
                    .instrument(info_span!("scrape", pod = %target.name, %ip))
                    .await
            }
            None => Err(ScrapeError::NoIp),
        };
        match result {
            Ok(load) => PodSample {
                name: target.name.clone(),
                ready: true,
                load: Some(load),
                error: None,
            },
            Err(e) => {
                debug!(pod = %target.name, kind = e.kind(), error = %e, "scrape failed");
                PodSample {
                    name: target.name.clone(),
                    ready: true,
                    load: None,
                    error: Some(e.kind()),
                }
            }
        }
    }

    /// GET http://IP:PORT/metrics and parse the two gauges.
    pub async fn scrape(&self, ip: IpAddr) -> Result<Load, ScrapeError> {
        let url = match ip {
            IpAddr::V4(v4) => format!("http://{v4}:{}{}", self.config.port, self.config.path),
            IpAddr::V6(v6) => format!("http://[{v6}]:{}{}", self.config.port, self.config.path),
        };
        let timeout = self.config.timeout;
        let mut response = self
            .client
            .get(&url)
            .send()
            .await
            .map_err(|e| ScrapeError::from_reqwest(e, timeout))?;
        let status = response.status();
        if !status.is_success() {
            return Err(ScrapeError::Status(status.as_u16()));
        }
        let limit = self.config.max_body_bytes;
        if response.content_length().is_some_and(|n| n > limit as u64) {
            return Err(ScrapeError::TooLarge(limit));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| ScrapeError::from_reqwest(e, timeout))?
        {
            if body.len() + chunk.len() > limit {
                return Err(ScrapeError::TooLarge(limit));
            }
            body.extend_from_slice(&chunk);
        }
        let text = std::str::from_utf8(&body).map_err(|_| ScrapeError::Encoding)?;
        Ok(parse_gauges(text).load()?)
    }
}

/// Scrape targets from the Deployment's pods: terminating pods (deletionTimestamp set) and
/// finished pods are left out entirely, since they are neither load nor capacity; ready
/// means the pod's `Ready` condition is True (the server's /ready passed).
pub fn targets_from_pods(pods: &[Pod]) -> Vec<PodTarget> {
    pods.iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| {
            let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
            !matches!(phase, Some("Succeeded" | "Failed"))
        })
        .map(|p| {
            let status = p.status.as_ref();
            let ready = status
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            let ip = status
                .and_then(|s| s.pod_ip.as_deref())
                .and_then(|ip| ip.parse().ok());
            PodTarget {
                name: p.metadata.name.clone().unwrap_or_default(),
                ip,
                ready,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn pod(name: &str, ip: Option<&str>, ready: bool, phase: &str, deleting: bool) -> Pod {
        let mut p = Pod::default();
        p.metadata.name = Some(name.to_string());
        if deleting {
            p.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
        }
        p.status = Some(PodStatus {
            phase: Some(phase.to_string()),
            pod_ip: ip.map(str::to_string),
            conditions: Some(vec![PodCondition {
                type_: "Ready".to_string(),
                status: if ready { "True" } else { "False" }.to_string(),
                ..Default::default()
            }]),
            ..Default::default()
        });
        p
    }

    #[test]
    fn targets_skip_terminating_and_finished_pods() {
        let pods = [
            pod("a", Some("10.0.0.1"), true, "Running", false),
            pod("b", Some("10.0.0.2"), false, "Running", false),
            pod("c", None, false, "Pending", false),
            pod("d", Some("10.0.0.4"), true, "Running", true),
            pod("e", Some("10.0.0.5"), false, "Failed", false),
            pod("f", Some("fd00::6"), true, "Running", false),
        ];
        let got = targets_from_pods(&pods);
        let names: Vec<_> = got.iter().map(|t| (t.name.as_str(), t.ready)).collect();
        assert_eq!(
            names,
            [("a", true), ("b", false), ("c", false), ("f", true)]
        );
        assert_eq!(got[0].ip, Some("10.0.0.1".parse().unwrap()));
        assert_eq!(got[2].ip, None);
        assert_eq!(got[3].ip, Some("fd00::6".parse().unwrap()));
    }

    #[tokio::test]
    async fn ready_pod_without_ip_is_unknown_and_not_ready_is_not_contacted() {
        let scraper = Scraper::new(ScrapeConfig::default()).unwrap();
        let samples = scraper
            .scrape_all(&[
                PodTarget {
                    name: "noip".into(),
                    ip: None,
                    ready: true,
                },
                PodTarget {
                    // TEST-NET-1: would time out if contacted.
                    name: "starting".into(),
                    ip: Some("192.0.2.1".parse().unwrap()),
                    ready: false,
                },
            ])
            .await;
        assert_eq!((samples[0].load, samples[0].error), (None, Some("no_ip")));
        assert_eq!((samples[1].ready, samples[1].error), (false, None));
    }
}
