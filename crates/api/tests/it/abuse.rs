//! Every GET endpoint of the console port and the Consul API under mutated query
//! parameters: no handler may panic (the connection would drop) or answer 500, and every
//! error is the JSON shape. Complements the parser-level mutation tests in `params.rs`.

use crate::Node;
use crate::decoders::Mutator;
use std::time::Duration;

const ENDPOINTS: &[&str] = &[
    "/api/config",
    "/api/config/app/default/key",
    "/api/config/app/default/key/diff",
    "/api/config/app/default/key/history",
    "/api/registry/services",
    "/api/registry/services/web",
    "/api/registry/services/web/endpoints",
    "/api/registry/instances/web-1",
    "/api/traces",
    "/api/traces/dependencies",
    "/api/traces/services",
    "/api/traces/services/web/operations",
    "/api/traces/0af7651916cd43dd8448eb211c80319c",
    "/config/app/default",
    "/jaeger/api/dependencies",
    "/jaeger/api/operations",
    "/jaeger/api/services",
    "/jaeger/api/services/web/operations",
    "/jaeger/api/traces",
    "/jaeger/api/traces/0af7651916cd43dd8448eb211c80319c",
    "/zipkin/api/v2/dependencies",
    "/zipkin/api/v2/remoteServices",
    "/zipkin/api/v2/services",
    "/zipkin/api/v2/spans",
    "/zipkin/api/v2/traces",
    "/zipkin/api/v2/trace/0af7651916cd43dd",
    "/consul/v1/catalog/services",
    "/consul/v1/catalog/service/web",
    "/consul/v1/health/service/web",
    "/consul/v1/health/checks/web",
    "/consul/v1/agent/services",
    "/consul/v1/kv/some/key",
];

const PARAMS: &[(&str, &str)] = &[
    ("start", "1709210096"),
    ("end", "2026-01-02T03:04:05Z"),
    ("lookback", "1h"),
    ("limit", "20"),
    ("index", "5"),
    ("version", "1"),
    ("from", "1"),
    ("to", "2"),
    ("minDuration", "1ms"),
    ("maxDuration", "1.5s"),
    ("min_duration", "10ms"),
    ("tags", r#"{"http.status_code":"500"}"#),
    ("tag", "k=v"),
    ("service", "web"),
    ("serviceName", "web"),
    ("spanKind", "server"),
    ("traceID", "0af7651916cd43dd8448eb211c80319c"),
    ("endTs", "1709210096000"),
    ("annotationQuery", "error and http.path=/x"),
    ("recurse", "true"),
    ("separator", "/"),
    ("passing", "1"),
    ("filter", "Service == web"),
];

#[tokio::test]
async fn mutated_query_parameters_never_break_a_handler() {
    let (node, _traces, _) = Node::with_traces(Default::default(), 64).await;
    let mut m = Mutator(0xA11CE);
    let mut requests = 0;
    for path in ENDPOINTS {
        for (name, good) in PARAMS {
            for round in 0..6 {
                let value = if round == 0 {
                    good.to_string()
                } else {
                    let mut v = String::from_utf8_lossy(&m.mutate(good.as_bytes())).into_owned();
                    if round % 2 == 0 {
                        v.push_str(["é", "日本", "%FF", "9999999999999999999999", "-1"][(m.next() % 5) as usize]);
                    }
                    v
                };
                let encoded: String = value
                    .bytes()
                    .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
                    .collect();
                // A short wait keeps blocking queries from blocking.
                let url = node.url(&format!("{path}?{name}={encoded}&wait=5ms"));
                let r = tokio::time::timeout(
                    Duration::from_secs(10),
                    node.http.try_send(http::Method::GET, &url, &[], bytes::Bytes::new()),
                )
                .await
                .unwrap_or_else(|_| panic!("{url} hung"))
                .unwrap_or_else(|e| panic!("{url}: the connection broke (a handler panicked?): {e}"));
                requests += 1;
                assert!(r.status < 500 || r.status == 503, "{url}: {} {}", r.status, r.text());
                // Consul's own answers (a missing key: a bare 404 with X-Consul-Index) are
                // Consul's shape, which Consul clients expect.
                let consul_bare = r.header("x-consul-index").is_some() && r.body.is_empty();
                if r.status >= 400 && !consul_bare {
                    let ct = r.header("content-type").unwrap_or("");
                    assert!(ct.starts_with("application/json"), "{url}: {} {ct} {}", r.status, r.text());
                    assert!(r.json()["error"].is_string() || r.json()["errors"].is_array(), "{url}: {}", r.text());
                }
            }
        }
    }
    assert_eq!(requests, ENDPOINTS.len() * PARAMS.len() * 6);
}
