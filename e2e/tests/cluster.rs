//! Black-box end-to-end tests against the cluster in KUBECONFIG (see e2e/README.md).
//!
//! Off unless `GLM_E2E=1`; without a reachable cluster each test prints a SKIP line saying how
//! to run it and passes. Each test gets its own namespace and operator process, and deletes
//! them at the end (`GLM_E2E_KEEP=1` keeps them for debugging).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use glm_crds::{conditions, reasons};
use glm_e2e::cluster::{check, example, ready_timeout, with_env, E2e, E2eError};
use glm_test_hub::MockHub;
use k8s_openapi::api::{apps::v1::Deployment, batch::v1::Job};
use kube::Api;
use serde_json::{json, Value};
use tokio::sync::watch;

fn demo() -> Value {
    example("cpu-demo.yaml").unwrap()
}

#[tokio::test]
async fn demo_becomes_ready_and_serves_chat_completions() {
    with_env("demo_serves", |env| async move {
        env.apply(&demo(), "demo").await?;
        let g = env.wait_ready("demo", ready_timeout()).await?;
        let status = g.status.clone().unwrap_or_default();
        check(
            status.ready_replicas >= 1,
            format!("readyReplicas {}", status.ready_replicas),
        )?;
        check(status.endpoint.is_some(), "status.endpoint is set")?;
        check(
            status.selector.is_some(),
            "status.selector is set (scale subresource)",
        )?;
        let children = env.children("demo").await?;
        check(
            children.deployments.len() == 1,
            format!("one server Deployment: {children:?}"),
        )?;
        check(
            children.services.len() == 1,
            format!("one Service: {children:?}"),
        )?;

        let svc = E2e::service_of(&g);
        let model = E2e::model_name_of(&g);
        env.get_text(&svc, "/ready").await?;
        let metrics = env.get_text(&svc, "/metrics").await?;
        check(
            metrics.contains("glm_num_requests_waiting")
                && metrics.contains("glm_num_requests_running"),
            "the server exports the gauges the autoscaler reads",
        )?;

        let a = env
            .chat(&svc, &model, "Hello, who are you?", 16, false)
            .await?;
        let b = env
            .chat(&svc, &model, "Hello, who are you?", 16, false)
            .await?;
        check(
            a.finish_reason.is_some(),
            format!("finish_reason set: {a:?}"),
        )?;
        check(
            a.content == b.content,
            "greedy decoding is deterministic across pods",
        )?;
        let s = env
            .chat(&svc, &model, "Hello, who are you?", 16, true)
            .await?;
        check(
            s.chunks >= 1 && s.finish_reason.is_some(),
            format!("streamed: {s:?}"),
        )?;
        check(s.content == a.content, "streaming and non-streaming agree")?;
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn replicas_follow_the_load() {
    with_env("autoscaling", |env| async move {
        let mut doc = demo();
        doc["spec"]["autoscaling"] = json!({
            "enabled": true,
            "minReplicas": 1,
            "maxReplicas": 3,
            "targetQueueDepthPerReplica": 1,
            "scrapeIntervalSeconds": 2,
            "scaleDownStabilizationSeconds": 20
        });
        env.apply(&doc, "scaled").await?;
        let g = env.wait_ready("scaled", ready_timeout()).await?;
        let (svc, model) = (E2e::service_of(&g), E2e::model_name_of(&g));

        // Push load: 6 clients with long generations keep the queue deep.
        let (stop_tx, stop_rx) = watch::channel(false);
        let loader = {
            let env = Arc::clone(&env);
            tokio::spawn(async move { env.load(&svc, &model, 6, 512, stop_rx).await })
        };
        let up = env
            .wait_until(
                "the server Deployment scales above 1 replica",
                Duration::from_secs(180),
                || {
                    let env = Arc::clone(&env);
                    async move {
                        let r = env.server_replicas("scaled").await?;
                        Ok((r.unwrap_or(0) <= 1).then(|| format!("replicas {r:?}")))
                    }
                },
            )
            .await;
        // The decision reaches status at the next reconcile (the scale write comes first).
        let desired = match &up {
            Ok(()) => env
                .wait_glmd(
                    "scaled",
                    "status.autoscaling.desiredReplicas above 1",
                    Duration::from_secs(60),
                    |g| {
                        let d = g.status.as_ref()?.autoscaling.as_ref()?.desired_replicas?;
                        (d > 1).then_some(d)
                    },
                )
                .await
                .ok(),
            Err(_) => None,
        };
        let _ = stop_tx.send(true);
        let report = loader.await.map_err(|e| E2eError::Check(e.to_string()))?;
        up?;
        check(
            desired.unwrap_or(0) > 1,
            format!("status.autoscaling.desiredReplicas {desired:?}"),
        )?;
        check(
            report.failed.is_empty(),
            format!("failed requests while scaling up: {:?}", report.failed),
        )?;
        check(report.ok > 0, "requests completed")?;

        // Load gone: back to minReplicas after the scale-down window.
        env.wait_until(
            "the server Deployment scales back to 1",
            Duration::from_secs(180),
            || {
                let env = Arc::clone(&env);
                async move {
                    let r = env.server_replicas("scaled").await?;
                    Ok((r != Some(1)).then(|| format!("replicas {r:?}")))
                }
            },
        )
        .await
    })
    .await;
}

#[tokio::test]
async fn a_rollout_drops_no_request() {
    with_env("rollout", |env| async move {
        let mut doc = demo();
        doc["spec"]["replicas"] = json!(2);
        env.apply(&doc, "rolling").await?;
        let g = env.wait_ready("rolling", ready_timeout()).await?;
        let before = g.metadata.generation;
        let (svc, model) = (E2e::service_of(&g), E2e::model_name_of(&g));

        let (stop_tx, stop_rx) = watch::channel(false);
        let loader = {
            let env = Arc::clone(&env);
            tokio::spawn(async move { env.load(&svc, &model, 4, 32, stop_rx).await })
        };
        tokio::time::sleep(Duration::from_secs(3)).await;
        // A pod-template change: the server's configuration moves to a new "revision" (the
        // demo model has no hub revisions, so the change is to the server's environment).
        env.patch_spec(
            "rolling",
            json!({"server": {"env": [{"name": "GLM_E2E_REVISION", "value": "2"}]}}),
        )
        .await?;
        let rolled = env
            .wait_glmd(
                "rolling",
                "rollout complete at the new generation",
                ready_timeout(),
                |g| {
                    let s = g.status.as_ref()?;
                    let ready = s.is_true(glm_crds::conditions::READY);
                    let done = s.observed_generation == g.metadata.generation
                        && g.metadata.generation > before
                        && s.updated_replicas == 2
                        && s.ready_replicas == 2
                        && s.replicas == 2;
                    (ready && done).then_some(())
                },
            )
            .await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let _ = stop_tx.send(true);
        let report = loader.await.map_err(|e| E2eError::Check(e.to_string()))?;
        rolled?;
        check(
            report.ok >= 4,
            format!("only {} requests completed", report.ok),
        )?;
        check(
            report.failed.is_empty(),
            format!(
                "{} of {} requests failed during the rollout: {:?}",
                report.failed.len(),
                report.ok + report.failed.len(),
                report.failed
            ),
        )
    })
    .await;
}

/// A GlmDeployment with a real download (one small file) so a cache PVC and a Job exist.
fn with_cache(retain: bool) -> Value {
    json!({
        "apiVersion": "serving.glm.dev/v1alpha1",
        "kind": "GlmDeployment",
        "metadata": {},
        "spec": {
            "model": {"repo": "zai-org/GLM-4.7-Flash", "include": ["config.json"]},
            "resources": {"gpus": 0, "cpu": "500m", "memory": "512Mi"},
            "cache": {"size": "1Gi", "retainOnDelete": retain},
            "replicas": 1
        }
    })
}

#[tokio::test]
async fn delete_collects_children_and_honours_the_cache_policy() {
    with_env("delete", |env| async move {
        for (name, retain) in [("keep", true), ("drop", false)] {
            env.apply(&with_cache(retain), name).await?;
            env.wait_until(
                &format!("{name}: cache claim and download Job"),
                Duration::from_secs(120),
                || {
                    let env = Arc::clone(&env);
                    async move {
                        let c = env.children(name).await?;
                        Ok(
                            (c.claims.is_empty()
                                || (c.jobs.is_empty() && c.deployments.is_empty()))
                            .then(|| format!("{c:?}")),
                        )
                    }
                },
            )
            .await?;
            env.delete(name).await?;
            env.wait_until(
                &format!("{name}: children garbage-collected"),
                Duration::from_secs(120),
                || {
                    let env = Arc::clone(&env);
                    async move {
                        let c = env.children(name).await?;
                        let gone =
                            c.deployments.is_empty() && c.services.is_empty() && c.jobs.is_empty();
                        let cache_ok = retain || c.claims.is_empty();
                        Ok((!(gone && cache_ok)).then(|| format!("{c:?}")))
                    }
                },
            )
            .await?;
            if retain {
                // Give the garbage collector time to act wrongly before asserting it did not.
                tokio::time::sleep(Duration::from_secs(10)).await;
                let c = env.children(name).await?;
                check(
                    c.claims.len() == 1,
                    format!("{name}: retained cache claim kept: {c:?}"),
                )?;
            }
        }
        Ok(())
    })
    .await;
}

/// The repo the local hub serves the tiny checkpoint under.
const TINY_REPO: &str = "glm-e2e/glm4moe-tiny";

/// A real tiny Glm4Moe checkpoint (weights, config, tokenizer, chat template) and the
/// transformers reference outputs it was published with (`golden.json`).
fn tiny_model_dir() -> std::path::PathBuf {
    glm_e2e::workspace_root().join("server/fixtures/glm4moe-tiny")
}

/// What transformers generated for a chat case of `golden.json` (greedy, special tokens kept).
fn golden_text(case: &str) -> String {
    let golden: Value =
        serde_json::from_slice(&std::fs::read(tiny_model_dir().join("golden.json")).unwrap())
            .unwrap();
    golden["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == case)
        .and_then(|c| c["generated_text"].as_str())
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_model_from_the_hub_is_downloaded_verified_and_served() {
    with_env("download_serves", |env| async move {
        if !env.pods_are_local() {
            println!(
                "SKIP download_serves: the local hub needs pods that reach this machine (stand-in kubelet)"
            );
            return Ok(());
        }
        let hub = MockHub::start()
            .await
            .map_err(|e| E2eError::Check(format!("cannot start the test hub: {e}")))?;
        let sha = hub
            .commit_dir(TINY_REPO, "main", &tiny_model_dir())
            .map_err(|e| E2eError::Check(format!("cannot read the fixture model: {e}")))?;
        let weights = std::fs::metadata(tiny_model_dir().join("model.safetensors"))
            .map_err(|e| E2eError::Check(e.to_string()))?
            .len();
        let doc = json!({
            "apiVersion": "serving.glm.dev/v1alpha1",
            "kind": "GlmDeployment",
            "metadata": {},
            "spec": {
                // Pinned: the commit sha, not the branch.
                "model": {"repo": TINY_REPO, "revision": sha, "hubEndpoint": hub.url,
                          "servedModelName": "tiny"},
                "server": {"maxModelLen": 512},
                "resources": {"gpus": 0, "cpu": "1", "memory": "1Gi"},
                "cache": {"size": "1Gi"},
                "replicas": 1,
                "rollout": {"drainSeconds": 2}
            }
        });
        env.apply(&doc, "tiny").await?;
        let g = env.wait_ready("tiny", ready_timeout()).await?;
        let status = g.status.clone().unwrap_or_default();
        let dir = format!("{}/{sha}", glm_crds::model_dir(TINY_REPO));

        // The download: its Job succeeded, the commit is verified, status and Events say so.
        let model_ready = status.condition(conditions::MODEL_READY);
        check(
            model_ready.is_some_and(|c| {
                c.status == "True" && c.reason == reasons::MODEL_READY && c.message.contains(&sha)
            }),
            format!("ModelReady=True naming commit {sha}: {model_ready:?}"),
        )?;
        let model = status.model.clone().unwrap_or_default();
        // `path` is what the Job reported: the stand-in kubelet rewrites the pod's `/models`
        // mount to a local folder, so only the contract's tail is the same everywhere.
        let tail = format!("/glm-e2e--glm4moe-tiny/{sha}");
        check(
            model.phase == glm_crds::ModelPhase::Ready
                && model.commit.as_deref() == Some(sha.as_str())
                && model.path.as_deref().is_some_and(|p| p.ends_with(&tail))
                && model.bytes_done.is_some()
                && model.bytes_done == model.bytes_total,
            format!("status.model is the verified commit, all bytes, at …{tail}: {model:?}"),
        )?;
        check(
            status.resolved_revision.as_deref() == Some(sha.as_str()),
            format!("resolvedRevision {:?}", status.resolved_revision),
        )?;
        let job_name = model.job_name.clone().unwrap_or_default();
        let job = Api::<Job>::namespaced(env.client.clone(), &env.namespace)
            .get(&job_name)
            .await?;
        let job_status = job.status.unwrap_or_default();
        check(
            job_status.succeeded == Some(1) && job_status.failed.unwrap_or(0) == 0,
            format!("download Job {job_name} succeeded at the first attempt: {job_status:?}"),
        )?;
        let verified = env.events_for("tiny", reasons::DOWNLOAD_SUCCEEDED).await?;
        check(
            verified
                .iter()
                .any(|e| e == &format!("Normal: model verified: commit {sha}")),
            format!("a DownloadSucceeded Event for {sha}: {verified:?}"),
        )?;
        // The weights came from the hub, through its LFS redirect.
        check(
            hub.served("model.safetensors") >= weights,
            format!(
                "the hub served {} of the {weights} weight bytes",
                hub.served("model.safetensors")
            ),
        )?;

        // The server loads that directory from the cache and answers through the Service.
        let d = Api::<Deployment>::namespaced(env.client.clone(), &env.namespace)
            .get("tiny")
            .await?;
        let args = d
            .spec
            .and_then(|s| s.template.spec)
            .and_then(|p| p.containers.into_iter().next())
            .and_then(|c| c.args)
            .unwrap_or_default();
        check(
            args.windows(2).any(|w| w[0] == "--model" && w[1] == dir),
            format!("the server serves {dir}: {args:?}"),
        )?;
        let svc = E2e::service_of(&g);
        let answer = env
            .post_json(
                &svc,
                "/v1/chat/completions",
                &json!({
                    "model": "tiny",
                    "messages": [{"role": "user", "content": "Hello, who are you?"}],
                    "chat_template_kwargs": {"enable_thinking": false},
                    "max_tokens": 8,
                    "temperature": 0,
                    "ignore_eos": true
                }),
            )
            .await?;
        let tokens = answer
            .pointer("/usage/completion_tokens")
            .and_then(Value::as_u64);
        let content = answer
            .pointer("/choices/0/message/content")
            .and_then(Value::as_str)
            .unwrap_or_default();
        check(
            tokens == Some(8) && !content.is_empty(),
            format!("8 completion tokens: {answer}"),
        )?;
        // Greedy output of this checkpoint for this conversation, as transformers computed it:
        // the pod runs the downloaded weights, not some other model.
        let golden = golden_text("chat_nothink");
        check(
            golden.starts_with(content),
            format!("greedy output {content:?} begins transformers' {golden:?}"),
        )?;

        env.delete("tiny").await?;
        env.wait_until(
            "tiny: children garbage-collected",
            Duration::from_secs(60),
            || {
                let env = Arc::clone(&env);
                async move {
                    let c = env.children("tiny").await?;
                    let gone =
                        c.deployments.is_empty() && c.services.is_empty() && c.jobs.is_empty();
                    Ok((!gone).then(|| format!("{c:?}")))
                }
            },
        )
        .await
    })
    .await;
}
