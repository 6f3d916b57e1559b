//! Traces end to end on the real binary: the OpenTelemetry Rust SDK sending over OTLP/gRPC
//! and OTLP/HTTP and the Python SDK over OTLP/HTTP (`tests/python/otel_send.py`), read back
//! through the native, Jaeger and Zipkin APIs and the `traces` CLI;
//! the gateway's own spans in `serve` mode and from a standalone `signalbox gateway` over
//! OTLP; kill -9 during ingest.

use crate::{BIN, Node, StandaloneGateway};
use opentelemetry::trace::{Span as _, SpanKind, Status, TraceContextExt, Tracer, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue as PKeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource as PResource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span as PSpan};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use prost::Message;
use serde_json::Value;
use signalbox_testkit::client::Http;
use signalbox_testkit::eventually;
use signalbox_testkit::upstream::{echo, serve};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Runs a real OTLP exporter's calls on the test's tokio runtime: the SDK's span processors
/// drive export futures on their own threads with a plain executor, while tonic and hyper
/// need a reactor.
#[derive(Debug)]
struct OnRuntime<E> {
    inner: E,
    rt: tokio::runtime::Handle,
}

impl<E: SpanExporter> SpanExporter for OnRuntime<E> {
    fn export(&self, batch: Vec<SpanData>) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        let call = self.inner.export(batch);
        let rt = self.rt.clone();
        async move { rt.block_on(call) }
    }
    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }
    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }
    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource)
    }
}

fn provider<E: SpanExporter + 'static>(service: &str, exporter: E) -> SdkTracerProvider {
    let rt = tokio::runtime::Handle::current();
    SdkTracerProvider::builder()
        .with_resource(Resource::builder().with_service_name(service.to_owned()).build())
        .with_batch_exporter(OnRuntime { inner: exporter, rt })
        .build()
}

fn url(node: &Node, path: &str) -> String {
    format!("http://{}{path}", node.console)
}

async fn json(http: &Http, url: &str) -> Value {
    let r = http.get(url).await;
    assert_eq!(r.status, 200, "{url}: {}", r.text());
    r.json()
}

/// Waits until trace `id` has `n` spans on the native API.
async fn trace_with(http: &Http, node: &Node, id: &str, n: usize) -> Value {
    let u = url(node, &format!("/api/traces/{id}"));
    eventually(Duration::from_secs(15), &format!("trace {id} with {n} spans"), || {
        let (http, u) = (http.clone(), u.clone());
        async move {
            let r = http.try_send(http::Method::GET, &u, &[], bytes::Bytes::new()).await.ok()?;
            (r.status == 200 && r.json()["spans"].as_array().map(Vec::len) == Some(n)).then(|| r.json())
        }
    })
    .await
}

fn ids(list: &Value, field: &str) -> Vec<String> {
    list.as_array().unwrap().iter().map(|t| t[field].as_str().unwrap_or_default().to_owned()).collect()
}

fn cli(node: &Node, args: &[&str]) -> String {
    let out = Command::new(BIN).args(args).args(["--url", &format!("http://{}", node.console)]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "signalbox {args:?}: {}{stdout}", String::from_utf8_lossy(&out.stderr));
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opentelemetry_sdk_over_grpc_and_http_reads_back_through_every_api() {
    let node = Node::start(&[], &[]).await;
    let http = Http::new();
    let (grpc, otlp_http) = (format!("http://{}", node.otlp_grpc), format!("http://{}/v1/traces", node.otlp_http));

    // `checkout` exports over gRPC (gzip), `payments` over HTTP protobuf (gzip); payments'
    // server span continues checkout's client span, as a propagated traceparent would.
    let rt = tokio::runtime::Handle::current();
    let (trace_id, client_span_id) = tokio::task::spawn_blocking(move || {
        let _ctx = rt.enter();
        let over_grpc = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(grpc)
            .with_compression(opentelemetry_otlp::Compression::Gzip)
            .build()
            .unwrap();
        let over_http = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(otlp_http)
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_compression(opentelemetry_otlp::Compression::Gzip)
            .build()
            .unwrap();
        let checkout = provider("checkout", over_grpc);
        let payments = provider("payments", over_http);
        let tc = checkout.tracer("signalbox-test");
        let tp = payments.tracer("signalbox-test");

        let root = tc
            .span_builder("POST /cart/checkout")
            .with_kind(SpanKind::Server)
            .with_attributes([KeyValue::new("http.route", "/cart/checkout"), KeyValue::new("cart.items", 3)])
            .start(&tc);
        let trace_id = root.span_context().trace_id().to_string();
        let cx = Context::current_with_span(root);
        // Linked to a span of another trace (the message this call consumes).
        let linked = opentelemetry::trace::SpanContext::new(
            opentelemetry::trace::TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            opentelemetry::trace::SpanId::from_hex("00f067aa0ba902b7").unwrap(),
            opentelemetry::trace::TraceFlags::SAMPLED,
            true,
            Default::default(),
        );
        let mut charge = tc
            .span_builder("charge")
            .with_kind(SpanKind::Client)
            .with_attributes([KeyValue::new("peer.service", "payments")])
            .with_links(vec![opentelemetry::trace::Link::with_context(linked)])
            .start_with_context(&tc, &cx);
        let charge_sc = charge.span_context().clone();
        let mut server = tp
            .span_builder("POST /charge")
            .with_kind(SpanKind::Server)
            .start_with_context(&tp, &Context::new().with_remote_span_context(charge_sc.clone()));
        std::thread::sleep(Duration::from_millis(5));
        server.add_event("card declined", vec![KeyValue::new("attempt", 1)]);
        server.set_status(Status::error("declined"));
        server.end();
        charge.set_status(Status::error("payment failed"));
        charge.end();
        cx.span().end();
        checkout.force_flush().unwrap();
        payments.force_flush().unwrap();
        checkout.shutdown().unwrap();
        payments.shutdown().unwrap();
        (trace_id, charge_sc.span_id().to_string())
    })
    .await
    .unwrap();

    // Native API: the whole trace, parents, status, events, attributes.
    let t = trace_with(&http, &node, &trace_id, 3).await;
    let spans = t["spans"].as_array().unwrap();
    let by_name = |n: &str| spans.iter().find(|s| s["name"] == n).unwrap_or_else(|| panic!("span {n} in {t}"));
    let (root, server) = (by_name("POST /cart/checkout"), by_name("POST /charge"));
    assert_eq!(root["service"], "checkout");
    assert_eq!(root["parent_span_id"], Value::Null);
    assert_eq!(root["attributes"]["http.route"], "/cart/checkout");
    assert_eq!(root["attributes"]["cart.items"], 3);
    assert_eq!(root["resource"]["telemetry.sdk.language"], "rust", "the SDK's resource, apart: {t}");
    assert_eq!(root["attributes"].get("telemetry.sdk.language"), None);
    let charge = by_name("charge");
    assert_eq!(charge["links"][0]["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736", "a link over OTLP/gRPC: {t}");
    assert_eq!(charge["links"][0]["span_id"], "00f067aa0ba902b7");
    assert_eq!(server["service"], "payments");
    assert_eq!(server["parent_span_id"], client_span_id.as_str());
    assert_eq!(server["status"], "error");
    assert_eq!(server["status_message"], "declined");
    assert_eq!(server["events"][0]["name"], "card declined");
    assert!(server["duration_nanos"].as_u64().unwrap() >= 5_000_000);

    let found = json(&http, &url(&node, "/api/traces?service=checkout&tag=http.route%3D%2Fcart%2Fcheckout")).await;
    let summary = &found["traces"][0];
    assert_eq!(summary["trace_id"], trace_id.as_str());
    assert_eq!(summary["root_service"], "checkout");
    assert_eq!(summary["root_operation"], "POST /cart/checkout");
    assert_eq!(summary["span_count"], 3);
    assert_eq!(summary["error"], true);
    assert_eq!(summary["services"], serde_json::json!(["checkout", "payments"]));
    assert_eq!(summary["service_spans"], serde_json::json!({"checkout": 2, "payments": 1}));
    assert_eq!(summary["error_spans"], 2);
    let errors = json(&http, &url(&node, "/api/traces?service=payments&status=error&min_duration=4ms")).await;
    assert_eq!(ids(&errors["traces"], "trace_id"), vec![trace_id.clone()]);
    let none = json(&http, &url(&node, "/api/traces?service=payments&min_duration=10s")).await;
    assert_eq!(none["traces"], serde_json::json!([]));
    let none = json(&http, &url(&node, "/api/traces?service=checkout&tag=http.route%3D%2Fother")).await;
    assert_eq!(none["traces"], serde_json::json!([]));
    let typo = http.get(&url(&node, "/api/traces?service=payments&minDuration=10s")).await;
    assert_eq!(typo.status, 400);
    assert_eq!(typo.json()["field"], "minDuration", "{}", typo.text());
    let deps = json(&http, &url(&node, "/api/traces/dependencies")).await;
    let edge = deps["edges"].as_array().unwrap().iter().find(|e| e["caller"] == "checkout").expect("edge");
    assert_eq!(edge["callee"], "payments");
    assert_eq!(edge["calls"], 1);
    assert_eq!(edge["errors"], 1);

    let metrics = http.get(&url(&node, "/metrics")).await.text();
    assert!(metrics.contains("signalbox_traces_sampled_total{decision=\"kept\",reason=\"all\"} 1\n"), "{metrics}");
    assert!(metrics.contains("signalbox_traces_spans_received_total 3\n"), "{metrics}");

    // Jaeger query API, with the request shapes Grafana's Jaeger data source sends.
    let services = json(&http, &url(&node, "/jaeger/api/services")).await;
    let names = services["data"].as_array().unwrap();
    assert!(names.contains(&"checkout".into()) && names.contains(&"payments".into()), "{services}");
    let ops = json(&http, &url(&node, "/jaeger/api/services/checkout/operations")).await;
    assert!(ops["data"].as_array().unwrap().contains(&"POST /cart/checkout".into()), "{ops}");
    let now_us = signalbox_core::time::unix_nanos() / 1000;
    let q = format!(
        "/jaeger/api/traces?service=checkout&operation=POST%20%2Fcart%2Fcheckout&tags=%7B%22cart.items%22%3A%223%22%7D&limit=20&start={}&end={}&lookback=custom",
        now_us - 3_600_000_000,
        now_us + 60_000_000
    );
    let jt = json(&http, &url(&node, &q)).await;
    assert_eq!(jt["data"][0]["traceID"], trace_id.as_str(), "{jt}");
    assert_eq!(jt["data"][0]["spans"].as_array().unwrap().len(), 3);
    let one = json(&http, &url(&node, &format!("/jaeger/api/traces/{trace_id}"))).await;
    let jspans = one["data"][0]["spans"].as_array().unwrap();
    assert_eq!(jspans.len(), 3);
    let processes = one["data"][0]["processes"].as_object().unwrap();
    let mut pnames: Vec<&str> = processes.values().map(|p| p["serviceName"].as_str().unwrap()).collect();
    pnames.sort();
    assert_eq!(pnames, ["checkout", "payments"]);
    let jd = json(
        &http,
        &url(&node, &format!("/jaeger/api/dependencies?endTs={}&lookback=3600000", now_us / 1000 + 60_000)),
    )
    .await;
    assert!(
        jd["data"].as_array().unwrap().iter().any(|d| d["parent"] == "checkout" && d["child"] == "payments"),
        "{jd}"
    );

    // Zipkin v2 query API.
    let zt = json(&http, &url(&node, &format!("/zipkin/api/v2/trace/{trace_id}"))).await;
    assert_eq!(zt.as_array().unwrap().len(), 3);
    let zs = json(&http, &url(&node, "/zipkin/api/v2/services")).await;
    assert!(zs.as_array().unwrap().contains(&"payments".into()), "{zs}");
    let zq =
        json(&http, &url(&node, "/zipkin/api/v2/traces?serviceName=payments&annotationQuery=error&limit=10")).await;
    assert_eq!(zq.as_array().unwrap().len(), 1, "{zq}");
    let zd = json(
        &http,
        &url(&node, &format!("/zipkin/api/v2/dependencies?endTs={}&lookback=3600000", now_us / 1000 + 60_000)),
    )
    .await;
    assert!(zd.as_array().unwrap().iter().any(|d| d["parent"] == "checkout" && d["child"] == "payments"), "{zd}");

    // The CLI: an indented tree, and a search line.
    let tree = cli(&node, &["traces", "get", &trace_id]);
    let lines: Vec<&str> = tree.lines().collect();
    let line =
        |needle: &str| *lines.iter().find(|l| l.contains(needle)).unwrap_or_else(|| panic!("{needle} in\n{tree}"));
    let indent = |l: &str| l.len() - l.trim_start().len();
    assert!(indent(line("POST /cart/checkout")) < indent(line("charge")), "{tree}");
    assert!(indent(line("charge")) < indent(line("POST /charge")), "{tree}");
    assert!(line("POST /charge").contains("ms"), "{tree}");
    let found = cli(&node, &["traces", "search", "--service", "payments", "--errors"]);
    assert!(found.contains(&trace_id), "{found}");
}

/// One OTLP request: `traces` traces of `spans` spans each, trace ids from `seq`.
fn otlp_batch(seq: u64, traces: u64, spans: u64) -> (ExportTraceServiceRequest, Vec<String>) {
    let now = signalbox_core::time::unix_nanos();
    let mut out = Vec::new();
    let mut ids = Vec::new();
    for t in 0..traces {
        let mut tid = [0u8; 16];
        tid[..8].copy_from_slice(&(seq * traces + t + 1).to_be_bytes());
        tid[8..].copy_from_slice(&0x5eed_u64.to_be_bytes());
        ids.push(tid.iter().map(|b| format!("{b:02x}")).collect());
        for s in 0..spans {
            out.push(PSpan {
                trace_id: tid.to_vec(),
                span_id: (s + 1 + (t << 8)).to_be_bytes().to_vec(),
                parent_span_id: if s == 0 { Vec::new() } else { (1 + (t << 8)).to_be_bytes().to_vec() },
                name: format!("op-{s}"),
                kind: 2,
                start_time_unix_nano: now + s * 1000,
                end_time_unix_nano: now + s * 1000 + 500_000,
                attributes: vec![PKeyValue {
                    key: "http.route".into(),
                    value: Some(AnyValue { value: Some(any_value::Value::StringValue(format!("/r/{s}"))) }),
                    ..Default::default()
                }],
                ..Default::default()
            });
        }
    }
    let req = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(PResource {
                attributes: vec![PKeyValue {
                    key: "service.name".into(),
                    value: Some(AnyValue { value: Some(any_value::Value::StringValue("loadgen".into())) }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope { name: "test".into(), ..Default::default() }),
                spans: out,
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    (req, ids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_otlp_ingest_loses_nothing_acknowledged() {
    let node = Node::start(&[], &[]).await;
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let target = format!("http://{}/v1/traces", node.otlp_http);
    let senders: Vec<_> = (0..4u64)
        .map(|w| {
            let (acked, target) = (acked.clone(), target.clone());
            tokio::spawn(async move {
                let http = Http::new();
                for i in 0.. {
                    let (req, ids) = otlp_batch(w * 1_000_000 + i, 10, 5);
                    let r = http
                        .try_send(
                            http::Method::POST,
                            &target,
                            &[("content-type", "application/x-protobuf")],
                            bytes::Bytes::from(req.encode_to_vec()),
                        )
                        .await;
                    match r {
                        Ok(r) if r.status == 200 => acked.lock().unwrap().extend(ids),
                        Ok(r) if r.status == 429 || r.status == 503 => {
                            tokio::time::sleep(Duration::from_millis(20)).await
                        }
                        Ok(r) => panic!("unexpected answer {}: {}", r.status, r.text()),
                        Err(_) => return, // the node is gone
                    }
                }
            })
        })
        .collect();
    // Let ingest run, then kill the node mid-stream.
    eventually(Duration::from_secs(15), "some acknowledged traces", || {
        let n = acked.lock().unwrap().len();
        async move { (n >= 2_000).then_some(()) }
    })
    .await;
    let dir = node.kill9();
    for s in senders {
        tokio::time::timeout(Duration::from_secs(10), s).await.expect("senders stop").unwrap();
    }
    let acked = acked.lock().unwrap().clone();

    let node = Node::start_in(dir, &[], &[]).await;
    let http = Http::new();
    let mut missing = Vec::new();
    for id in &acked {
        let r = http.get(&url(&node, &format!("/api/traces/{id}"))).await;
        let spans = r.json()["spans"].as_array().map(Vec::len).unwrap_or(0);
        if r.status != 200 || spans != 5 {
            missing.push(format!("{id}: {} with {spans} spans", r.status));
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged traces lost or partial: {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(5)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_spans_join_the_trace_and_the_dependency_graph_in_serve_mode() {
    let up = serve(echo("inventory")).await;
    let route = format!("/inventory={}", up.url());
    let node = Node::start(&["--route", &route], &[]).await;
    let http = Http::new();
    let tid = "4bf92f3577b34da6a3ce929d0e0e4736";
    let r = http
        .send(
            http::Method::GET,
            &format!("http://{}/inventory/items", node.gateway),
            &[("traceparent", &format!("00-{tid}-00f067aa0ba902b7-01"))],
            bytes::Bytes::new(),
        )
        .await;
    assert_eq!(r.status, 200);
    // The upstream saw the gateway's client span as its parent.
    let tp = r.json()["headers"]["traceparent"].as_str().unwrap().to_owned();
    let gw_client = tp.split('-').nth(2).unwrap().to_owned();

    let t = trace_with(&http, &node, tid, 2).await;
    let spans = t["spans"].as_array().unwrap();
    let server = spans.iter().find(|s| s["kind"] == "server").expect("server span");
    let client = spans.iter().find(|s| s["kind"] == "client").expect("client span");
    assert_eq!(server["service"], "signalbox-gateway");
    assert_eq!(server["parent_span_id"], "00f067aa0ba902b7");
    assert_eq!(client["span_id"], gw_client.as_str());
    assert_eq!(client["parent_span_id"], server["span_id"]);

    // The upstream reports its own span over Zipkin: the edge goes gateway -> inventory.
    let now_us = signalbox_core::time::unix_nanos() / 1000;
    let z = serde_json::json!([{
        "traceId": tid, "id": "00000000000000aa", "parentId": gw_client, "name": "get /items",
        "kind": "SERVER", "timestamp": now_us, "duration": 800,
        "localEndpoint": { "serviceName": "inventory" }
    }]);
    let posted = http
        .send(
            http::Method::POST,
            &format!("http://{}/api/v2/spans", node.zipkin),
            &[("content-type", "application/json")],
            z.to_string(),
        )
        .await;
    assert_eq!(posted.status, 202, "{}", posted.text());
    trace_with(&http, &node, tid, 3).await;
    let u = url(&node, "/api/traces/dependencies");
    eventually(Duration::from_secs(10), "edge signalbox-gateway -> inventory", || {
        let (http, u) = (http.clone(), u.clone());
        async move {
            let deps = http.get(&u).await.json();
            deps["edges"]
                .as_array()?
                .iter()
                .any(|e| e["caller"] == "signalbox-gateway" && e["callee"] == "inventory")
                .then_some(())
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_gateway_exports_its_spans_over_otlp() {
    let node = Node::start(&[], &[]).await;
    let up = serve(echo("orders")).await;
    let gw = StandaloneGateway::start(
        &[
            "--control-plane".into(),
            format!("http://{}", node.console),
            "--otlp-endpoint".into(),
            format!("http://{}", node.otlp_grpc),
            "--route".into(),
            format!("/orders={}", up.url()),
        ],
        &[("SIGNALBOX_GATEWAY__WORKERS", "1")],
    )
    .await;
    let http = Http::new();
    let gw_url = format!("http://{}/orders/1", gw.gateway);
    let tid = "0af7651916cd43dd8448eb211c80319c";
    let tp = format!("00-{tid}-b7ad6b7169203331-01");
    let r = http.send(http::Method::GET, &gw_url, &[("traceparent", &tp)], bytes::Bytes::new()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let t = trace_with(&http, &node, tid, 2).await;
    assert!(t["spans"].as_array().unwrap().iter().all(|s| s["service"] == "signalbox-gateway"), "{t}");
    let metrics = http.get(&format!("http://{}/metrics", gw.admin)).await.text();
    assert!(metrics.contains("signalbox_otlp_export_spans_total{result=\"sent\"}"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_opentelemetry_python_sdk_over_otlp_http() {
    let node = Node::start(&[], &[]).await;
    let script = format!("{}/tests/python/otel_send.py", env!("CARGO_MANIFEST_DIR"));
    let mut child = Command::new("python3")
        .args([script.as_str(), &format!("http://{}", node.otlp_http)])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the Python exporter did not finish in 60 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "python3 otel_send.py failed (scripts/test-deps.sh installs the SDK): {stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let printed: Vec<&str> = stdout.split_whitespace().collect();
    let [tid, linked_trace, linked_span] = printed[..] else { panic!("{stdout:?} {stderr}") };
    assert_eq!(tid.len(), 32, "{tid:?} {stderr}");

    let http = Http::new();
    let t = trace_with(&http, &node, tid, 2).await;
    let spans = t["spans"].as_array().unwrap();
    let root = spans.iter().find(|s| s["name"] == "POST /checkout").expect("the root span");
    let child = spans.iter().find(|s| s["name"] == "charge card").expect("the child span");
    assert_eq!(root["service"], "py-checkout");
    assert_eq!(child["parent_span_id"], root["span_id"], "{t}");
    assert_eq!(root["attributes"]["order.items"], 3, "{t}");
    assert_eq!(root["resource"]["deployment.environment"], "test", "resource attributes arrive: {t}");
    assert_eq!(root["resource"]["telemetry.sdk.language"], "python", "the SDK's own resource attributes: {t}");
    assert_eq!(root["attributes"].get("deployment.environment"), None, "the resource stays apart: {t}");
    assert_eq!(root["scope"]["name"], "signalbox-compat-test", "{t}");
    assert_eq!(child["links"][0]["trace_id"], linked_trace, "{t}");
    assert_eq!(child["links"][0]["span_id"], linked_span, "{t}");
    assert_eq!(child["links"][0]["attributes"]["link.reason"], "consumes", "{t}");
    // Jaeger: the link is a FOLLOWS_FROM reference, the resource the process's tags.
    let j = json(&http, &url(&node, &format!("/jaeger/api/traces/{tid}"))).await;
    let jt = &j["data"][0];
    let jc = jt["spans"].as_array().unwrap().iter().find(|s| s["operationName"] == "charge card").unwrap();
    assert!(
        jc["references"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["refType"] == "FOLLOWS_FROM" && r["spanID"] == linked_span),
        "{jc}"
    );
    let process = &jt["processes"][jc["processID"].as_str().unwrap()];
    assert!(process["tags"].as_array().unwrap().iter().any(|t| t["key"] == "deployment.environment"), "{process}");
    assert_eq!(child["status"], "error", "{t}");
    assert_eq!(child["events"][0]["name"], "card declined", "{t}");
    assert_eq!(child["attributes"]["peer.service"], "payments");
    // Found by the error search too.
    let found = http.get(&url(&node, "/api/traces?service=py-checkout&status=error&lookback=1h")).await.json();
    assert!(ids(&found["traces"], "trace_id").contains(&tid.to_owned()), "{found}");
}
