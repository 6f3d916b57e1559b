//! Metric metadata (type, help, unit per metric family) as targets expose it and pushers send
//! it, for the `/api/v1/metadata` API and the console's completion. Bounded: past
//! [`MAX_FAMILIES`] new families are not recorded (their samples are still stored).

use crate::exposition::MetricType;
use std::collections::{BTreeMap, HashMap};
use std::sync::RwLock;

/// Most metric families with metadata.
pub const MAX_FAMILIES: usize = 100_000;

/// One family's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// As Prometheus's API spells it: `counter`, `gauge`, `histogram`, `gaugehistogram`,
    /// `summary`, `info`, `stateset`, `unknown`.
    pub kind: &'static str,
    pub help: String,
    pub unit: String,
}

/// The API's name for a type.
pub fn kind_name(t: MetricType) -> &'static str {
    match t {
        MetricType::Counter => "counter",
        MetricType::Gauge => "gauge",
        MetricType::Histogram => "histogram",
        MetricType::GaugeHistogram => "gaugehistogram",
        MetricType::Summary => "summary",
        MetricType::Info => "info",
        MetricType::StateSet => "stateset",
        MetricType::Untyped => "unknown",
    }
}

/// Metadata by family name; a family keeps each distinct entry it was given (Prometheus's
/// API answers a list per metric), newest last, at most 4.
#[derive(Default)]
pub struct Metadata {
    families: RwLock<HashMap<String, Vec<Entry>>>,
}

impl Metadata {
    pub fn record(&self, family: &str, entry: Entry) {
        let mut f = self.families.write().unwrap_or_else(|e| e.into_inner());
        if let Some(list) = f.get_mut(family) {
            if list.last() != Some(&entry) {
                list.retain(|e| e != &entry);
                list.push(entry);
                if list.len() > 4 {
                    list.remove(0);
                }
            }
            return;
        }
        if f.len() < MAX_FAMILIES {
            f.insert(family.to_string(), vec![entry]);
        }
    }

    /// Every family (or one), sorted, with up to `limit` families (0: all).
    pub fn list(&self, metric: Option<&str>, limit: usize) -> BTreeMap<String, Vec<Entry>> {
        let f = self.families.read().unwrap_or_else(|e| e.into_inner());
        let mut out: BTreeMap<String, Vec<Entry>> = match metric {
            Some(m) => f.get(m).map(|v| (m.to_string(), v.clone())).into_iter().collect(),
            None => f.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        };
        if limit > 0 {
            while out.len() > limit {
                out.pop_last();
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_distinct_entries_per_family() {
        let m = Metadata::default();
        let e = |kind, help: &str| Entry { kind, help: help.into(), unit: String::new() };
        m.record("up", e("gauge", "Target up."));
        m.record("up", e("gauge", "Target up."));
        m.record("http_requests", e("counter", "Requests."));
        m.record("up", e("gauge", "Other help."));
        let all = m.list(None, 0);
        assert_eq!(all["up"].len(), 2);
        assert_eq!(m.list(None, 1).len(), 1);
        assert_eq!(m.list(Some("http_requests"), 0)["http_requests"][0].kind, "counter");
        assert!(m.list(Some("nope"), 0).is_empty());
    }
}
