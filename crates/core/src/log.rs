//! The log record every log receiver decodes into and the log store keeps: OpenTelemetry's
//! log data model, with the fields a search needs first-class (time, severity, service,
//! instance, trace and span ids) and everything else as attributes.

use crate::ids::{SpanId, TraceId};
use crate::span::KeyValue;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// Where receivers hand decoded records: the log store, or an exporter.
pub trait LogSink: Send + Sync + 'static {
    /// Stores `records`; resolves once they would survive a crash (the receiver answers its
    /// client only then), or with why not.
    fn write(&self, records: Vec<LogRecord>) -> Pin<Box<dyn Future<Output = Result<(), LogWriteError>> + Send + '_>>;
}

/// Why records were not stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogWriteError {
    /// The store's queue is full: the client should retry after the delay (429).
    #[error("the log store is busy; retry after {retry_after:?}")]
    Busy { retry_after: Duration },
    /// Writing failed (a disk error): nothing was stored.
    #[error("log records could not be written: {0}")]
    Failed(String),
}

/// One log record.
#[derive(Clone, Debug, PartialEq)]
pub struct LogRecord {
    /// When the event happened (Unix nanoseconds); the observed time when the source gave
    /// none.
    pub unix_nanos: u64,
    /// When a collector first saw it (Unix nanoseconds).
    pub observed_unix_nanos: u64,
    pub severity: Severity,
    /// The severity as the source wrote it (`WARNING`, `err`, `E`), kept for display.
    pub severity_text: String,
    /// The message.
    pub body: String,
    /// `service.name`.
    pub service: String,
    /// `service.instance.id` (or a host:port, a pod name): which copy of the service wrote it.
    pub instance: String,
    /// Attributes of the source (host, process, container...), shared by its records.
    pub resource: Vec<KeyValue>,
    /// Attributes of this record (labels, parsed fields).
    pub attributes: Vec<KeyValue>,
    pub trace_id: Option<TraceId>,
    pub span_id: Option<SpanId>,
}

/// OpenTelemetry's severity number, 1 (TRACE) to 24 (FATAL4); 0 is unspecified.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Severity(pub u8);

impl Severity {
    pub const UNSPECIFIED: Severity = Severity(0);
    pub const TRACE: Severity = Severity(1);
    pub const DEBUG: Severity = Severity(5);
    pub const INFO: Severity = Severity(9);
    pub const WARN: Severity = Severity(13);
    pub const ERROR: Severity = Severity(17);
    pub const FATAL: Severity = Severity(21);

    /// From an OTLP severity number (out-of-range numbers are unspecified).
    pub fn from_number(n: i32) -> Severity {
        if (0..=24).contains(&n) { Severity(n as u8) } else { Severity::UNSPECIFIED }
    }

    /// From the words sources use: `warn`, `WARNING`, `err`, `E`, `crit`, syslog's names
    /// and numbers (0 emerg .. 7 debug), `notice`... Unknown text is unspecified.
    pub fn parse(text: &str) -> Severity {
        let t = text.trim();
        if let Ok(n) = t.parse::<u8>() {
            // Syslog severities: 0 emergency .. 7 debug.
            return match n {
                0..=2 => Severity::FATAL,
                3 => Severity::ERROR,
                4 => Severity::WARN,
                5 | 6 => Severity::INFO,
                7 => Severity::DEBUG,
                _ => Severity::UNSPECIFIED,
            };
        }
        let lower = t.to_ascii_lowercase();
        match lower.as_str() {
            "trace" | "t" | "finest" | "finer" => Severity::TRACE,
            "debug" | "d" | "dbg" | "fine" | "config" => Severity::DEBUG,
            "info" | "i" | "information" | "informational" | "notice" | "log" => Severity::INFO,
            "warn" | "w" | "warning" => Severity::WARN,
            "error" | "e" | "err" | "severe" | "exception" => Severity::ERROR,
            "fatal" | "f" | "critical" | "crit" | "alert" | "emerg" | "emergency" | "panic" => Severity::FATAL,
            _ => Severity::UNSPECIFIED,
        }
    }

    /// The short name of the range the number falls in (`ERROR` for 17..=20).
    pub fn name(self) -> &'static str {
        match self.0 {
            0 => "UNSPECIFIED",
            1..=4 => "TRACE",
            5..=8 => "DEBUG",
            9..=12 => "INFO",
            13..=16 => "WARN",
            17..=20 => "ERROR",
            _ => "FATAL",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severity_words_and_numbers() {
        assert_eq!(Severity::parse("WARNING"), Severity::WARN);
        assert_eq!(Severity::parse(" err "), Severity::ERROR);
        assert_eq!(Severity::parse("3"), Severity::ERROR);
        assert_eq!(Severity::parse("notice"), Severity::INFO);
        assert_eq!(Severity::parse("whatever"), Severity::UNSPECIFIED);
        assert_eq!(Severity::from_number(18).name(), "ERROR");
        assert_eq!(Severity::from_number(99), Severity::UNSPECIFIED);
        assert!(Severity::ERROR > Severity::WARN);
    }
}
