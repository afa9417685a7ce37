//! glm-operator: reconciles GlmDeployment objects into a model cache, a download Job, a
//! Deployment of glm-server pods and a Service; autoscales on queue depth; rolls out upgrades.
//!
//! Layout: [`controller`] (Context, run, error_policy) drives [`reconcile`] (the I/O shell:
//! server-side apply, status, Events) over pure builders in `reconcile/*`; [`admin`] serves
//! `/healthz`, `/readyz`, `/metrics`; [`leader`] holds a coordination.k8s.io Lease; [`clock`]
//! is the one place reconciles read the time.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod admin;
pub mod autoscale;
pub mod clock;
pub mod config;
pub mod controller;
mod error;
pub mod leader;
pub mod metrics;
pub mod reconcile;
pub mod scrape;
pub mod telemetry;
pub mod upgrade;

#[cfg(test)]
mod fixtures;

pub use error::{Error, Result};
