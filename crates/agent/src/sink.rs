//! Where the reader's records go: the open batch and, once sealed, the disk buffer.

use crate::batch::Batch;
use crate::compile::{Compiled, Source};
use crate::filter;
use crate::metrics::Stats;
use crate::position::FileKey;
use crate::record::Record;
use crate::spool::Spool;
use crate::stop::StopSignal;
use crate::tail::Tracked;
use std::sync::Arc;
use std::time::Duration;

/// Where records go: the open batch and, once sealed, the disk buffer.
pub struct Sink {
    pub cfg: Arc<Compiled>,
    pub spool: Arc<Spool>,
    pub stats: Stats,
    pub stop: Arc<StopSignal>,
    pub(crate) batch: Batch,
}

impl Sink {
    pub fn new(cfg: Arc<Compiled>, spool: Arc<Spool>, stats: Stats, stop: Arc<StopSignal>) -> Sink {
        Sink { cfg, spool, stats, stop, batch: Batch::default() }
    }

    /// Parses, labels and filters one record's text into the batch.
    pub(crate) fn emit(&mut self, src: &Source, path: &Arc<str>, text: &str) {
        self.stats.records_read.inc();
        let observed = signalbox_core::time::unix_nanos();
        let p = src.parser.parse(text);
        if p.format_error {
            self.stats.parse_errors.inc();
        }
        if p.timestamp_error {
            self.stats.timestamp_errors.inc();
        }
        let rec = Record {
            timestamp_ns: p.timestamp_ns.unwrap_or(observed),
            observed_ns: observed,
            severity: p.severity.unwrap_or_else(|| src.default_severity.clone()),
            body: p.body,
            labels: src.labels.clone(),
            path: path.clone(),
            attributes: p.fields,
            trace_id: p.trace_id,
            span_id: p.span_id,
        };
        if filter::passes(&src.filters, &rec) {
            self.batch.push(&rec);
        } else {
            self.stats.records_filtered.inc();
        }
    }

    /// Notes a file's position if it moved, sealing the batch when full.
    pub(crate) fn note(&mut self, key: FileKey, t: &mut Tracked) {
        let now = t.mark();
        if t.noted != Some(now) {
            t.noted = Some(now);
            self.batch.note(key, Some(t.noted()));
        }
        if self.batch.is_full(self.cfg.batch_max_records, self.cfg.batch_max_bytes) {
            self.seal();
        }
    }

    pub(crate) fn forget(&mut self, key: FileKey) {
        self.batch.note(key, None);
    }

    /// Seals the open batch into the disk buffer, waiting for room; gives up only when the
    /// agent stops (the batch's lines are then read again on the next start).
    pub fn seal(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let (header, payload) = self.batch.seal(self.cfg.compression_level, signalbox_core::time::unix_nanos());
        loop {
            match self.spool.push(&header, &payload, || self.stop.is_set(), &self.stats.reading_paused) {
                Ok(_) => break,
                Err(e) => {
                    tracing::error!(error = %e, "cannot write to the disk buffer; retrying");
                    self.stats.set_error(Some(format!("disk buffer: {e}")));
                    if self.stop.wait(Duration::from_secs(1)) {
                        break;
                    }
                }
            }
        }
        let (batches, bytes) = self.spool.usage();
        self.stats.buffered_batches.set(batches as i64);
        self.stats.buffered_bytes.set(bytes as i64);
    }
}
