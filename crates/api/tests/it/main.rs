//! API integration tests: a real control plane (embedded store in a temp dir) behind the
//! real router on a loopback socket, driven over HTTP; a real gateway where routing is
//! under test.

mod abuse;
mod access;
mod client;
mod cluster;
mod config;
mod consul;
mod consul_clients;
mod consul_endpoints;
mod decoders;
mod ordering;
mod params;
mod registry;
mod spring;
mod trace_compat;
mod traces;
mod zipkin_compat;

use signalbox_api::{AppState, router};
use signalbox_control::ControlPlane;
use signalbox_control::access::{Role, Token, hash_secret};
use signalbox_core::metrics::Registry;
use signalbox_testkit::client::{Http, Resp};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// A running API server.
pub struct Node {
    pub addr: SocketAddr,
    pub consul_addr: SocketAddr,
    pub otlp_addr: SocketAddr,
    /// OTLP/gRPC.
    pub grpc_addr: SocketAddr,
    pub control: Arc<ControlPlane>,
    pub http: Http,
    pub dir: tempfile::TempDir,
    /// The etcd the control state lives in, when the tests run against etcd.
    pub etcd: Option<Arc<signalbox_testkit::etcd::Etcd>>,
    _tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// The harness switch: `SIGNALBOX_TEST_CONTROL=etcd` runs every test's control plane on a
/// real etcd of its own (started here) instead of the embedded store.
pub fn control_on_etcd() -> bool {
    std::env::var("SIGNALBOX_TEST_CONTROL").is_ok_and(|v| v == "etcd")
}

/// Opens a control plane: the embedded store in `dir`, or (with the switch) etcd.
pub async fn open_control(
    dir: &std::path::Path,
    settings: signalbox_control::Settings,
) -> (Arc<ControlPlane>, Option<Arc<signalbox_testkit::etcd::Etcd>>) {
    if !control_on_etcd() {
        return (Arc::new(ControlPlane::open(dir, settings).unwrap()), None);
    }
    let etcd = Arc::new(signalbox_testkit::etcd::Etcd::start().await);
    (Arc::new(open_etcd_node(&etcd, "test-node", settings).await), Some(etcd))
}

/// A control plane named `node` on `etcd` (prefix `/signalbox/`).
pub async fn open_etcd_node(
    etcd: &signalbox_testkit::etcd::Etcd,
    node: &str,
    settings: signalbox_control::Settings,
) -> ControlPlane {
    let cfg = signalbox_control::backend::config::EtcdConfig {
        endpoints: vec![etcd.endpoint.clone()],
        node_name: Some(node.into()),
        lease_ttl: signalbox_core::config::Dur::secs(2),
        ..Default::default()
    };
    let open = ControlPlane::open_etcd(&cfg, settings);
    tokio::time::timeout(Duration::from_secs(10), open).await.expect("etcd opens within 10 s").unwrap()
}

/// The admin secret of nodes started `with_tokens`.
pub const ADMIN: &str = "admin-secret-0123456789";

pub fn file_token(id: &str, role: Role, secret: &str) -> Token {
    Token {
        id: id.into(),
        role,
        sha256: hash_secret(secret),
        description: String::new(),
        created_unix_ms: 0,
        expires_unix_ms: None,
        source: "file".into(),
    }
}

impl Node {
    /// A node without access control.
    pub async fn start() -> Node {
        Self::start_with(Vec::new(), None).await
    }

    /// A node with an admin token (`ADMIN`) and `tokens`.
    pub async fn with_tokens(mut tokens: Vec<Token>) -> Node {
        tokens.push(file_token("root", Role::Admin, ADMIN));
        Self::start_with(tokens, None).await
    }

    pub async fn start_with(tokens: Vec<Token>, gateway: Option<Arc<dyn signalbox_core::views::GatewayView>>) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let settings = signalbox_control::Settings {
            file_tokens: tokens,
            config: signalbox_control::config::Limits { max_value_bytes: 64 * 1024, max_keys: 20 },
            ..Default::default()
        };
        let (control, etcd) = open_control(dir.path(), settings).await;
        let mut node = Self::serve(control, gateway, dir).await;
        node.etcd = etcd;
        node
    }

    pub async fn serve(
        control: Arc<ControlPlane>,
        gateway: Option<Arc<dyn signalbox_core::views::GatewayView>>,
        dir: tempfile::TempDir,
    ) -> Node {
        Self::serve_with(control, gateway, dir, None).await
    }

    /// A node with a trace store (sampling as given) in its temp dir.
    pub async fn with_traces(
        sampler: signalbox_events::spans::sampler::SamplerConfig,
        queue_batches: usize,
    ) -> (Node, signalbox_events::spans::pipeline::Traces, Registry) {
        let dir = tempfile::tempdir().unwrap();
        let (control, etcd) = open_control(dir.path(), Default::default()).await;
        let registry = Registry::new();
        let cfg = signalbox_events::spans::pipeline::PipelineSettings {
            dir: dir.path().join("traces"),
            queue_batches,
            store: signalbox_events::spans::store::StoreConfig {
                dir: dir.path().join("traces/blocks"),
                block_spans: 500,
                seal_after: Duration::from_millis(500),
                retention_age: Duration::from_secs(86_400),
                retention_bytes: u64::MAX,
            },
            sampler,
            graph_retention: Duration::from_secs(86_400),
        };
        let traces = signalbox_events::spans::pipeline::Traces::start(cfg, &registry).unwrap();
        let mut n = Self::serve_with(control, None, dir, Some((traces.clone(), registry.clone()))).await;
        n.etcd = etcd;
        (n, traces, registry)
    }

    async fn serve_with(
        control: Arc<ControlPlane>,
        gateway: Option<Arc<dyn signalbox_core::views::GatewayView>>,
        dir: tempfile::TempDir,
        trace_store: Option<(signalbox_events::spans::pipeline::Traces, Registry)>,
    ) -> Node {
        let (trace_store, metrics) = match trace_store {
            Some((t, r)) => (Some(t), r),
            None => (None, Registry::new()),
        };
        let state = AppState {
            control: control.clone(),
            metrics,
            gateway,
            ready: Arc::new(AtomicBool::new(true)),
            node_name: "test-node".into(),
            node_address: "127.0.0.1".into(),
            config_checks: None,
            secure_cookies: false,
            views: Default::default(),
            traces: trace_store,
            logs: None,
            metric_store: None,
            rollouts: None,
            cluster: None,
            buffer: None,
        };
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let app = router(state.clone());
        let t1 = tokio::spawn(async move {
            let _ = axum::serve(l, app).await;
        });
        let l2 = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let consul_addr = l2.local_addr().unwrap();
        let capp = signalbox_api::consul_router(state.clone());
        let l3 = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let otlp_addr = l3.local_addr().unwrap();
        let oapp = signalbox_api::otlp::http_router(state.clone());
        let t3 = tokio::spawn(async move {
            let _ = axum::serve(l3, oapp).await;
        });
        let l4 = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let grpc_addr = l4.local_addr().unwrap();
        let gapp = signalbox_api::otlp::grpc_router(state);
        let t4 = tokio::spawn(async move {
            let _ = axum::serve(l4, gapp).await;
        });
        let t2 = tokio::spawn(async move {
            let _ = axum::serve(l2, capp).await;
        });
        Node {
            addr,
            consul_addr,
            otlp_addr,
            grpc_addr,
            control,
            http: Http::new(),
            dir,
            etcd: None,
            _tasks: vec![t1, t2, t3, t4],
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// A request with a JSON body (and a bearer token if given).
    pub async fn call(
        &self,
        method: http::Method,
        path: &str,
        token: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> Resp {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers: Vec<(&str, &str)> = Vec::new();
        if let Some(a) = &auth {
            headers.push(("authorization", a));
        }
        let bytes = match &body {
            Some(b) => {
                headers.push(("content-type", "application/json"));
                b.to_string()
            }
            None => String::new(),
        };
        self.http.send(method, &self.url(path), &headers, bytes).await
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.call(http::Method::GET, path, None, None).await
    }
}

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}
