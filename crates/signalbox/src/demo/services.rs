//! The sample services: real HTTP servers on loopback, one tokio task each. Every instance
//! registers with the node's registry (HTTP health check, `metrics_path` and `version` meta),
//! follows its settings in central configuration (`<service>/default/failure_rate` and
//! `latency_ms`), calls the services it depends on through the gateway with a W3C
//! `traceparent`, records OpenTelemetry spans, counts its requests on `/metrics`, and writes
//! JSON log lines for the agent to ship.

use super::telemetry::{self, JsonLog, ServiceMetrics};
use super::topology::{CANARY, CANARY_ERROR_PERMILLE, Call, ServiceSpec, TOPOLOGY};
use anyhow::Context as _;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry::trace::{Span as _, SpanKind, Status, TraceContextExt, Tracer as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use serde_json::json;
use signalbox_core::shutdown::{Shutdown, ShutdownTrigger};
use std::path::Path;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Faults injected into every instance of a service by the fault schedule.
#[derive(Default)]
pub struct Injected {
    pub extra_latency_ms: AtomicU64,
    /// Share of requests failed on purpose, in thousandths.
    pub error_permille: AtomicU64,
}

/// An instance's settings from central configuration.
#[derive(Default)]
struct Settings {
    /// f64 bits.
    failure_rate: AtomicU64,
    latency_ms: AtomicU64,
}

impl Settings {
    /// The settings in force as gauges, so a config change shows beside its effect.
    fn export(self: &Arc<Self>, m: &ServiceMetrics) {
        let s = self.clone();
        m.registry.gauge_fn(
            "demo_setting_failure_rate",
            "The failure_rate this instance read from central configuration.",
            &[],
            move || f64_of(&s.failure_rate),
        );
        let s = self.clone();
        m.registry.gauge_fn(
            "demo_setting_latency_ms",
            "The latency_ms this instance read from central configuration.",
            &[],
            move || s.latency_ms.load(Ordering::Relaxed) as f64,
        );
    }
}

/// Sends every request of the canary's service to its stable version (the traffic policy
/// the gateway follows), before the canary registers; the demo's rollout moves the weights.
async fn hold_canary(client: &signalbox_client::Client, canary: &ServiceSpec) -> anyhow::Result<()> {
    let stable = TOPOLOGY
        .iter()
        .find(|s| s.name == canary.name)
        .map(|s| s.version)
        .context("the canary's service is not in the topology")?;
    let policy = json!({ "weights": { stable: 100 } }).to_string();
    match client
        .config_put("gateway", "traffic", canary.name, &policy, "demo: every request on the stable version", None)
        .await
    {
        Ok(_) => Ok(()),
        Err(e) => Err(anyhow::anyhow!("cannot write the traffic policy of {}: {e}", canary.name)),
    }
}

/// What a request handler of an instance needs.
struct InstanceState {
    spec: &'static ServiceSpec,
    id: String,
    gateway: String,
    http: HttpClient<HttpConnector, Full<Bytes>>,
    tracer: SdkTracer,
    metrics: ServiceMetrics,
    log: JsonLog,
    settings: Arc<Settings>,
    injected: Arc<Injected>,
    rng: Mutex<fastrand::Rng>,
}

/// One running (or stopped) instance.
pub struct Instance {
    pub id: String,
    port: AtomicU16,
    state: Arc<InstanceState>,
    server: tokio::sync::Mutex<Option<(ShutdownTrigger, tokio::task::JoinHandle<()>)>>,
}

impl Instance {
    pub fn port(&self) -> u16 {
        self.port.load(Ordering::Relaxed)
    }

    /// Starts serving on its port (a free one the first time).
    pub async fn start(&self) -> std::io::Result<()> {
        let mut server = self.server.lock().await;
        if server.is_some() {
            return Ok(());
        }
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port())).await?;
        self.port.store(listener.local_addr()?.port(), Ordering::Relaxed);
        let app = axum::Router::new()
            .route("/health", axum::routing::get(health))
            .route("/metrics", axum::routing::get(metrics))
            .fallback(handle)
            .with_state(self.state.clone());
        let (trigger, mut stop) = signalbox_core::shutdown::channel();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app).with_graceful_shutdown(async move { stop.wait().await });
            if let Err(e) = served.await {
                tracing::warn!(error = %e, "a demo service stopped serving");
            }
        });
        *server = Some((trigger, task));
        Ok(())
    }

    /// Stops serving: no listener, open connections closed once their requests finish
    /// (cut after 3 s).
    pub async fn stop(&self) {
        let Some((trigger, mut task)) = self.server.lock().await.take() else { return };
        trigger.trigger();
        if tokio::time::timeout(Duration::from_secs(3), &mut task).await.is_err() {
            task.abort();
        }
    }
}

/// Where the fleet reports to and how fast it checks health.
pub struct FleetConfig<'a> {
    pub console: String,
    pub gateway: String,
    pub otlp_grpc: String,
    pub log_dir: &'a Path,
    pub seed: u64,
    pub check_interval: Duration,
}

/// Every sample instance, their registrations and tracer providers.
pub struct Fleet {
    pub instances: Vec<Arc<Instance>>,
    injected: Vec<(&'static str, Arc<Injected>)>,
    providers: Vec<SdkTracerProvider>,
    registrations: Mutex<Vec<signalbox_client::Registration>>,
    followers: ShutdownTrigger,
}

impl Fleet {
    /// Seeds each service's settings, then starts, registers and configures every instance.
    pub async fn start(cfg: FleetConfig<'_>) -> anyhow::Result<Fleet> {
        let client = signalbox_client::Client::new(&cfg.console, None);
        for s in TOPOLOGY {
            for (key, value) in [("failure_rate", "0.0"), ("latency_ms", "0")] {
                // Create only: a kept data directory keeps its history and current values.
                match client.config_put(s.name, "default", key, value, "demo: initial setting", Some(0)).await {
                    Ok(_) => {}
                    Err(e) if e.status() == Some(409) => {}
                    Err(e) => return Err(anyhow::anyhow!("cannot write {}/default/{key}: {e}", s.name)),
                }
            }
        }
        let http = HttpClient::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(10)).build_http();
        let (followers, follow_stop) = signalbox_core::shutdown::channel();
        let mut fleet = Fleet {
            instances: Vec::new(),
            injected: Vec::new(),
            providers: Vec::new(),
            registrations: Mutex::new(Vec::new()),
            followers,
        };
        let mut n = 0u64;
        // The services, then the bad canary (its own failures; no traffic until a rollout).
        let canary_faults = Arc::new(Injected::default());
        canary_faults.error_permille.store(CANARY_ERROR_PERMILLE, Ordering::Relaxed);
        for (spec, canary) in TOPOLOGY.iter().map(|s| (s, false)).chain(std::iter::once((&CANARY, true))) {
            let injected = if canary {
                hold_canary(&client, spec).await?;
                canary_faults.clone()
            } else {
                let i = Arc::new(Injected::default());
                fleet.injected.push((spec.name, i.clone()));
                i
            };
            for i in 1..=spec.instances {
                n += 1;
                let id =
                    if canary { format!("{}-{}-{i}", spec.name, spec.version) } else { format!("{}-{i}", spec.name) };
                let provider = telemetry::tracer_provider(spec.name, &id, spec.version, &cfg.otlp_grpc)?;
                let log_path = cfg.log_dir.join(format!("{id}.log"));
                let settings = Arc::new(Settings::default());
                let state = Arc::new(InstanceState {
                    spec,
                    id: id.clone(),
                    gateway: cfg.gateway.clone(),
                    http: http.clone(),
                    tracer: telemetry::tracer(&provider),
                    metrics: ServiceMetrics::new(),
                    log: JsonLog::open(&log_path).with_context(|| format!("cannot open {}", log_path.display()))?,
                    settings: settings.clone(),
                    injected: injected.clone(),
                    rng: Mutex::new(fastrand::Rng::with_seed(cfg.seed.wrapping_mul(1000).wrapping_add(n))),
                });
                settings.export(&state.metrics);
                fleet.providers.push(provider);
                let inst = Arc::new(Instance {
                    id: id.clone(),
                    port: AtomicU16::new(0),
                    state: state.clone(),
                    server: tokio::sync::Mutex::new(None),
                });
                inst.start().await.with_context(|| format!("cannot start {id}"))?;
                let check = cfg.check_interval;
                let reg = client
                    .register(json!({
                        "service": spec.name,
                        "id": id,
                        "address": "127.0.0.1",
                        "port": inst.port(),
                        "tags": ["demo"],
                        "meta": { "metrics_path": "/metrics", "version": spec.version },
                        "checks": [{
                            "http": "/health",
                            "interval": super::setup::dur(check),
                            "timeout": super::setup::dur(check.min(Duration::from_secs(1))),
                            "failure_threshold": 1,
                            "success_threshold": 1
                        }]
                    }))
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot register {id}: {e}"))?;
                fleet.registrations.lock().unwrap_or_else(|e| e.into_inner()).push(reg);
                load_settings(&client, &state).await;
                tokio::spawn(follow_settings(client.clone(), state, follow_stop.clone()));
                fleet.instances.push(inst);
            }
        }
        Ok(fleet)
    }

    /// The faults of every (stable) instance of `service`.
    pub fn injected(&self, service: &str) -> Option<&Injected> {
        self.injected.iter().find(|(n, _)| *n == service).map(|(_, i)| i.as_ref())
    }

    pub fn instance(&self, id: &str) -> Option<&Arc<Instance>> {
        self.instances.iter().find(|i| i.id == id)
    }

    /// Deregisters and stops every instance and flushes their spans (each step bounded).
    pub async fn shutdown(&self) {
        self.followers.trigger();
        let registrations = std::mem::take(&mut *self.registrations.lock().unwrap_or_else(|e| e.into_inner()));
        for r in registrations {
            let _ = tokio::time::timeout(Duration::from_secs(2), r.deregister()).await;
        }
        for i in &self.instances {
            i.stop().await;
        }
        // The SDK's shutdown blocks until its batch thread has exported (the exporter gives
        // up after 5 s); all of them at once.
        let flushes: Vec<_> = self
            .providers
            .iter()
            .map(|p| {
                let p = p.clone();
                tokio::task::spawn_blocking(move || p.shutdown())
            })
            .collect();
        let _ = tokio::time::timeout(Duration::from_secs(6), async {
            for f in flushes {
                let _ = f.await;
            }
        })
        .await;
    }
}

async fn health() -> &'static str {
    "ok"
}

async fn metrics(State(st): State<Arc<InstanceState>>) -> Response {
    ([(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], st.metrics.registry.render()).into_response()
}

fn f64_of(a: &AtomicU64) -> f64 {
    f64::from_bits(a.load(Ordering::Relaxed))
}

/// Serves one request of the service's own API.
async fn handle(State(st): State<Arc<InstanceState>>, req: Request) -> Response {
    let started = Instant::now();
    let path = req.uri().path().to_owned();
    let method = req.method().to_string();
    let Some(ep) = st.spec.endpoints.iter().find(|e| e.path == path) else {
        return (StatusCode::NOT_FOUND, format!("{} has no {path}\n", st.spec.name)).into_response();
    };
    let parent = req
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(telemetry::parse_traceparent)
        .map(|sc| Context::new().with_remote_span_context(sc))
        .unwrap_or_default();
    let span = st
        .tracer
        .span_builder(format!("{method} {path}"))
        .with_kind(SpanKind::Server)
        .with_attributes([
            KeyValue::new("http.request.method", method.clone()),
            KeyValue::new("http.route", path.clone()),
            KeyValue::new("service.instance.id", st.id.clone()),
        ])
        .start_with_context(&st.tracer, &parent);
    let cx = parent.with_span(span);
    let sc = cx.span().span_context().clone();

    let (work, roll) = {
        let mut rng = st.rng.lock().unwrap_or_else(|e| e.into_inner());
        (ep.work_ms as f64 * (0.5 + rng.f64()), rng.f64())
    };
    let extra = st.settings.latency_ms.load(Ordering::Relaxed) + st.injected.extra_latency_ms.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_micros((work * 1000.0) as u64) + Duration::from_millis(extra)).await;

    let mut failure = None;
    for call in ep.calls {
        if let Err(e) = call_through_gateway(&st, &cx, *call).await {
            failure = Some(e);
            break;
        }
    }
    let failure_rate =
        f64_of(&st.settings.failure_rate) + st.injected.error_permille.load(Ordering::Relaxed) as f64 / 1000.0;
    if failure.is_none() && roll < failure_rate {
        failure = Some(ep.failure.to_owned());
    }
    let status = if failure.is_some() { StatusCode::INTERNAL_SERVER_ERROR } else { StatusCode::OK };
    let elapsed = started.elapsed();
    let span = cx.span();
    span.set_attribute(KeyValue::new("http.response.status_code", i64::from(status.as_u16())));
    if let Some(f) = &failure {
        span.set_status(Status::error(f.clone()));
    }
    span.end();
    let fields = json!({
        "instance": st.id,
        "http.method": method,
        "http.path": path,
        "http.status": status.as_u16(),
        "duration_ms": elapsed.as_millis() as u64,
    });
    match &failure {
        Some(f) => st.log.write("error", &format!("{method} {path} failed: {f}"), Some(&sc), fields),
        None if elapsed > Duration::from_secs(1) => {
            st.log.write("warn", &format!("{method} {path} slow: {} ms", elapsed.as_millis()), Some(&sc), fields)
        }
        None => st.log.write("info", &format!("{method} {path} ok"), Some(&sc), fields),
    }
    st.metrics.request(&path, status.as_u16(), elapsed.as_secs_f64());
    let body = json!({ "service": st.spec.name, "instance": st.id, "ok": failure.is_none(), "error": failure });
    (status, [(http::header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

/// Calls `service` through the gateway in a client span whose id goes out as the parent.
async fn call_through_gateway(st: &InstanceState, cx: &Context, (method, service, path): Call) -> Result<(), String> {
    let url = format!("{}/{service}{path}", st.gateway);
    let mut span = st
        .tracer
        .span_builder(format!("{method} /{service}{path}"))
        .with_kind(SpanKind::Client)
        .with_attributes([
            KeyValue::new("http.request.method", method),
            KeyValue::new("url.full", url.clone()),
            KeyValue::new("peer.service", service),
        ])
        .start_with_context(&st.tracer, cx);
    let req = http::Request::builder()
        .method(method)
        .uri(&url)
        .header("traceparent", telemetry::traceparent(span.span_context()))
        .body(Full::new(Bytes::new()));
    let outcome = match req {
        Err(e) => Err(format!("bad request to {service}: {e}")),
        Ok(req) => match tokio::time::timeout(Duration::from_secs(10), st.http.request(req)).await {
            Err(_) => Err(format!("{service} did not answer within 10 s")),
            Ok(Err(e)) => Err(format!("cannot reach {service} through the gateway: {e}")),
            Ok(Ok(resp)) => {
                let status = resp.status();
                let _ = tokio::time::timeout(Duration::from_secs(10), resp.into_body().collect()).await;
                span.set_attribute(KeyValue::new("http.response.status_code", i64::from(status.as_u16())));
                if status.is_success() { Ok(()) } else { Err(format!("{service} answered {status}")) }
            }
        },
    };
    if let Err(e) = &outcome {
        span.set_status(Status::error(e.clone()));
    }
    span.end();
    st.metrics.call(service, outcome.is_ok());
    outcome
}

/// Reads the instance's settings once.
async fn load_settings(client: &signalbox_client::Client, st: &InstanceState) {
    for key in ["failure_rate", "latency_ms"] {
        if let Ok(v) = client.config_get(st.spec.name, "default", key).await {
            apply_setting(st, key, v["value"].as_str().unwrap_or(""), v["version"].as_u64(), false);
        }
    }
}

/// Follows the instance's settings with blocking queries until `stop`.
async fn follow_settings(client: signalbox_client::Client, st: Arc<InstanceState>, mut stop: Shutdown) {
    let mut index = match client.request(http::Method::GET, "/api/config", None).await {
        Ok(v) => v["index"].as_u64().unwrap_or(0),
        Err(_) => 0,
    };
    loop {
        let changes = tokio::select! {
            _ = stop.wait() => return,
            r = client.config_changes(index, Some(st.spec.name), Some("default")) => r,
        };
        match changes {
            Ok((i, list)) => {
                index = i;
                for ch in list {
                    let key = ch["key"].as_str().unwrap_or("");
                    if let Ok(v) = client.config_get(st.spec.name, "default", key).await {
                        apply_setting(&st, key, v["value"].as_str().unwrap_or(""), v["version"].as_u64(), true);
                    }
                }
            }
            Err(_) => {
                tokio::select! {
                    _ = stop.wait() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
}

fn apply_setting(st: &InstanceState, key: &str, value: &str, version: Option<u64>, changed: bool) {
    let fields = json!({ "instance": st.id, "config.key": key, "config.value": value, "config.version": version });
    let ok = match key {
        "failure_rate" => match value.trim().parse::<f64>() {
            Ok(r) if (0.0..=1.0).contains(&r) => {
                st.settings.failure_rate.store(r.to_bits(), Ordering::Relaxed);
                true
            }
            _ => false,
        },
        "latency_ms" => match value.trim().parse::<u64>() {
            Ok(ms) if ms <= 60_000 => {
                st.settings.latency_ms.store(ms, Ordering::Relaxed);
                true
            }
            _ => false,
        },
        _ => return,
    };
    if !ok {
        st.log.write("warn", &format!("ignoring invalid setting {key}={value:?}"), None, fields);
    } else if changed {
        st.log.write("info", &format!("setting changed: {key}={value}"), None, fields);
    }
}
