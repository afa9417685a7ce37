//! glm-operator: reconciles GlmDeployment objects into a model cache, a download Job, a
//! Deployment of glm-server pods and a Service; autoscales on queue depth; rolls out upgrades.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod autoscale;
pub mod scrape;
pub mod upgrade;
