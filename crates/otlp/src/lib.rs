//! OTLP (OpenTelemetry protocol) protobuf and JSON messages converted to and from Signalbox's
//! model, shared by the receivers (`api`), the standalone gateway's span exporter, the load
//! generators and the fuzz targets, so none of them needs the HTTP servers to convert a span.
//!
//! # Layout
//! - [`logs`]: `ExportLogsServiceRequest` to log records.
//! - [`metrics`]: `ExportMetricsServiceRequest` to Prometheus samples (names, units, `_total`,
//!   histograms, `target_info`, delta to cumulative).
//! - [`traces`]: `ExportTraceServiceRequest` to spans and back.

pub mod logs;
pub mod metrics;
pub mod traces;
