//! How a sample service reports itself: OpenTelemetry spans exported over OTLP/gRPC by the
//! real SDK, W3C `traceparent` in and out, Prometheus metrics on `/metrics`, and JSON log
//! lines with trace and span ids in a file the agent ships.

use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState, TracerProvider as _};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider, SpanData, SpanExporter};
use signalbox_core::metrics::{Counter, Histogram, Registry};
use std::io::Write as _;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

/// Runs the exporter's calls on the demo's runtime: the SDK's batch processor drives them
/// from its own thread with a plain executor, while tonic needs a tokio reactor.
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

/// A tracer provider for one service instance, exporting to the node's OTLP/gRPC receiver
/// in batches. Must be called inside the runtime.
pub fn tracer_provider(
    service: &str,
    instance: &str,
    version: &str,
    otlp_grpc: &str,
) -> anyhow::Result<SdkTracerProvider> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(otlp_grpc.to_owned())
        .with_timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| anyhow::anyhow!("cannot build the OTLP exporter: {e}"))?;
    let resource = Resource::builder()
        .with_service_name(service.to_owned())
        .with_attribute(opentelemetry::KeyValue::new("service.instance.id", instance.to_owned()))
        .with_attribute(opentelemetry::KeyValue::new("service.version", version.to_owned()))
        .build();
    let rt = tokio::runtime::Handle::current();
    Ok(SdkTracerProvider::builder()
        .with_resource(resource)
        .with_batch_exporter(OnRuntime { inner: exporter, rt })
        .build())
}

pub fn tracer(p: &SdkTracerProvider) -> SdkTracer {
    p.tracer("signalbox-demo")
}

/// The remote parent in a `traceparent` header (`00-<trace>-<span>-<flags>`), if valid.
pub fn parse_traceparent(v: &str) -> Option<SpanContext> {
    let mut it = v.trim().split('-');
    let (version, trace, span, flags) = (it.next()?, it.next()?, it.next()?, it.next()?);
    if version.len() != 2 || trace.len() != 32 || span.len() != 16 || flags.len() != 2 {
        return None;
    }
    let trace_id = TraceId::from_hex(trace).ok()?;
    let span_id = SpanId::from_hex(span).ok()?;
    let flags = u8::from_str_radix(flags, 16).ok()?;
    let sc = SpanContext::new(trace_id, span_id, TraceFlags::new(flags), true, TraceState::default());
    sc.is_valid().then_some(sc)
}

/// The `traceparent` header value naming `sc` as the parent.
pub fn traceparent(sc: &SpanContext) -> String {
    format!("00-{}-{}-{:02x}", sc.trace_id(), sc.span_id(), sc.trace_flags().to_u8())
}

/// Latency buckets of the services' request histogram, in seconds.
const BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// One instance's own metrics, served on its `/metrics`.
pub struct ServiceMetrics {
    pub registry: Registry,
}

impl ServiceMetrics {
    pub fn new() -> Self {
        ServiceMetrics { registry: Registry::new() }
    }

    /// Counts a served request and observes its duration.
    pub fn request(&self, path: &str, status: u16, seconds: f64) {
        let code = status.to_string();
        let c: Counter = self.registry.counter(
            "demo_http_requests_total",
            "Requests this instance served, by path and status code.",
            &[("path", path), ("code", &code)],
        );
        c.inc();
        let h: Histogram = self.registry.histogram(
            "demo_http_request_duration_seconds",
            "Time this instance took to answer, by path.",
            &[("path", path)],
            BUCKETS,
        );
        h.observe(seconds);
    }

    /// Counts a call to another service, by its outcome.
    pub fn call(&self, service: &str, ok: bool) {
        self.registry
            .counter(
                "demo_downstream_calls_total",
                "Calls this instance made to other services through the gateway, by outcome.",
                &[("service", service), ("outcome", if ok { "ok" } else { "error" })],
            )
            .inc();
    }
}

/// JSON log lines, one per record, appended to a file.
pub struct JsonLog {
    file: Mutex<std::fs::File>,
}

impl JsonLog {
    pub fn open(path: &Path) -> std::io::Result<JsonLog> {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        Ok(JsonLog { file: Mutex::new(file) })
    }

    /// Writes one record: `fields` are added to time, level, message and the span's ids.
    pub fn write(&self, level: &str, message: &str, span: Option<&SpanContext>, fields: serde_json::Value) {
        let mut rec = serde_json::json!({
            "timestamp": rfc3339_now(),
            "level": level,
            "message": message,
        });
        if let Some(sc) = span.filter(|s| s.is_valid()) {
            rec["trace_id"] = sc.trace_id().to_string().into();
            rec["span_id"] = sc.span_id().to_string().into();
        }
        if let (Some(obj), serde_json::Value::Object(extra)) = (rec.as_object_mut(), fields) {
            obj.extend(extra);
        }
        let mut line = rec.to_string();
        line.push('\n');
        let mut f = self.file.lock().unwrap_or_else(|e| e.into_inner());
        // A full disk loses demo log lines, nothing more; the demo keeps running.
        let _ = f.write_all(line.as_bytes());
    }
}

/// Now as RFC 3339 UTC with milliseconds.
pub fn rfc3339_now() -> String {
    let nanos = signalbox_core::time::unix_nanos();
    let secs = (nanos / 1_000_000_000) as i64;
    let millis = (nanos / 1_000_000) % 1000;
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    format!("{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z", rem / 3600, rem / 60 % 60, rem % 60)
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Wall-clock `HH:MM:SS` (UTC) for the narration.
pub fn clock() -> String {
    let secs = (signalbox_core::time::unix_nanos() / 1_000_000_000) % 86_400;
    format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trips_and_rejects_garbage() {
        let sc = parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(traceparent(&sc), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        assert!(parse_traceparent("00-00000000000000000000000000000000-00f067aa0ba902b7-01").is_none());
        assert!(parse_traceparent("garbage").is_none());
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
    }
}
