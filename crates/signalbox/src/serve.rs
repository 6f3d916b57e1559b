//! `signalbox serve`: builds every component from the config, binds the listeners, and runs
//! until SIGTERM or SIGINT. SIGHUP, or a change to the config file, reloads: the new config is
//! validated and swapped in, or rejected with the reasons logged while the old one stays.
//! The gateway also follows its routes in central configuration (`configuration.gateway_key`).

use crate::cli::ServeOpts;
use crate::config::{self, FileConfig, Loaded};
use anyhow::Context;
use serde::Deserialize;
use signalbox_api::AppState;
use signalbox_control::ControlPlane;
use signalbox_core::config::Problems;
use signalbox_core::metrics::Registry;
use signalbox_core::telemetry::DroppingSink;
use signalbox_gateway::config::{GatewayConfig, RouteConfig, ServiceConfig};
use signalbox_gateway::{Deps, Gateway};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use tokio::signal::unix::{SignalKind, signal};

pub fn main(opts: ServeOpts) -> ExitCode {
    crate::block_on(run(opts))
}

/// Loads the file and environment, then applies command-line overrides.
pub fn load(opts: &ServeOpts) -> Result<Loaded, config::ConfigError> {
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
    if let Some(l) = &opts.consul_listen {
        c.consul.listen = l.clone();
    }
    if let Some(l) = &opts.otlp_grpc_listen {
        c.otlp.grpc_listen = l.clone();
    }
    if let Some(l) = &opts.otlp_http_listen {
        c.otlp.http_listen = l.clone();
    }
    if let Some(l) = &opts.zipkin_listen {
        c.zipkin.listen = l.clone();
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
    crate::listeners::check(c, &mut p);
    if !matches!(c.node.log_format.as_str(), "text" | "json") {
        p.add("node.log_format", format!("unknown format `{}`: expected text or json", c.node.log_format));
    }
    if c.node.data_dir.is_empty() {
        p.add("node.data_dir", "must not be empty");
    }
    if let Err(e) = tracing_subscriber::EnvFilter::try_new(&c.node.log_level) {
        p.add("node.log_level", format!("invalid filter: {e}"));
    }
    for (i, t) in c.access.tokens.iter().enumerate() {
        if signalbox_control::access::Role::parse(&t.role).is_none() {
            p.add(format!("access.tokens[{i}].role"), format!("`{}` is not read, ingest, edit or admin", t.role));
        }
        if t.sha256.len() != 64 || !t.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            p.add(
                format!("access.tokens[{i}].sha256"),
                "must be 64 hex digits (`signalbox hash-key SECRET` prints them)",
            );
        }
        if t.id.is_empty() {
            p.add(format!("access.tokens[{i}].id"), "must not be empty");
        }
    }
    c.traces.check("traces", &mut p);
    c.logs.check("logs", &mut p);
    c.metrics.check("metrics", &mut p);
    c.control.check("control", &mut p);
    if c.control.backend == signalbox_control::backend::config::BackendKind::Etcd {
        c.cluster.check("cluster", !c.access.tokens.is_empty(), &mut p);
    }
    c.ingest.check("ingest", &mut p);
    if c.ingest.buffered()
        && c.control.backend == signalbox_control::backend::config::BackendKind::Etcd
        && c.ingest.partitions != c.cluster.partitions
    {
        // The storage node that owns a partition (cluster layer) is the one that consumes it.
        p.add(
            "ingest.partitions",
            format!("must equal cluster.partitions ({}) when the control state is on etcd", c.cluster.partitions),
        );
    }

    c.export.check("export", &mut p);
    if !c.configuration.gateway_key.is_empty() && central_key(&c.configuration.gateway_key).is_none() {
        p.add("configuration.gateway_key", "must be application/profile/key");
    }
    // Services without static endpoints follow the registry, which knows every name.
    if let Err(g) = signalbox_gateway::check(&c.gateway, Some(&AnyService)) {
        p.list.extend(g.list);
    }
    p
}

/// A discovery source that accepts every service name, standing in for the registry when
/// a config is checked without a running node.
struct AnyService;

impl signalbox_core::discovery::EndpointSource for AnyService {
    fn subscribe(&self, _: &str) -> Option<tokio::sync::watch::Receiver<signalbox_core::discovery::EndpointSet>> {
        Some(tokio::sync::watch::channel(Arc::new(Vec::new())).1)
    }
}

fn central_key(k: &str) -> Option<(String, String, String)> {
    let mut it = k.splitn(3, '/');
    let (a, p, key) = (it.next()?, it.next()?, it.next()?);
    (!a.is_empty() && !p.is_empty() && !key.is_empty()).then(|| (a.to_owned(), p.to_owned(), key.to_owned()))
}

/// Extra gateway services and routes kept in central configuration.
#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct CentralGateway {
    services: Vec<ServiceConfig>,
    routes: Vec<RouteConfig>,
}

/// The gateway config in force: the file's, plus the services and routes from central
/// configuration (after the file's). Problems in the central part are named by its own key
/// paths.
pub fn effective_gateway(
    file: &GatewayConfig,
    central: Option<&str>,
    discovery: &dyn signalbox_core::discovery::EndpointSource,
) -> Result<GatewayConfig, String> {
    let mut merged = file.clone();
    let Some(text) = central.filter(|t| !t.trim().is_empty()) else { return Ok(merged) };
    let extra: CentralGateway = toml::from_str(text).map_err(|e| format!("invalid TOML: {}", e.message()))?;
    let (ns, nr) = (merged.services.len(), merged.routes.len());
    merged.services.extend(extra.services);
    merged.routes.extend(extra.routes);
    signalbox_gateway::check(&merged, Some(discovery)).map_err(|p| {
        p.list
            .iter()
            .map(|x| {
                let path = relocate(&x.path, "gateway.services[", ns)
                    .or_else(|| relocate(&x.path, "gateway.routes[", nr))
                    .unwrap_or_else(|| x.path.clone());
                format!("{path}: {}", x.message)
            })
            .collect::<Vec<_>>()
            .join("; ")
    })?;
    Ok(merged)
}

/// `gateway.routes[5].x` with 3 routes from the file → `routes[2].x` (of the central document).
fn relocate(path: &str, prefix: &str, offset: usize) -> Option<String> {
    let rest = path.strip_prefix(prefix)?;
    let (n, tail) = rest.split_once(']')?;
    let i: usize = n.parse().ok()?;
    let short = prefix.trim_start_matches("gateway.");
    (i >= offset).then(|| format!("{short}{}]{tail}", i - offset))
}

/// Refuses to expose an API beyond loopback without access control.
fn check_exposure(cfg: &FileConfig, control: &ControlPlane, insecure: bool) -> anyhow::Result<()> {
    if insecure || control.access.enabled() {
        return Ok(());
    }
    for l in crate::listeners::table(cfg) {
        let (key, addr) = (l.key, l.addr.as_str());
        if let Ok(a) = addr.parse::<SocketAddr>()
            && !a.ip().is_loopback()
        {
            anyhow::bail!(
                "refusing to listen on {addr} ({key}) without access control: anyone who can reach it could change the registry and configuration.\n\
                 Add a token under [access] (for example `tokens = [{{ id = \"ops\", role = \"admin\", sha256 = \"...\" }}]`, \
                 with the hash from `signalbox hash-key YOUR-SECRET`), or listen on 127.0.0.1, or pass --insecure to run without access control."
            );
        }
    }
    Ok(())
}

pub fn settings(cfg: &FileConfig) -> signalbox_control::Settings {
    signalbox_control::Settings {
        registry: signalbox_control::registry::Limits { max_instances: cfg.registry.max_instances },
        config: signalbox_control::config::Limits {
            max_value_bytes: cfg.configuration.max_value_bytes.0 as usize,
            max_keys: cfg.configuration.max_keys,
        },
        file_tokens: cfg
            .access
            .tokens
            .iter()
            .map(|t| signalbox_control::access::Token {
                id: t.id.clone(),
                role: signalbox_control::access::Role::parse(&t.role).unwrap_or(signalbox_control::access::Role::Read),
                sha256: t.sha256.to_ascii_lowercase(),
                description: t.description.clone(),
                created_unix_ms: 0,
                expires_unix_ms: None,
                source: "file".into(),
            })
            .collect(),
        session_ttl: Some(cfg.access.session_ttl.0),
    }
}

/// Everything a reload needs.
struct Node {
    opts: ServeOpts,
    gateway: Arc<Gateway>,
    control: Arc<ControlPlane>,
    file_gateway: Mutex<GatewayConfig>,
    gateway_key: Option<(String, String, String)>,
    reloads_ok: signalbox_core::metrics::Counter,
    reloads_rejected: signalbox_core::metrics::Counter,
}

impl Node {
    fn central_text(&self) -> Option<String> {
        let (a, p, k) = self.gateway_key.as_ref()?;
        self.control.config.get(a, p, k, None).ok().map(|e| e.value)
    }

    /// Recomputes the gateway config from the file and central configuration and applies it.
    fn apply(&self, why: &str) {
        let file = self.file_gateway.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let effective = match effective_gateway(&file, self.central_text().as_deref(), self.control.registry.as_ref()) {
            Ok(g) => g,
            Err(m) => {
                tracing::error!(reason = why, problems = %m, "central gateway config rejected; keeping the running config");
                return;
            }
        };
        match self.gateway.reload(effective) {
            Ok(()) => {
                self.reloads_ok.inc();
                tracing::info!(reason = why, "gateway config reloaded")
            }
            Err(p) => {
                self.reloads_rejected.inc();
                let problems = p.list.iter().map(|x| x.to_string()).collect::<Vec<_>>().join("; ");
                tracing::error!(reason = why, problems = %problems, "config rejected; keeping the running config")
            }
        }
    }

    async fn reload_file(&self, why: &str) {
        match load(&self.opts) {
            Ok(l) => {
                let problems = validate(&l.config);
                if !problems.is_empty() {
                    self.reloads_rejected.inc();
                    tracing::error!(reason = why, problems = %l.report(problems), "config rejected; keeping the running config");
                    return;
                }
                // Tokens reload with everything else: removed ones stop working and their
                // sessions end; changed roles apply at once.
                if let Err(e) = self.control.access.reload_file_tokens(settings(&l.config).file_tokens).await {
                    self.reloads_rejected.inc();
                    tracing::error!(reason = why, error = %e, "access tokens rejected; keeping the running config");
                    return;
                }
                *self.file_gateway.lock().unwrap_or_else(|e| e.into_inner()) = l.config.gateway.clone();
                self.apply(why);
            }
            Err(e) => {
                self.reloads_rejected.inc();
                tracing::error!(reason = why, problems = %e, "config rejected; keeping the running config")
            }
        }
    }
}

/// The addresses a started node listens on (a port 0 in the config is the bound port).
#[derive(Clone, Debug)]
pub struct Started {
    pub console: SocketAddr,
    pub gateway: SocketAddr,
    pub otlp_grpc: Option<SocketAddr>,
    pub otlp_http: Option<SocketAddr>,
}

/// How a command that embeds a node (`signalbox demo`) runs it: the node stops when `stop`
/// fires instead of on SIGTERM/SIGINT, and reports its addresses once it serves.
pub struct Embedded {
    pub stop: signalbox_core::shutdown::Shutdown,
    pub started: tokio::sync::oneshot::Sender<Started>,
}

async fn run(opts: ServeOpts) -> anyhow::Result<()> {
    run_node(opts, None).await
}

/// Runs a node until a signal (or, embedded, until its stop signal), then drains it.
pub async fn run_node(opts: ServeOpts, embedded: Option<Embedded>) -> anyhow::Result<()> {
    let loaded = load(&opts).map_err(|e| anyhow::anyhow!("invalid config:\n{e}"))?;
    let problems = validate(&loaded.config);
    if !problems.is_empty() {
        anyhow::bail!("invalid config:\n{}", loaded.report(problems));
    }
    let cfg = loaded.config.clone();
    crate::logging::init(&cfg.node.log_format, &cfg.node.log_level);
    // One TLS crypto provider for the whole process (ring: the lighter build).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let data_dir = std::path::PathBuf::from(&cfg.node.data_dir);
    std::fs::create_dir_all(&data_dir).with_context(|| format!("cannot create data dir `{}`", cfg.node.data_dir))?;

    let control =
        Arc::new(ControlPlane::open_configured(&data_dir, settings(&cfg), &cfg.control).await.map_err(|e| {
            match cfg.control.backend {
                signalbox_control::backend::config::BackendKind::Embedded => {
                    anyhow::anyhow!("cannot open the control store in {}: {e}", data_dir.display())
                }
                signalbox_control::backend::config::BackendKind::Etcd => {
                    anyhow::anyhow!("cannot open the control state on etcd ([control.etcd]): {e}")
                }
            }
        })?);
    check_exposure(&cfg, &control, opts.insecure)?;

    let registry = Registry::new();
    registry.register_process_metrics();
    register_control_metrics(&registry, &control);
    crate::metrics::register_disk_metrics(&registry, &data_dir);
    let gateway_key = central_key(&cfg.configuration.gateway_key);
    let central = gateway_key.as_ref().and_then(|(a, p, k)| control.config.get(a, p, k, None).ok()).map(|e| e.value);
    let (gateway_cap, api_cap) = crate::listeners::fd_budget(
        cfg.gateway.limits.max_connections,
        cfg.connections.max_connections,
        crate::listeners::table(&cfg).len(),
    );
    let mut effective = match effective_gateway(&cfg.gateway, central.as_deref(), control.registry.as_ref()) {
        Ok(g) => g,
        Err(m) => {
            tracing::error!(problems = %m, "the gateway config in central configuration is invalid; starting with the file's");
            cfg.gateway.clone()
        }
    };
    effective.limits.max_connections = effective.limits.max_connections.min(gateway_cap);
    // Exporters start before the stores, which copy each durable write to them; they stop
    // after the stores' last writes (`export_stop`, below).
    let (export_stop, export_shutdown) = signalbox_core::shutdown::channel();
    let exporters = if cfg.export.is_empty() {
        None
    } else {
        let mut problems = Problems::default();
        let list = cfg.export.compile("export", &data_dir, &mut problems);
        if !problems.is_empty() {
            anyhow::bail!("invalid config:\n{}", loaded.report(problems));
        }
        Some(Arc::new(signalbox_export::Exporters::start(list, &registry, export_shutdown)?))
    };
    let tee = |signal| {
        exporters.as_ref().filter(|e| e.wants(signal)).map(|e| e.clone() as Arc<dyn signalbox_core::export::Tee>)
    };
    let traces = if cfg.traces.enabled {
        let t = start_traces(&cfg, &data_dir, &registry).context("cannot open the trace store")?;
        if let Some(tee) = tee(signalbox_export::config::Signal::Traces) {
            t.tee().set(tee);
        }
        Some(t)
    } else {
        None
    };
    let logs = if cfg.logs.enabled {
        let store = signalbox_events::logs::store::Logs::open(cfg.logs.store(&data_dir.join("logs")))
            .context("cannot open the log store")?;
        register_log_metrics(&registry, &store);
        if let Some(tee) = tee(signalbox_export::config::Signal::Logs) {
            store.tee().set(tee);
        }
        Some(store)
    } else {
        None
    };
    let metric_store = if cfg.metrics.enabled {
        Some(crate::metrics::start(
            &cfg.metrics,
            &data_dir,
            control.registry.clone(),
            registry.clone(),
            &cfg.consul.node_name,
            tee(signalbox_export::config::Signal::Metrics),
        )?)
    } else {
        None
    };
    let span_sink: Arc<dyn signalbox_core::telemetry::SpanSink> = match &traces {
        Some(t) => Arc::new(t.clone()),
        None => Arc::new(DroppingSink),
    };
    let discovery: Arc<dyn signalbox_core::discovery::EndpointSource> = control.registry.clone();
    let gateway = Gateway::new(
        effective,
        Deps {
            registry: registry.clone(),
            spans: span_sink,
            discovery: Some(discovery),
            // The gateway's access log becomes records of the log store, in-process.
            logs: logs.clone().map(|l| Arc::new(l) as Arc<dyn signalbox_core::log::LogOffer>),
        },
    )
    .map_err(|p| anyhow::anyhow!("invalid config:\n{}", loaded.report(p)))?;

    let (trigger, shutdown) = signalbox_core::shutdown::channel();
    let listeners =
        gateway.bind().await.with_context(|| format!("cannot bind the gateway on {}", cfg.gateway.listen))?;
    // Every API listener from the one table, bound before anything is served so that a
    // port in use stops the start with a clear message.
    let table = crate::listeners::table(&cfg);
    let mut bound = Vec::new();
    for l in &table {
        let sock = signalbox_gateway::server::bind(&l.addr)
            .await
            .with_context(|| format!("cannot bind {} on {} ({})", l.what, l.addr, l.key))?;
        bound.push((l.clone(), sock));
    }
    let console_addr = bound[0].1.local_addr()?;
    let bound_addr = |s: crate::listeners::Serves| {
        bound.iter().find(|(l, _)| l.serves == s).and_then(|(_, sock)| sock.local_addr().ok())
    };
    let started = Started {
        console: console_addr,
        gateway: listeners.plain_addr()?,
        otlp_grpc: bound_addr(crate::listeners::Serves::OtlpGrpc),
        otlp_http: bound_addr(crate::listeners::Serves::OtlpHttp),
    };
    let reloads = |result| {
        registry.counter(
            "signalbox_config_reloads_total",
            "Node config reloads (file, SIGHUP, central configuration), by result.",
            &[("result", result)],
        )
    };
    let node = Arc::new(Node {
        opts: opts.clone(),
        gateway: gateway.clone(),
        control: control.clone(),
        file_gateway: Mutex::new(cfg.gateway.clone()),
        gateway_key: gateway_key.clone(),
        reloads_ok: reloads("ok"),
        reloads_rejected: reloads("rejected"),
    });
    let ready = Arc::new(AtomicBool::new(false));
    let node_address =
        if console_addr.ip().is_unspecified() { "127.0.0.1".to_owned() } else { console_addr.ip().to_string() };
    let check_node = Arc::downgrade(&node);
    let config_checks: signalbox_api::ConfigCheck = Arc::new(move |a: &str, p: &str, k: &str, v: &str| {
        let Some(n) = check_node.upgrade() else { return Ok(()) };
        match &n.gateway_key {
            Some((ka, kp, kk)) if ka == a && kp == p && kk == k => {
                let file = n.file_gateway.lock().unwrap_or_else(|e| e.into_inner()).clone();
                effective_gateway(&file, Some(v), n.control.registry.as_ref()).map(|_| ())
            }
            _ => Ok(()),
        }
    });
    // Rollouts: judged on the node's own metrics, notified through the alert receivers.
    let rollouts = signalbox_rollout::Controller::new(
        control.clone(),
        metric_store.as_ref().map(|m| m.service.clone()),
        metric_store.as_ref().and_then(|m| m.rules.as_ref()).map(|r| r.notifier.clone()),
        signalbox_rollout::Settings { external_url: cfg.metrics.rules.external_url.clone(), ..Default::default() },
    );
    let rollout_task = rollouts.spawn(shutdown.clone());
    // With etcd: this node's share of the partitions, and the peers queries fan out to.
    let partitions = control
        .start_partitions(cfg.cluster.partitions, cfg.cluster.address(console_addr))
        .await
        .context("cannot record this node as a storage node on etcd")?;
    let cluster = partitions.clone().map(|p| {
        let token = Some(cfg.cluster.token.clone()).filter(|t| !t.is_empty());
        signalbox_api::cluster::Cluster::new(p, token, cfg.cluster.query_timeout.0)
    });
    let (buffer, ingest_task) = if cfg.ingest.buffered() {
        // With etcd the buffer's consumers follow this node's partitions (validate() keeps
        // the two partition counts equal); one node consumes every partition.
        let owned = partitions.as_ref().map(|p| p.owned());
        start_ingest_buffer(&cfg, &data_dir, &registry, &traces, &logs, &metric_store, owned, shutdown.clone()).await?
    } else {
        (None, None)
    };
    let state = AppState {
        cluster: cluster.clone(),
        control: control.clone(),
        metrics: registry.clone(),
        gateway: Some(gateway.clone()),
        ready: ready.clone(),
        node_name: cfg.consul.node_name.clone(),
        node_address,
        config_checks: Some(config_checks),
        secure_cookies: false,
        views: Default::default(),
        traces: traces.clone(),
        logs: logs.clone(),
        metric_store,
        rollouts: Some(rollouts),
        buffer,
    };
    let limits = cfg.connections.limits(api_cap);
    let mut tasks = Vec::new();
    for (l, sock) in bound {
        use crate::listeners::Serves;
        let app = match l.serves {
            Serves::Console => signalbox_api::router(state.clone()),
            Serves::Consul => signalbox_api::consul_router(state.clone()),
            Serves::OtlpGrpc => signalbox_api::otlp::grpc_router(state.clone()),
            Serves::OtlpHttp => signalbox_api::otlp::http_router(state.clone()),
            Serves::Zipkin => signalbox_api::zipkin_router(state.clone()),
        };
        tasks.push(tokio::spawn(signalbox_api::serve(sock, app, limits.clone(), shutdown.clone())));
    }
    let gw = gateway.clone();
    let gw_task = tokio::spawn({
        let shutdown = shutdown.clone();
        async move { gw.serve(listeners, shutdown).await }
    });
    if gateway_key.is_some() {
        tokio::spawn(follow_central(node.clone()));
    }
    tokio::spawn(follow_traffic(node.clone()));
    ready.store(true, Ordering::Release);
    tracing::info!(
        gateway = %cfg.gateway.listen, console = %console_addr, consul = cfg.consul.enabled.then_some(cfg.consul.listen.as_str()),
        data_dir = %cfg.node.data_dir, access_control = control.access.enabled(), "signalbox is up"
    );

    let (mut stop, embedded) = match embedded {
        Some(e) => {
            // The embedder may have stopped waiting; the node then stops at its stop signal.
            let _ = e.started.send(started);
            (Some(e.stop), true)
        }
        None => (None, false),
    };
    let stop_wait = async {
        match &mut stop {
            Some(s) => s.wait().await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(stop_wait);
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut tick = tokio::time::interval(cfg.node.watch_interval.0.max(std::time::Duration::from_millis(100)));
    let mut last_mtime = opts.config.as_deref().and_then(mtime);
    loop {
        tokio::select! {
            _ = hup.recv() => node.reload_file("SIGHUP").await,
            _ = tick.tick() => {
                let m = opts.config.as_deref().and_then(mtime);
                if m != last_mtime {
                    last_mtime = m;
                    node.reload_file("config file changed").await;
                }
            }
            _ = term.recv(), if !embedded => break,
            _ = int.recv(), if !embedded => break,
            _ = &mut stop_wait => break,
        }
    }
    tracing::info!("shutting down");
    ready.store(false, Ordering::Release);
    trigger.trigger();
    // With etcd: stop consuming partitions, then hand this node's partitions and health
    // checks to the others now, not after the lease.
    if let Some(c) = &cluster {
        c.partitions().stop();
    }
    node.control.leave().await;
    let _ = gw_task.await;
    let _ = rollout_task.await;
    for t in tasks {
        let _ = t.await;
    }
    if let Some(t) = ingest_task {
        // The consumers finish the batch in hand (stored and acknowledged) before the stores close.
        let _ = t.await;
    }
    if let Some(t) = &traces {
        // Seal what is in memory; the write-ahead log would replay it anyway.
        t.flush().await;
    }
    if let Some(l) = &logs {
        l.flush().await;
    }
    if let Some(e) = &exporters {
        // What the exporters hold in memory goes to their disk queues.
        export_stop.trigger();
        e.join(std::time::Duration::from_secs(10)).await;
    }
    Ok(())
}

/// The ingest buffer (`[ingest] buffer`): the publisher the receivers hand batches to and,
/// unless `[ingest.nats] consume = false`, the consumers that move the partitions this node
/// owns into its stores.
#[allow(clippy::too_many_arguments)] // the stores, taken as they are built in run_node
async fn start_ingest_buffer(
    cfg: &FileConfig,
    data_dir: &std::path::Path,
    registry: &Registry,
    traces: &Option<signalbox_events::spans::pipeline::Traces>,
    logs: &Option<signalbox_events::logs::store::Logs>,
    metric_store: &Option<Arc<signalbox_api::metrics::MetricsState>>,
    owned: Option<signalbox_core::partition::Owned>,
    shutdown: signalbox_core::shutdown::Shutdown,
) -> anyhow::Result<(Option<Arc<dyn signalbox_api::buffer::IngestBuffer>>, Option<tokio::task::JoinHandle<()>>)> {
    let nats = signalbox_ingest::Nats::connect(&cfg.ingest).await.map_err(|e| anyhow::anyhow!("[ingest]: {e}"))?;
    let buffer = signalbox_ingest::Buffer::start(nats.clone(), registry);
    // Ready before the receivers open when NATS answers; otherwise they answer 503 until it does.
    if !buffer.ready(std::time::Duration::from_secs(10)).await {
        tracing::warn!(servers = %cfg.ingest.buffer, "the ingest stream is not ready; receivers answer 503 until it is");
    }
    let task = cfg.ingest.nats.consume.then(|| {
        let stores = signalbox_ingest::consume::Stores {
            traces: traces.clone(),
            logs: logs.clone(),
            metrics: metric_store.as_ref().map(|m| m.service.clone()),
        };
        // One node owns every partition; with etcd the cluster layer's watch says which.
        let owned = owned.unwrap_or_else(|| signalbox_core::partition::own_all(cfg.ingest.partitions));
        signalbox_ingest::consume::start(nats, stores, owned, data_dir.join("ingest"), registry, shutdown)
    });
    tracing::info!(servers = %cfg.ingest.buffer, stream = %cfg.ingest.nats.stream, "ingest goes through NATS JetStream");
    Ok((Some(buffer as Arc<dyn signalbox_api::buffer::IngestBuffer>), task))
}

fn start_traces(
    cfg: &FileConfig,
    data_dir: &std::path::Path,
    registry: &Registry,
) -> std::io::Result<signalbox_events::spans::pipeline::Traces> {
    signalbox_events::container::cache::set_budget(usize::try_from(cfg.traces.query_cache.0).unwrap_or(usize::MAX));
    signalbox_events::spans::pipeline::Traces::start(cfg.traces.pipeline(&data_dir.join("traces")), registry)
}

/// Reloads the gateway when its key in central configuration changes.
async fn follow_central(node: Arc<Node>) {
    let Some((a, p, k)) = node.gateway_key.clone() else { return };
    let mut rx = node.control.index.subscribe();
    let mut last = node.control.index.current();
    while rx.changed().await.is_ok() {
        let now = node.control.index.current();
        let hit = match node.control.config.changes_since(last, Some(&a), Some(&p)) {
            None => true,
            Some(c) => c.iter().any(|c| c.key == k),
        };
        last = now;
        if hit {
            node.apply("central configuration changed");
        }
    }
}

/// Applies the traffic policies in central configuration (application `gateway`, profile
/// `traffic`, one key per service) to the gateway, and follows their changes.
async fn follow_traffic(node: Arc<Node>) {
    use signalbox_core::traffic::{GATEWAY_APP, TRAFFIC_PROFILE};
    let config = &node.control.config;
    let apply_all = || {
        let docs = config
            .list(Some(GATEWAY_APP), Some(TRAFFIC_PROFILE))
            .into_iter()
            .map(|e| (e.key, e.value))
            .collect::<std::collections::BTreeMap<_, _>>();
        node.gateway.apply_traffic_policies(&docs);
    };
    let mut rx = node.control.index.subscribe();
    let mut last = node.control.index.current();
    apply_all();
    while rx.changed().await.is_ok() {
        let now = node.control.index.current();
        match config.changes_since(last, Some(GATEWAY_APP), Some(TRAFFIC_PROFILE)) {
            None => apply_all(),
            Some(changes) => {
                let mut keys: Vec<String> = changes.into_iter().map(|c| c.key).collect();
                keys.sort_unstable();
                keys.dedup();
                for k in keys {
                    let doc = config.get(GATEWAY_APP, TRAFFIC_PROFILE, &k, None).ok().map(|e| e.value);
                    let _ = node.gateway.apply_traffic_policy(&k, doc.as_deref());
                }
            }
        }
        last = now;
    }
}

fn register_log_metrics(reg: &Registry, logs: &signalbox_events::logs::store::Logs) {
    let l = logs.clone();
    reg.gauge_fn(
        "signalbox_logs_head_records",
        "Log records in memory, not yet sealed into a block.",
        &[],
        move || l.sizes().0 as f64,
    );
    let l = logs.clone();
    reg.gauge_fn("signalbox_logs_blocks", "Sealed log blocks.", &[], move || l.sizes().1 as f64);
    let l = logs.clone();
    reg.gauge_fn("signalbox_logs_block_bytes", "Bytes of sealed log blocks on disk.", &[], move || l.sizes().2 as f64);
}

fn register_control_metrics(reg: &Registry, control: &Arc<ControlPlane>) {
    let c = Arc::downgrade(control);
    reg.counter_fn(
        "signalbox_login_failures_total",
        "Console logins refused (wrong or expired token).",
        &[],
        move || c.upgrade().map(|c| c.access.failed_logins() as f64).unwrap_or(0.0),
    );
    let c = Arc::downgrade(control);
    reg.gauge_fn("signalbox_registry_instances", "Registered instances.", &[], move || {
        c.upgrade().map(|c| c.registry.all().len() as f64).unwrap_or(0.0)
    });
    let c = Arc::downgrade(control);
    reg.gauge_fn("signalbox_control_index", "The control plane's change index.", &[], move || {
        c.upgrade().map(|c| c.index.current() as f64).unwrap_or(0.0)
    });
    let c = Arc::downgrade(control);
    reg.gauge_fn("signalbox_config_keys", "Live central configuration keys.", &[], move || {
        c.upgrade().map(|c| c.config.list(None, None).len() as f64).unwrap_or(0.0)
    });
}

fn mtime(p: &std::path::Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}
