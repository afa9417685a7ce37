//! glm-operator binary: parse config, connect, serve admin HTTP, (optionally) win the leader
//! Lease, then run the controller until SIGTERM/Ctrl-C or lost leadership.

use std::{
    process::ExitCode,
    sync::{atomic::AtomicBool, Arc},
    time::Duration,
};

use clap::Parser;
use glm_crds::GlmDeployment;
use glm_operator::{
    admin::{self, AdminState},
    config::Config,
    controller::{run_namespace, Context, ControllerConfig},
    leader::LeaderElector,
    metrics::Metrics,
    telemetry,
};
use kube::{api::ListParams, Api, Client};
use tokio::sync::watch;
use tracing::{error, info};

const HINT: &str =
    "point KUBECONFIG at a cluster (e.g. `kind create cluster` or `k3d cluster create`) \
                    or run the operator in-cluster";

/// Connects and checks that the apiserver answers and the CRD is installed.
/// Connects and checks that GlmDeployments can be listed where the operator watches: in the
/// first watched namespace when namespaced (the chart then grants Roles only), else cluster-wide.
async fn connect(namespaces: &[String]) -> Result<Client, String> {
    let client = Client::try_default()
        .await
        .map_err(|e| format!("glm-operator: no Kubernetes cluster configured ({e}); {HINT}"))?;
    match tokio::time::timeout(Duration::from_secs(10), client.apiserver_version()).await {
        Ok(Ok(v)) => info!(version = %v.git_version, "connected to the Kubernetes API server"),
        Ok(Err(e)) => {
            return Err(format!(
                "glm-operator: the Kubernetes API server is unreachable ({e}); {HINT}"
            ))
        }
        Err(_) => {
            return Err(format!(
                "glm-operator: the Kubernetes API server did not answer within 10 s; {HINT}"
            ))
        }
    }
    let glmds: Api<GlmDeployment> = match namespaces.first() {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    if let Err(e) = glmds.list(&ListParams::default().limit(1)).await {
        return Err(format!(
            "glm-operator: cannot list GlmDeployments ({e}); install the CRD with \
             `kubectl apply -f crds/glmdeployment.yaml` (or the Helm chart) and check RBAC"
        ));
    }
    Ok(client)
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {},
                    _ = tokio::signal::ctrl_c() => {},
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    telemetry::init(config.log_format);
    let client = match connect(&config.namespaces).await {
        Ok(c) => c,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::from(2);
        }
    };

    // Stop everything on SIGTERM/Ctrl-C.
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        info!("shutting down");
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|v| *v).await;
    };

    let metrics = Arc::new(Metrics::default());
    let ready = Arc::new(AtomicBool::new(false));
    let admin_state = AdminState {
        metrics: metrics.clone(),
        ready: ready.clone(),
    };
    let admin_port = config.admin_port;
    let admin_stop = stopped(stop_rx.clone());
    tokio::spawn(async move {
        if let Err(e) = admin::serve(admin_port, admin_state, admin_stop).await {
            error!(error = %e, port = admin_port, "admin server failed");
        }
    });

    let identity = config
        .identity
        .clone()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| format!("glm-operator-{}", std::process::id()));

    // Leadership: standby replicas are ready (they serve /metrics) but do not reconcile.
    let (leader_tx, mut leader_rx) = watch::channel(!config.leader_election);
    // Without an election the sender stays here, alive (a dropped sender reads as "lost").
    let mut idle_leader_tx = None;
    let elector = if config.leader_election {
        let elector = LeaderElector::new(
            client.clone(),
            &config.lease_namespace,
            &config.lease_name,
            &identity,
            config.lease_seconds,
        );
        let task = tokio::spawn(elector.clone().run(leader_tx, stop_rx.clone()));
        Some((elector, task))
    } else {
        idle_leader_tx = Some(leader_tx);
        None
    };
    ready.store(true, std::sync::atomic::Ordering::Relaxed);
    {
        let mut stop = stop_rx.clone();
        tokio::select! {
            _ = leader_rx.wait_for(|v| *v) => {},
            _ = stop.wait_for(|v| *v) => return ExitCode::SUCCESS,
        }
    }
    metrics.leader.set(1);
    info!(identity = %identity, "leading; starting controllers");

    let ctx = match Context::new(
        client,
        metrics.clone(),
        ControllerConfig {
            default_image: config.default_image.clone(),
        },
        Some(identity),
    ) {
        Ok(ctx) => Arc::new(ctx),
        Err(e) => {
            eprintln!("glm-operator: {e}");
            return ExitCode::from(2);
        }
    };
    // Leadership lost also stops the controllers; the process then exits so a restart
    // re-enters the election cleanly.
    let (halt_tx, halt_rx) = watch::channel(false);
    let lost = {
        let halt_tx = halt_tx.clone();
        let mut leader_rx = leader_rx.clone();
        let mut stop = stop_rx.clone();
        let stopping = stop_rx.clone();
        tokio::spawn(async move {
            tokio::select! {
                // The elector ends (and drops its sender) on SIGTERM: that is no lost Lease.
                res = leader_rx.wait_for(|v| !*v) => {
                    let _ = halt_tx.send(true);
                    res.is_ok() && !*stopping.borrow()
                }
                _ = stop.wait_for(|v| *v) => { let _ = halt_tx.send(true); false }
            }
        })
    };
    let namespaces: Vec<Option<String>> = if config.namespaces.is_empty() {
        vec![None]
    } else {
        config.namespaces.iter().cloned().map(Some).collect()
    };
    let runs = namespaces
        .into_iter()
        .map(|ns| run_namespace(ctx.clone(), ns, stopped(halt_rx.clone())));
    futures::future::join_all(runs).await;
    drop(idle_leader_tx);
    ctx.autoscaler.stop_all();
    metrics.leader.set(0);
    // On SIGTERM hand the Lease over now (controllers have stopped): a standby takes over in
    // one of its rounds instead of after the Lease expires.
    if let Some((elector, task)) = elector {
        if *stop_rx.borrow() {
            let _ = task.await;
            if let Err(e) = elector.release().await {
                error!(error = %e, "cannot release the leader Lease; it expires on its own");
            }
        }
    }
    match lost.await {
        Ok(true) => {
            error!("lost leadership; exiting");
            ExitCode::from(1)
        }
        _ => ExitCode::SUCCESS,
    }
}
