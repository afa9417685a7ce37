//! End-to-end tests of what only a real API server shows (issue 14): the CRD refuses bad
//! quantities naming the field, a child the API server refuses degrades the GlmDeployment with
//! the server's message, hand edits of a child are repaired, a scale keeps Ready True, an
//! operator restart makes no duplicates, and tensor parallelism is reported as unsupported.
//!
//! Same switches as `tests/cluster.rs` (see e2e/README.md): off unless `GLM_E2E=1`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use glm_crds::{conditions, reasons, GlmDeployment};
use glm_e2e::cluster::{check, example, ready_timeout, with_env, E2e, E2eError, E2E_LEASE};
use glm_e2e::mistakes::MISTAKES;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::{watcher, WatchStreamExt};
use serde_json::{json, Value};

fn demo() -> Value {
    example("cpu-demo.yaml").unwrap()
}

/// Every GlmDeployment in `examples/` (top level), by file name.
fn example_documents() -> Vec<(String, Value)> {
    let dir = glm_e2e::workspace_root().join("examples");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        for doc in glm_e2e::manifest::read_documents(&path).unwrap() {
            if doc.get("kind").and_then(Value::as_str) == Some(glm_crds::KIND) {
                let file = path.file_name().unwrap().to_string_lossy().into_owned();
                out.push((file, doc));
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[tokio::test]
async fn the_api_server_accepts_every_example_and_refuses_each_mistake_naming_the_field() {
    with_env("examples_on_apiserver", |env| async move {
        let docs = example_documents();
        check(docs.len() >= 5, format!("{} examples found", docs.len()))?;
        for (file, doc) in &docs {
            env.dry_run_apply(doc, "example")
                .await
                .map_err(|e| E2eError::Check(format!("{file} refused: {e}")))?;
        }
        let base = example("glm45.yaml")?;
        for m in MISTAKES {
            let mut doc = base.clone();
            (m.make)(&mut doc);
            match env.dry_run_apply(&doc, "mistake").await {
                Ok(()) => return Err(E2eError::Check(format!("accepted: {}", m.what))),
                Err(e) => check(
                    e.to_string().contains(m.field),
                    format!("{}: the refusal should name {:?}: {e}", m.what, m.field),
                )?,
            }
        }
        Ok(())
    })
    .await;
}

#[tokio::test]
async fn a_child_the_api_server_refuses_degrades_with_its_message_and_a_warning() {
    with_env("child_rejected", |env| async move {
        let mut doc = demo();
        // Valid for the CRD (a map of strings), invalid for a pod: the Deployment is refused.
        doc["spec"]["resources"]["nodeSelector"] = json!({"bad key!": "x"});
        env.apply(&doc, "refused").await?;
        let message = env
            .wait_glmd(
                "refused",
                "Degraded=True with ChildRejected",
                Duration::from_secs(60),
                |g| {
                    let c = g.status.as_ref()?.condition(conditions::DEGRADED)?;
                    (c.status == "True" && c.reason == reasons::CHILD_REJECTED)
                        .then(|| c.message.clone())
                },
            )
            .await?;
        check(
            message.contains("nodeSelector") && message.contains("Deployment"),
            format!("the API server's message names the child and the field: {message}"),
        )?;
        env.wait_until(
            "a Warning Event ChildRejected",
            Duration::from_secs(30),
            || {
                let env = Arc::clone(&env);
                async move {
                    let events = env.events_for("refused", reasons::CHILD_REJECTED).await?;
                    let warned = events.iter().any(|e| e.starts_with("Warning: "));
                    Ok((!warned).then(|| format!("{events:?}")))
                }
            },
        )
        .await
    })
    .await;
}

/// Records every Ready condition the GlmDeployment shows from now on (a watch sees each
/// status write, so a short flap is not missed between polls).
fn record_ready(env: &Arc<E2e>, name: &str) -> Arc<Mutex<Vec<String>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let api: Api<GlmDeployment> = env.glmds();
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let out = Arc::clone(&seen);
    tokio::spawn(async move {
        let mut stream = watcher(api, config).applied_objects().boxed();
        while let Some(Ok(g)) = stream.next().await {
            let ready = g
                .status
                .as_ref()
                .and_then(|s| s.condition(conditions::READY))
                .map(|c| format!("{}/{}: {}", c.status, c.reason, c.message))
                .unwrap_or_else(|| "absent".into());
            if let Ok(mut v) = out.lock() {
                v.push(ready);
            }
        }
    });
    seen
}

#[tokio::test]
async fn scaling_keeps_ready_true() {
    with_env("scale_keeps_ready", |env| async move {
        let mut doc = demo();
        doc["spec"]["replicas"] = json!(1);
        env.apply(&doc, "scaled").await?;
        env.wait_ready("scaled", ready_timeout()).await?;
        let seen = record_ready(&env, "scaled");
        for replicas in [2, 1] {
            let g = env
                .patch_spec("scaled", json!({ "replicas": replicas }))
                .await?;
            let generation = g.metadata.generation;
            env.wait_glmd(
                "scaled",
                &format!("{replicas} ready replicas at the new generation"),
                ready_timeout(),
                |g| {
                    let s = g.status.as_ref()?;
                    (s.observed_generation == generation
                        && s.ready_replicas == replicas
                        && s.replicas == replicas)
                        .then_some(())
                },
            )
            .await?;
        }
        let seen = seen.lock().map(|v| v.clone()).unwrap_or_default();
        let not_ready: Vec<&String> = seen.iter().filter(|r| !r.starts_with("True/")).collect();
        check(
            !seen.is_empty() && not_ready.is_empty(),
            format!("Ready left True during a scale: {not_ready:?} (all: {seen:?})"),
        )
    })
    .await;
}

fn service_ports(svc: &Service) -> Vec<(Option<String>, i32)> {
    svc.spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .map(|ps| ps.iter().map(|p| (p.name.clone(), p.port)).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_hand_edited_service_is_repaired() {
    with_env("drift_repair", |env| async move {
        env.apply(&demo(), "drift").await?;
        let g = env.wait_ready("drift", ready_timeout()).await?;
        let services: Api<Service> = Api::namespaced(env.client.clone(), &env.namespace);
        let name = E2e::service_of(&g);
        let original = service_ports(&services.get(&name).await?);
        // `kubectl patch svc drift --type=merge -p '{"spec":{"ports":[...9000...]}}'`: the
        // port list (keyed by port) gets an entry of another manager, named like ours.
        let edit = json!({"spec": {"ports": [{
            "name": "http", "port": 9000, "targetPort": "http", "protocol": "TCP"
        }]}});
        services
            .patch(
                &name,
                &PatchParams {
                    field_manager: Some("kubectl-patch".into()),
                    ..PatchParams::default()
                },
                &Patch::Merge(&edit),
            )
            .await?;
        env.wait_until(
            "the Service's ports are the operator's again",
            Duration::from_secs(60),
            || {
                let (services, name, original) = (services.clone(), name.clone(), original.clone());
                async move {
                    let now = service_ports(&services.get(&name).await?);
                    Ok((now != original).then(|| format!("ports {now:?}, want {original:?}")))
                }
            },
        )
        .await?;
        let g = env.wait_ready("drift", Duration::from_secs(30)).await?;
        let s = g.status.unwrap_or_default();
        check(
            !s.is_true(conditions::DEGRADED) && s.is_true(conditions::MODEL_READY),
            format!("healthy after the repair: {:?}", s.conditions),
        )
    })
    .await;
}

#[tokio::test]
async fn an_operator_restart_makes_no_duplicate_children() {
    with_env("operator_restart", |env| async move {
        env.apply(&demo(), "steady").await?;
        env.wait_ready("steady", ready_timeout()).await?;
        let before = env.children("steady").await?;
        let sets: Api<ReplicaSet> = Api::namespaced(env.client.clone(), &env.namespace);
        let lp = ListParams::default().labels(&format!("{}=steady", glm_crds::labels::DEPLOYMENT));
        let sets_before = sets.list(&lp).await?.items.len();
        // Restart into an operator that holds the leader Lease, then stop that one: it must
        // exit on SIGTERM and give the Lease up (a standby takes over at once, not after the
        // Lease expires), then a third operator takes over the same objects.
        let exited = env
            .restart_operator(Duration::from_secs(15), Some("e2e-leader"))
            .await?;
        check(exited, "the operator exits by itself on SIGTERM")?;
        if env.runs_operator().await {
            let leases: Api<Lease> = Api::namespaced(env.client.clone(), &env.namespace);
            env.wait_until(
                "the new operator holds the Lease",
                Duration::from_secs(30),
                || {
                    let leases = leases.clone();
                    async move {
                        let holder = leases
                            .get_opt(E2E_LEASE)
                            .await?
                            .and_then(|l| l.spec)
                            .and_then(|s| s.holder_identity);
                        Ok(
                            (holder.as_deref() != Some("e2e-leader"))
                                .then(|| format!("{holder:?}")),
                        )
                    }
                },
            )
            .await?;
            let exited = env.restart_operator(Duration::from_secs(15), None).await?;
            check(exited, "the leading operator exits by itself on SIGTERM")?;
            let holder = leases
                .get(E2E_LEASE)
                .await?
                .spec
                .and_then(|s| s.holder_identity);
            check(
                holder.is_none(),
                format!("the Lease is released on SIGTERM, holder {holder:?}"),
            )?;
        }
        // The new operator reconciles everything at start; give it a few rounds.
        tokio::time::sleep(Duration::from_secs(8)).await;
        let g = env.wait_ready("steady", Duration::from_secs(30)).await?;
        let after = env.children("steady").await?;
        check(
            after == before,
            format!("children before {before:?}, after {after:?}"),
        )?;
        let sets_after = sets.list(&lp).await?.items.len();
        check(
            sets_after == sets_before,
            format!(
                "a restart rolled the pods: {sets_before} ReplicaSets before, {sets_after} after"
            ),
        )?;
        check(
            g.status.is_some_and(|s| s.ready_replicas >= 1),
            "still serving",
        )
    })
    .await;
}

#[tokio::test]
async fn tensor_parallelism_is_reported_unsupported_and_no_pods_are_rendered() {
    with_env("tp_unsupported", |env| async move {
        let mut doc = demo();
        doc["spec"]["resources"]["gpus"] = json!(2);
        doc["spec"]["server"]["tensorParallelSize"] = json!(2);
        env.apply(&doc, "tp").await?;
        let message = env
            .wait_glmd(
                "tp",
                "Degraded=True with UnsupportedByServer",
                Duration::from_secs(60),
                |g| {
                    let c = g.status.as_ref()?.condition(conditions::DEGRADED)?;
                    (c.status == "True" && c.reason == reasons::UNSUPPORTED_BY_SERVER)
                        .then(|| c.message.clone())
                },
            )
            .await?;
        check(
            message.contains("tensorParallelSize"),
            format!("names the field: {message}"),
        )?;
        let children = env.children("tp").await?;
        check(
            children.deployments.is_empty(),
            format!("no server Deployment: {children:?}"),
        )
    })
    .await;
}

#[tokio::test]
async fn a_missing_repo_fails_the_download_at_once() {
    with_env("download_not_found", |env| async move {
        if !env.pods_are_local() {
            println!(
                "SKIP download_not_found: needs pods that reach this machine (stand-in kubelet)"
            );
            return Ok(());
        }
        // A hub with no repository at all: 404 with `X-Error-Code: RepoNotFound`.
        let hub = glm_test_hub::MockHub::start()
            .await
            .map_err(|e| E2eError::Check(format!("cannot start the test hub: {e}")))?;
        let doc = json!({
            "apiVersion": "serving.glm.dev/v1alpha1",
            "kind": "GlmDeployment",
            "metadata": {},
            "spec": {
                "model": {"repo": "nobody/no-such-model", "hubEndpoint": hub.url,
                          "download": {"backoffLimit": 3}},
                "resources": {"gpus": 0, "cpu": "500m", "memory": "512Mi"},
                "cache": {"size": "1Gi"},
                "replicas": 1
            }
        });
        env.apply(&doc, "missing").await?;
        let message = env
            .wait_glmd(
                "missing",
                "Degraded=True with DownloadFailed",
                Duration::from_secs(90),
                |g| {
                    let c = g.status.as_ref()?.condition(conditions::DEGRADED)?;
                    (c.status == "True" && c.reason == reasons::DOWNLOAD_FAILED)
                        .then(|| c.message.clone())
                },
            )
            .await?;
        check(
            message.contains("not_found") && message.contains("nobody/no-such-model"),
            format!("the download's own error: {message}"),
        )?;
        // podFailurePolicy: one attempt, not backoffLimit + 1 of them.
        let pods: Api<k8s_openapi::api::core::v1::Pod> =
            Api::namespaced(env.client.clone(), &env.namespace);
        let job = env.children("missing").await?.jobs;
        check(job.len() == 1, format!("one download Job: {job:?}"))?;
        let attempts = pods
            .list(&ListParams::default().labels(&format!("job-name={}", job[0])))
            .await?
            .items
            .len();
        check(
            attempts == 1,
            format!("{attempts} download pods for a permanent failure (backoffLimit 3)"),
        )
    })
    .await;
}

#[tokio::test]
async fn a_broken_rollout_is_rolled_back() {
    with_env("rollback", |env| async move {
        let mut doc = demo();
        doc["spec"]["rollout"] = json!({"progressDeadlineSeconds": 60, "drainSeconds": 2});
        env.apply(&doc, "broken").await?;
        env.wait_ready("broken", ready_timeout()).await?;
        // A flag the server refuses: the new pods exit at once and never become ready.
        env.patch_spec(
            "broken",
            json!({"server": {"extraArgs": ["--no-such-flag-e2e"]}}),
        )
        .await?;
        let status = env
            .wait_glmd(
                "broken",
                "Degraded=True RolledBack and Ready=True again",
                Duration::from_secs(240),
                |g| {
                    let s = g.status.as_ref()?;
                    let degraded = s.condition(conditions::DEGRADED)?;
                    (degraded.status == "True"
                        && degraded.reason == "RolledBack"
                        && s.is_true(conditions::READY)
                        && s.failed_revision.is_some())
                    .then(|| s.clone())
                },
            )
            .await?;
        let deployments: Api<k8s_openapi::api::apps::v1::Deployment> =
            Api::namespaced(env.client.clone(), &env.namespace);
        let d = deployments.get("broken").await?;
        let args = d
            .spec
            .and_then(|s| s.template.spec)
            .and_then(|p| p.containers.into_iter().next())
            .and_then(|c| c.args)
            .unwrap_or_default();
        check(
            !args.iter().any(|a| a == "--no-such-flag-e2e"),
            format!("the template is the last ready one again: {args:?}"),
        )?;
        check(
            status.failed_revision != status.current_revision,
            format!(
                "failed {:?} vs current {:?}",
                status.failed_revision, status.current_revision
            ),
        )
    })
    .await;
}
