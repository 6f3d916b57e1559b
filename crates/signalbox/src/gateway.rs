//! `signalbox gateway --control-plane URL[,URL...]`: the gateway alone. Routes and services
//! come from the config file (and flags); services without static endpoints follow the
//! remote registry through its blocking-query API. Losing the control plane keeps the last
//! known endpoints (never an empty table) and reconnects with backoff. Traffic policies
//! follow the remote central configuration (`gateway/traffic/<service>`) the same way.
//!
//! With several nodes (sharing their state on etcd) the gateway follows one; a connection
//! error, a timeout or a broken stream moves every follower to the next node at once, and
//! blocking queries resume there from the same index (etcd's revision, the same on every
//! node). The routes in use stay meanwhile.

use crate::cli::GatewayOpts;
use anyhow::Context;
use axum::Json;
use axum::routing::get;
use serde_json::json;
use signalbox_client::{Client, RemoteEndpoints};
use signalbox_core::metrics::Registry;
use signalbox_core::telemetry::{DroppingSink, SpanSink};
use signalbox_core::views::GatewayView;
use signalbox_gateway::{Deps, Gateway};
use std::process::ExitCode;
use std::sync::Arc;
use tokio::signal::unix::{SignalKind, signal};

pub fn main(opts: GatewayOpts) -> ExitCode {
    crate::block_on(run(opts))
}

async fn run(opts: GatewayOpts) -> anyhow::Result<()> {
    let loaded = crate::serve::load(&opts.serve).map_err(|e| anyhow::anyhow!("invalid config:\n{e}"))?;
    let cfg = loaded.config.clone();
    crate::logging::init(&cfg.node.log_format, &cfg.node.log_level);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let nodes =
        if opts.control_plane.is_empty() { cfg.control.control_planes.clone() } else { opts.control_plane.clone() };
    let nodes: Vec<String> = nodes.into_iter().map(|n| n.trim().to_owned()).filter(|n| !n.is_empty()).collect();
    if nodes.is_empty() {
        anyhow::bail!(
            "no control plane to follow: give --control-plane URL (repeat it, or a comma-separated list, for several nodes) or `[control] control_planes` in the config file"
        );
    }
    for (i, n) in nodes.iter().enumerate() {
        signalbox_control::backend::config::check_node_url(n)
            .map_err(|m| anyhow::anyhow!("invalid --control-plane (node {}): {m}", i + 1))?;
    }
    let client = Client::with_failover(&nodes, opts.token.clone());
    let remote = Arc::new(RemoteEndpoints::new(client.clone()));
    let registry = Registry::new();
    registry.register_process_metrics();
    let (stop_export, export_stopped) = signalbox_core::shutdown::channel();
    let exporter = match &opts.otlp_endpoint {
        Some(e) => Some(crate::export::start(e, opts.token.clone(), &registry, export_stopped)?),
        None => None,
    };
    let (spans, export_task): (Arc<dyn SpanSink>, _) = match exporter {
        Some(x) => (Arc::new(x.sink), Some(x.task)),
        None => (Arc::new(DroppingSink), None),
    };
    let gateway = Gateway::new(
        cfg.gateway.clone(),
        Deps { registry: registry.clone(), spans, discovery: Some(remote.clone()), logs: None },
    )
    .map_err(|p| anyhow::anyhow!("invalid config:\n{}", loaded.report(p)))?;
    let (trigger, shutdown) = signalbox_core::shutdown::channel();
    let listeners =
        gateway.bind().await.with_context(|| format!("cannot bind the gateway on {}", cfg.gateway.listen))?;
    let admin_listener = signalbox_gateway::server::bind(&cfg.console.listen)
        .await
        .with_context(|| format!("cannot bind the admin port on {}", cfg.console.listen))?;
    let g: Arc<dyn GatewayView> = gateway.clone();
    let (g1, g2, g3) = (g.clone(), g.clone(), g);
    let reg = registry.clone();
    let admin = axum::Router::new()
        .route("/healthz", get(|| async { Json(json!({ "status": "ok" })) }))
        .route("/readyz", get(|| async { Json(json!({ "status": "ready" })) }))
        .route(
            "/metrics",
            get(move || async move {
                ([(http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], reg.render())
            }),
        )
        .route("/api/gateway/routes", get(move || async move { Json(g1.routes()) }))
        .route("/api/gateway/services", get(move || async move { Json(g2.services()) }))
        .route("/api/gateway/circuits", get(move || async move { Json(g3.circuits()) }))
        .route("/api/gateway/control-plane", {
            let c = client.clone();
            get(move || async move { Json(json!({ "following": c.base(), "nodes": c.bases() })) })
        });
    // The admin port has the same connection caps and timeouts as the node's API ports.
    let admin_task = tokio::spawn(signalbox_api::serve(
        admin_listener,
        admin,
        signalbox_api::ListenerLimits::default(),
        shutdown.clone(),
    ));
    tokio::spawn(follow_remote_traffic(client.clone(), gateway.clone()));
    let gw = gateway.clone();
    let gw_task = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { gw.serve(listeners, shutdown).await }
    });
    tracing::info!(
        gateway = %cfg.gateway.listen, control_plane = %nodes.join(","), otlp = opts.otlp_endpoint.as_deref(),
        "signalbox gateway is up"
    );
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    loop {
        tokio::select! {
            _ = hup.recv() => match crate::serve::load(&opts.serve) {
                Ok(l) => match gateway.reload(l.config.gateway.clone()) {
                    Ok(()) => tracing::info!("gateway config reloaded"),
                    Err(p) => tracing::error!(problems = %l.report(p), "config rejected; keeping the running config"),
                },
                Err(e) => tracing::error!(problems = %e, "config rejected; keeping the running config"),
            },
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    trigger.trigger();
    let _ = gw_task.await;
    let _ = admin_task.await;
    // The gateway has answered its last request: send what it recorded, then stop.
    stop_export.trigger();
    if let Some(t) = export_task {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), t).await;
    }
    Ok(())
}

/// Applies the remote node's traffic policies, then follows their changes; while the node is
/// unreachable the last policies stay.
async fn follow_remote_traffic(c: Client, gateway: Arc<Gateway>) {
    use signalbox_core::traffic::{GATEWAY_APP, TRAFFIC_PROFILE};
    let mut changes = c.config_watch(Some(GATEWAY_APP.into()), Some(TRAFFIC_PROFILE.into()));
    let list = format!("/api/config?application={GATEWAY_APP}&profile={TRAFFIC_PROFILE}");
    loop {
        match c.request(http::Method::GET, &list, None).await {
            Ok(v) => {
                let docs = v["entries"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|e| Some((e["key"].as_str()?.to_owned(), e["value"].as_str()?.to_owned())))
                    .collect();
                gateway.apply_traffic_policies(&docs);
                break;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read traffic policies from the control plane; retrying");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        }
    }
    while let Some(ch) = changes.recv().await {
        let Some(key) = ch["key"].as_str() else { continue };
        let doc = if ch["deleted"] == true {
            None
        } else {
            match c.config_get(GATEWAY_APP, TRAFFIC_PROFILE, key).await {
                Ok(v) => v["value"].as_str().map(str::to_owned),
                Err(e) => {
                    tracing::warn!(service = key, error = %e, "cannot read a changed traffic policy");
                    continue;
                }
            }
        };
        let _ = gateway.apply_traffic_policy(key, doc.as_deref());
    }
}
