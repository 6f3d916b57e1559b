//! What the gateway records about each request: RED metrics per route, service and endpoint;
//! a server span per request and a client span per upstream try; one JSON access-log line.
//!
//! Everything leaves the request path without waiting: counters are atomics registered when
//! the config is compiled, spans go to the [`SpanSink`], and log lines go through a bounded
//! queue to a writer thread. A full queue drops and counts; it never blocks a request.
//!
//! # Layout
//! - this file: metrics, the per-thread buffers, spans ([`Finish`]) and head sampling
//!   ([`head_sampled`]);
//! - `access_log`: the JSON line writer, the writer thread, and the line read back as a
//!   record of the node's log store.

mod access_log;

use crate::tracectx::TraceContext;
use crate::traffic::metrics::{ByVersion, Kind as VersionKind};
use access_log::{JsonLine, spawn_log_writer};
use http::{HeaderMap, Method};
use signalbox_core::ids::{SpanId, TraceId};
use signalbox_core::metrics::{Counter, Histogram, LATENCY_BUCKETS, Registry};
use signalbox_core::span::{KeyValue, Resource, Scope, Span, SpanFlags, SpanKind, StatusCode};
use signalbox_core::telemetry::{Refused, SpanSink};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Instant;

/// Status classes counted separately; the last one is "no response" (a gateway failure).
pub const CLASSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "error"];

pub fn class_index(status: Option<u16>) -> usize {
    match status {
        Some(s @ 100..=599) => (s / 100 - 1) as usize,
        _ => 5,
    }
}

/// Head sampling: whether the spans of a trace that arrived without a sampling decision are
/// recorded. Decided from the trace id, so every gateway node and every try of a request
/// decides alike: the id's last 7 bytes, random in W3C trace context (level 2) and in B3's
/// 64-bit ids, are read as a number below 2^56 and compared with `ratio` × 2^56.
pub fn head_sampled(trace_id: &TraceId, ratio: f64) -> bool {
    if ratio >= 1.0 {
        return true;
    }
    if ratio <= 0.0 || ratio.is_nan() {
        return false;
    }
    let mut b = [0u8; 8];
    b[1..].copy_from_slice(&trace_id.0[9..]);
    (u64::from_be_bytes(b) as f64) < ratio * (1u64 << 56) as f64
}

/// Per-route series, registered when the route is compiled.
pub struct RouteMetrics {
    requests: [Counter; 6],
    duration: Histogram,
    /// The same series with a `version` label, for requests a versioned endpoint served.
    pub by_version: crate::traffic::metrics::ByVersion,
    /// Mirror copies by mirror version.
    pub mirrors: crate::traffic::metrics::ByVersion,
}

impl RouteMetrics {
    pub fn new(reg: &Registry, route: &str, service: &str) -> Self {
        RouteMetrics {
            requests: CLASSES.map(|class| {
                reg.counter(
                    "signalbox_gateway_requests_total",
                    "Requests handled by the gateway, by route, upstream service and status class.",
                    &[("route", route), ("service", service), ("class", class)],
                )
            }),
            duration: reg.histogram(
                "signalbox_gateway_request_duration_seconds",
                "Time from request received to response body finished, by route and service.",
                &[("route", route), ("service", service)],
                LATENCY_BUCKETS,
            ),
            by_version: ByVersion::new(reg, route, service, VersionKind::Requests),
            mirrors: ByVersion::new(reg, route, service, VersionKind::Mirror),
        }
    }
}

/// Per-endpoint series.
pub struct EndpointMetrics {
    tries: [Counter; 6],
    duration: Histogram,
}

impl EndpointMetrics {
    pub fn new(reg: &Registry, service: &str, endpoint: &str) -> Self {
        EndpointMetrics {
            tries: CLASSES.map(|class| {
                reg.counter(
                    "signalbox_gateway_upstream_requests_total",
                    "Tries sent to upstream endpoints, by status class (`error`: no response).",
                    &[("service", service), ("endpoint", endpoint), ("class", class)],
                )
            }),
            duration: reg.histogram(
                "signalbox_gateway_upstream_duration_seconds",
                "Time from try sent to upstream response headers, by endpoint.",
                &[("service", service), ("endpoint", endpoint)],
                LATENCY_BUCKETS,
            ),
        }
    }

    pub fn record(&self, status: Option<u16>, seconds: f64) {
        self.tries[class_index(status)].inc();
        self.duration.observe(seconds);
    }
}

/// Per-thread buffers: spans and access-log bytes wait here until a batch is full or the
/// worker's flush tick (50 ms) comes, so the request path never touches a shared queue.
#[derive(Default)]
struct Local {
    spans: Vec<Span>,
    log: Vec<u8>,
    log_lines: u64,
}

const SPAN_BATCH: usize = 256;
const LOG_CHUNK: usize = 64 * 1024;

/// The gateway-wide telemetry switches and outlets.
pub struct Telemetry {
    pub spans: bool,
    pub metrics: bool,
    pub service_name: String,
    sink: Arc<dyn SpanSink>,
    access_log: Option<mpsc::SyncSender<Vec<u8>>>,
    local: thread_local::ThreadLocal<std::sync::Mutex<Local>>,
    spans_sent: Counter,
    spans_dropped_full: Counter,
    spans_dropped_no_consumer: Counter,
    log_dropped: Counter,
}

impl Telemetry {
    /// Sets up the outlets. `access_log` is `"stdout"`, `"off"` or a file path.
    pub fn new(
        cfg: &crate::config::TelemetryConfig,
        service_name: &str,
        sink: Arc<dyn SpanSink>,
        logs: Option<Arc<dyn signalbox_core::log::LogOffer>>,
        reg: &Registry,
    ) -> std::io::Result<Self> {
        let target = match cfg.access_log.as_str() {
            "off" | "" => None,
            t => Some(t),
        };
        let store_dropped = reg.counter(
            "signalbox_gateway_access_log_records_dropped_total",
            "Access-log records the log store's queue refused.",
            &[],
        );
        let access_log = if target.is_some() || logs.is_some() {
            Some(spawn_log_writer(
                target,
                logs,
                store_dropped,
                service_name.to_owned(),
                (cfg.queue_capacity / 64).max(16),
            )?)
        } else {
            None
        };
        let dropped = |reason| {
            reg.counter(
                "signalbox_gateway_spans_dropped_total",
                "Gateway spans not delivered, by reason (`full`: queue full, `no_consumer`: no trace store or exporter).",
                &[("reason", reason)],
            )
        };
        Ok(Telemetry {
            spans: cfg.spans,
            metrics: cfg.metrics,
            service_name: service_name.to_owned(),
            sink,
            access_log,
            local: thread_local::ThreadLocal::new(),
            spans_sent: reg.counter(
                "signalbox_gateway_spans_total",
                "Gateway spans handed to the trace pipeline.",
                &[],
            ),
            spans_dropped_full: dropped("full"),
            spans_dropped_no_consumer: dropped("no_consumer"),
            log_dropped: reg.counter(
                "signalbox_gateway_access_log_dropped_total",
                "Access-log lines dropped because the writer fell behind.",
                &[],
            ),
        })
    }

    /// Whether per-request records are needed at all.
    pub fn enabled(&self) -> bool {
        self.spans || self.metrics || self.access_log.is_some()
    }

    fn with_local<R>(&self, f: impl FnOnce(&mut Local) -> R) -> R {
        let m = self.local.get_or(Default::default);
        // Only this thread and the final flush take this lock; a poisoned one still holds
        // valid buffers.
        let mut l = m.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut l)
    }

    /// Queues a request's spans on this thread's batch.
    fn push_spans(&self, server: Span, clients: Vec<Span>) {
        let full = self.with_local(|l| {
            l.spans.push(server);
            l.spans.extend(clients);
            // The next batch starts at full size rather than growing by doubling.
            (l.spans.len() >= SPAN_BATCH).then(|| std::mem::replace(&mut l.spans, Vec::with_capacity(SPAN_BATCH + 4)))
        });
        if let Some(batch) = full {
            self.send_spans(batch);
        }
    }

    fn send_spans(&self, batch: Vec<Span>) {
        let n = batch.len() as u64;
        match self.sink.offer(batch) {
            Ok(()) => self.spans_sent.add(n),
            Err(Refused::Full) => self.spans_dropped_full.add(n),
            Err(Refused::NoConsumer) => self.spans_dropped_no_consumer.add(n),
        }
    }

    fn send_log(&self, chunk: Vec<u8>, lines: u64) {
        if let Some(tx) = &self.access_log
            && tx.try_send(chunk).is_err()
        {
            self.log_dropped.add(lines);
        }
    }

    /// Sends this thread's buffered spans and log lines.
    pub fn flush_local(&self) {
        let (spans, log, lines) = self.with_local(|l| {
            (std::mem::take(&mut l.spans), std::mem::take(&mut l.log), std::mem::take(&mut l.log_lines))
        });
        self.flush(spans, log, lines);
    }

    /// Sends every thread's buffers (at shutdown).
    pub fn flush_all(&self) {
        for m in self.local.iter() {
            let (spans, log, lines) = {
                let mut l = m.lock().unwrap_or_else(|e| e.into_inner());
                (std::mem::take(&mut l.spans), std::mem::take(&mut l.log), std::mem::take(&mut l.log_lines))
            };
            self.flush(spans, log, lines);
        }
    }

    fn flush(&self, spans: Vec<Span>, log: Vec<u8>, lines: u64) {
        if !spans.is_empty() {
            self.send_spans(spans);
        }
        if !log.is_empty() {
            self.send_log(log, lines);
        }
    }
}

/// `"{a} {b}"`, without the formatting machinery (it runs twice per request).
fn joined(a: &str, b: &str) -> String {
    let mut s = String::with_capacity(a.len() + 1 + b.len());
    s.push_str(a);
    s.push(' ');
    s.push_str(b);
    s
}

/// One upstream try, as recorded for the client span and the access log.
pub struct TryRecord {
    pub span_id: SpanId,
    pub endpoint: String,
    pub start_unix: u64,
    pub end_unix: u64,
    pub status: Option<u16>,
    pub error: Option<&'static str>,
}

/// The telemetry record of one request, finished when its response body ends.
pub struct Finish {
    pub tel: Arc<Telemetry>,
    pub route_name: Arc<str>,
    pub service: Arc<str>,
    pub metrics: Option<Arc<RouteMetrics>>,
    pub started: Instant,
    pub start_unix: u64,
    pub method: Method,
    pub path: String,
    pub host: String,
    pub client: String,
    pub user_agent: String,
    pub protocol: &'static str,
    pub request_id: String,
    pub trace: TraceContext,
    pub server_span: SpanId,
    pub sampled: bool,
    pub status: u16,
    pub error_code: Option<&'static str>,
    pub endpoint: Option<String>,
    /// The version of the endpoint that answered, when it has one.
    pub version: Option<Arc<str>>,
    pub tries: Vec<TryRecord>,
    pub grpc: bool,
    /// `grpc-status` of a trailers-only response (otherwise it comes in the trailers).
    pub grpc_status: Option<u32>,
    pub identity: Option<String>,
}

impl Finish {
    /// Records metrics, spans and the access-log line. `trailers` are the response trailers
    /// (gRPC puts its status there); `error` says why the body ended early, if it did.
    pub fn complete(self: Box<Self>, bytes_out: u64, trailers: Option<&HeaderMap>, error: Option<&str>) {
        let elapsed = self.started.elapsed();
        let end_unix = self.start_unix + elapsed.as_nanos() as u64;
        let grpc_status = trailers
            .and_then(|t| t.get("grpc-status"))
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u32>().ok())
            .or(self.grpc_status);
        if let Some(m) = &self.metrics {
            match &self.version {
                Some(v) => m.by_version.record(v, Some(self.status), elapsed.as_secs_f64()),
                None => {
                    m.requests[class_index(Some(self.status))].inc();
                    m.duration.observe(elapsed.as_secs_f64());
                }
            }
        }
        if self.tel.access_log.is_some() {
            let full = self.tel.with_local(|l| {
                self.write_log_line(&mut l.log, end_unix, bytes_out, grpc_status, error);
                l.log_lines += 1;
                (l.log.len() >= LOG_CHUNK).then(|| (std::mem::take(&mut l.log), std::mem::take(&mut l.log_lines)))
            });
            if let Some((chunk, lines)) = full {
                self.tel.send_log(chunk, lines);
            }
        }
        if self.tel.spans && self.sampled {
            let mut this = self;
            this.emit_spans(end_unix, grpc_status, error);
        }
    }

    /// Builds the server span and a client span per try and queues them on this thread.
    /// Runs last: the request's strings move into the server span instead of being copied
    /// (the access-log line has been written from them already).
    fn emit_spans(&mut self, end_unix: u64, grpc_status: Option<u32>, error: Option<&str>) {
        let svc = &self.tel.service_name;
        let method = self.method.as_str();
        let failed = self.status >= 500 || error.is_some() || grpc_status.is_some_and(|c| c != 0);
        let trace_state = self.trace.trace_state.as_ref().and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        let mut clients = Vec::with_capacity(self.tries.len());
        for (n, t) in self.tries.iter_mut().enumerate() {
            let mut attrs = Vec::with_capacity(7);
            attrs.push(KeyValue::str("http.request.method", method));
            attrs.push(KeyValue::str("server.address", std::mem::take(&mut t.endpoint)));
            attrs.push(KeyValue::str("peer.service", &*self.service));
            attrs.push(KeyValue::str("url.path", self.path.as_str()));
            if n > 0 {
                attrs.push(KeyValue::int("http.request.resend_count", n as i64));
            }
            if let Some(s) = t.status {
                attrs.push(KeyValue::int("http.response.status_code", s as i64));
            }
            if let Some(e) = t.error {
                attrs.push(KeyValue::str("error.type", e));
            }
            let failed = t.error.is_some() || t.status.is_some_and(|s| s >= 500);
            clients.push(Span {
                trace_id: self.trace.trace_id,
                span_id: t.span_id,
                parent_span_id: Some(self.server_span),
                trace_state: trace_state.clone(),
                service: svc.clone(),
                name: joined(method, &self.service),
                kind: SpanKind::Client,
                start_unix_nanos: t.start_unix,
                end_unix_nanos: t.end_unix,
                status: if failed { StatusCode::Error } else { StatusCode::Unset },
                status_message: t.error.unwrap_or("").to_owned(),
                attributes: attrs,
                events: Vec::new(),
                links: Vec::new(),
                resource: Resource::none(),
                scope: Scope::none(),
                flags: SpanFlags::default(),
            });
        }
        let mut attrs = Vec::with_capacity(13);
        attrs.push(KeyValue::str("http.request.method", method));
        attrs.push(KeyValue::str("url.path", std::mem::take(&mut self.path)));
        attrs.push(KeyValue::str("http.route", &*self.route_name));
        attrs.push(KeyValue::int("http.response.status_code", self.status as i64));
        attrs.push(KeyValue::str("server.address", std::mem::take(&mut self.host)));
        attrs.push(KeyValue::str("client.address", std::mem::take(&mut self.client)));
        attrs.push(KeyValue::str("network.protocol.version", self.protocol));
        attrs.push(KeyValue::str("signalbox.upstream.service", &*self.service));
        attrs.push(KeyValue::str("request.id", std::mem::take(&mut self.request_id)));
        if !self.user_agent.is_empty() {
            attrs.push(KeyValue::str("user_agent.original", std::mem::take(&mut self.user_agent)));
        }
        if let Some(code) = self.error_code {
            attrs.push(KeyValue::str("error.type", code));
        }
        if let Some(c) = grpc_status {
            attrs.push(KeyValue::int("rpc.grpc.status_code", c as i64));
        }
        if let Some(id) = self.identity.take() {
            attrs.push(KeyValue::str("enduser.id", id));
        }
        if let Some(v) = &self.version {
            attrs.push(KeyValue::str("signalbox.version", v.to_string()));
        }
        let server = Span {
            trace_id: self.trace.trace_id,
            span_id: self.server_span,
            parent_span_id: self.trace.parent,
            trace_state,
            service: svc.clone(),
            name: joined(method, &self.route_name),
            kind: SpanKind::Server,
            start_unix_nanos: self.start_unix,
            end_unix_nanos: end_unix,
            status: if failed { StatusCode::Error } else { StatusCode::Unset },
            status_message: error.or(self.error_code).unwrap_or("").to_owned(),
            attributes: attrs,
            events: Vec::new(),
            links: Vec::new(),
            resource: Resource::none(),
            scope: Scope::none(),
            flags: SpanFlags::default(),
        };
        self.tel.push_spans(server, clients);
    }

    /// Appends one JSON line; written by hand because it runs for every request (serde_json's
    /// `Value` costs a map and a dozen allocations per line).
    fn write_log_line(
        &self,
        out: &mut Vec<u8>,
        end_unix: u64,
        bytes_out: u64,
        grpc_status: Option<u32>,
        error: Option<&str>,
    ) {
        let mut j = JsonLine::new(out);
        j.str("ts", &signalbox_core::time::rfc3339_millis(self.start_unix));
        j.hex("trace_id", &self.trace.trace_id.0);
        j.hex("span_id", &self.server_span.0);
        j.str("request_id", &self.request_id);
        j.str("client", &self.client);
        j.str("method", self.method.as_str());
        j.str("host", &self.host);
        j.str("path", &self.path);
        j.str("protocol", self.protocol);
        j.str("route", &self.route_name);
        j.str("service", &self.service);
        match &self.endpoint {
            Some(e) => j.str("endpoint", e),
            None => j.raw("endpoint", "null"),
        }
        if let Some(v) = &self.version {
            j.str("version", v);
        }
        j.uint("status", self.status as u64);
        j.uint("tries", self.tries.len() as u64);
        j.num("duration_ms", (end_unix.saturating_sub(self.start_unix)) as f64 / 1e6);
        j.uint("bytes_out", bytes_out);
        if let Some(c) = self.error_code {
            j.str("error_code", c);
        }
        if let Some(e) = error {
            j.str("error", e);
        }
        if let Some(g) = grpc_status {
            j.uint("grpc_status", g as u64);
        }
        if let Some(id) = &self.identity {
            j.str("client_id", id);
        }
        if !self.user_agent.is_empty() {
            j.str("user_agent", &self.user_agent);
        }
        j.end();
    }
}

#[cfg(test)]
mod tests;
