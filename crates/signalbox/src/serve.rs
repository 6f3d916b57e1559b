//! `signalbox serve`: builds every component from the config, binds the listeners, and runs
//! until SIGTERM or SIGINT. SIGHUP, or a change to the config file, reloads: the new config is
//! validated and swapped in, or rejected with the reasons logged while the old one stays.

use crate::cli::ServeOpts;
use crate::config::{self, FileConfig, Loaded};
use anyhow::Context;
use signalbox_api::admin::{AdminState, router};
use signalbox_core::config::Problems;
use signalbox_core::metrics::Registry;
use signalbox_core::telemetry::DroppingSink;
use signalbox_gateway::config::{RouteConfig, ServiceConfig};
use signalbox_gateway::{Deps, Gateway};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;
use tokio::signal::unix::{SignalKind, signal};

pub fn main(opts: ServeOpts) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(opts)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("signalbox: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Loads the file and environment, then applies command-line overrides.
fn load(opts: &ServeOpts) -> Result<Loaded, config::ConfigError> {
    let mut loaded = config::load(opts.config.as_deref(), std::env::vars())?;
    let c = &mut loaded.config;
    if let Some(d) = &opts.data_dir {
        c.node.data_dir = d.clone();
    }
    if let Some(l) = &opts.listen {
        c.gateway.listen = l.clone();
    }
    if let Some(l) = &opts.console_listen {
        c.console.listen = l.clone();
    }
    let mut added_services = Vec::new();
    let mut added_routes = Vec::new();
    for (i, spec) in opts.routes.iter().enumerate() {
        let (prefix, urls) = spec.split_once('=').ok_or_else(|| config::ConfigError {
            file: None,
            problems: vec![(
                0,
                signalbox_core::config::Problem {
                    path: format!("--route {spec}"),
                    message: "expected PREFIX=URL[,URL...], e.g. /api=http://127.0.0.1:9000".into(),
                },
            )],
            repaired: None,
        })?;
        let slug: String =
            prefix.trim_matches('/').chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
        let name = format!("cli-{}-{i}", if slug.is_empty() { "root" } else { &slug });
        added_services.push(ServiceConfig {
            name: name.clone(),
            endpoints: urls.split(',').map(|u| u.trim().to_owned()).filter(|u| !u.is_empty()).collect(),
            ..ServiceConfig::default()
        });
        let mut route = RouteConfig { name: Some(name.clone()), service: name, ..RouteConfig::default() };
        route.matcher.path_prefix = Some(prefix.to_owned());
        added_routes.push(route);
    }
    c.gateway.services.extend(added_services);
    added_routes.append(&mut c.gateway.routes);
    c.gateway.routes = added_routes;
    Ok(loaded)
}

/// Validates a whole config without starting anything.
pub fn validate(c: &FileConfig) -> Problems {
    let mut p = Problems::default();
    if c.console.listen.parse::<std::net::SocketAddr>().is_err() {
        p.add("console.listen", format!("`{}` is not an address like 127.0.0.1:9900", c.console.listen));
    }
    if !matches!(c.node.log_format.as_str(), "text" | "json") {
        p.add("node.log_format", format!("unknown format `{}`: expected text or json", c.node.log_format));
    }
    if c.node.data_dir.is_empty() {
        p.add("node.data_dir", "must not be empty");
    }
    if let Err(e) = tracing_subscriber::EnvFilter::try_new(&c.node.log_level) {
        p.add("node.log_level", format!("invalid filter: {e}"));
    }
    if let Err(g) = signalbox_gateway::check(&c.gateway, None) {
        p.list.extend(g.list);
    }
    p
}

async fn run(opts: ServeOpts) -> anyhow::Result<()> {
    let loaded = load(&opts).map_err(|e| anyhow::anyhow!("invalid config:\n{e}"))?;
    let problems = validate(&loaded.config);
    if !problems.is_empty() {
        anyhow::bail!("invalid config:\n{}", loaded.report(problems));
    }
    let cfg = loaded.config.clone();
    crate::logging::init(&cfg.node.log_format, &cfg.node.log_level);
    // One TLS crypto provider for the whole process (ring: the lighter build).
    let _ = rustls::crypto::ring::default_provider().install_default();
    std::fs::create_dir_all(&cfg.node.data_dir)
        .with_context(|| format!("cannot create data dir `{}`", cfg.node.data_dir))?;

    let registry = Registry::new();
    registry.register_process_metrics();
    let gateway = Gateway::new(
        cfg.gateway.clone(),
        Deps { registry: registry.clone(), spans: Arc::new(DroppingSink), discovery: None },
    )
    .map_err(|p| anyhow::anyhow!("invalid config:\n{}", loaded.report(p)))?;

    let (trigger, shutdown) = signalbox_core::shutdown::channel();
    let listeners =
        gateway.bind().await.with_context(|| format!("cannot bind the gateway on {}", cfg.gateway.listen))?;
    let console = signalbox_gateway::server::bind(&cfg.console.listen)
        .await
        .with_context(|| format!("cannot bind the console on {}", cfg.console.listen))?;
    tracing::info!(gateway = %listeners.plain_addr()?, tls = ?listeners.tls_addr(), console = %console.local_addr()?, data_dir = %cfg.node.data_dir, "signalbox is up");

    let ready = Arc::new(AtomicBool::new(false));
    let admin = router(AdminState { registry: registry.clone(), gateway: Some(gateway.clone()), ready: ready.clone() });
    let api_task = tokio::spawn(signalbox_api::serve(console, admin, shutdown.clone()));
    let gw = gateway.clone();
    let gw_task = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { gw.serve(listeners, shutdown).await }
    });
    ready.store(true, Ordering::Release);

    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut tick = tokio::time::interval(cfg.node.watch_interval.0.max(std::time::Duration::from_millis(100)));
    let mut last_mtime = opts.config.as_deref().and_then(mtime);
    loop {
        tokio::select! {
            _ = hup.recv() => reload(&opts, &gateway, "SIGHUP"),
            _ = tick.tick() => {
                let m = opts.config.as_deref().and_then(mtime);
                if m != last_mtime {
                    last_mtime = m;
                    reload(&opts, &gateway, "config file changed");
                }
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    tracing::info!("shutting down");
    ready.store(false, Ordering::Release);
    trigger.trigger();
    let _ = gw_task.await;
    let _ = api_task.await;
    Ok(())
}

fn mtime(p: &std::path::Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

fn reload(opts: &ServeOpts, gateway: &Gateway, why: &str) {
    let loaded = match load(opts) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(reason = why, problems = %e, "config rejected; keeping the running config");
            return;
        }
    };
    match gateway.reload(loaded.config.gateway.clone()) {
        Ok(()) => tracing::info!(reason = why, "config reloaded"),
        Err(p) => {
            tracing::error!(reason = why, problems = %loaded.report(p), "config rejected; keeping the running config")
        }
    }
}
