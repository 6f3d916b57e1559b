//! The node's own metrics, exposed on `/metrics` in the Prometheus text format (0.0.4).
//!
//! Series are registered once (at start-up or config reload) and the returned handles are kept
//! by the code that updates them, so the hot path is one atomic add: no label hashing, no
//! locking. Families and series are kept sorted so the output is stable.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Latency buckets in seconds, from 0.5 ms to 30 s.
pub const LATENCY_BUCKETS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// A monotonically increasing count.
#[derive(Clone, Default, Debug)]
pub struct Counter(Arc<AtomicU64>);

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Clone, Default, Debug)]
pub struct Gauge(Arc<AtomicI64>);

impl Gauge {
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Debug)]
struct HistogramInner {
    bounds: &'static [f64],
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    sum_bits: AtomicU64,
}

/// A cumulative histogram with fixed bucket bounds.
#[derive(Clone, Debug)]
pub struct Histogram(Arc<HistogramInner>);

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        Histogram(Arc::new(HistogramInner {
            bounds,
            buckets: (0..bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_bits: AtomicU64::new(0f64.to_bits()),
        }))
    }

    pub fn observe(&self, v: f64) {
        let h = &self.0;
        if let Some(i) = h.bounds.iter().position(|b| v <= *b) {
            h.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        h.count.fetch_add(1, Ordering::Relaxed);
        let mut cur = h.sum_bits.load(Ordering::Relaxed);
        loop {
            let next = (f64::from_bits(cur) + v).to_bits();
            match h.sum_bits.compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => break,
                Err(actual) => cur = actual,
            }
        }
    }

    pub fn count(&self) -> u64 {
        self.0.count.load(Ordering::Relaxed)
    }

    pub fn sum(&self) -> f64 {
        f64::from_bits(self.0.sum_bits.load(Ordering::Relaxed))
    }
}

type GaugeFn = Arc<dyn Fn() -> f64 + Send + Sync>;

#[derive(Clone)]
enum Series {
    Counter(Counter),
    Gauge(Gauge),
    GaugeFn(GaugeFn),
    CounterFn(GaugeFn),
    Histogram(Histogram),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

struct Family {
    help: &'static str,
    kind: Kind,
    series: BTreeMap<String, Series>,
}

/// A set of metric families. Cloning shares the set.
#[derive(Clone, Default)]
pub struct Registry {
    families: Arc<Mutex<BTreeMap<&'static str, Family>>>,
    collectors: Arc<Mutex<Vec<Collector>>>,
}

type Collector = Box<dyn Fn(&mut String) + Send + Sync>;

/// Label pairs of one series.
pub type Labels<'a> = &'a [(&'a str, &'a str)];

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// The counter `name{labels}`, created on first use and shared afterwards.
    pub fn counter(&self, name: &'static str, help: &'static str, labels: Labels) -> Counter {
        match self.series(name, help, Kind::Counter, labels, || Series::Counter(Counter::default())) {
            Series::Counter(c) => c,
            _ => unreachable_kind(name),
        }
    }

    /// The gauge `name{labels}`.
    pub fn gauge(&self, name: &'static str, help: &'static str, labels: Labels) -> Gauge {
        match self.series(name, help, Kind::Gauge, labels, || Series::Gauge(Gauge::default())) {
            Series::Gauge(g) => g,
            _ => unreachable_kind(name),
        }
    }

    /// A gauge whose value is computed at scrape time.
    pub fn gauge_fn(
        &self,
        name: &'static str,
        help: &'static str,
        labels: Labels,
        f: impl Fn() -> f64 + Send + Sync + 'static,
    ) {
        let f: GaugeFn = Arc::new(f);
        self.replace(name, help, Kind::Gauge, labels, Series::GaugeFn(f));
    }

    /// A counter whose value is computed at scrape time (for counts kept elsewhere).
    pub fn counter_fn(
        &self,
        name: &'static str,
        help: &'static str,
        labels: Labels,
        f: impl Fn() -> f64 + Send + Sync + 'static,
    ) {
        let f: GaugeFn = Arc::new(f);
        self.replace(name, help, Kind::Counter, labels, Series::CounterFn(f));
    }

    /// The histogram `name{labels}` with `bounds` (upper bounds, ascending, without +Inf).
    pub fn histogram(
        &self,
        name: &'static str,
        help: &'static str,
        labels: Labels,
        bounds: &'static [f64],
    ) -> Histogram {
        match self.series(name, help, Kind::Histogram, labels, || Series::Histogram(Histogram::new(bounds))) {
            Series::Histogram(h) => h,
            _ => unreachable_kind(name),
        }
    }

    fn series(
        &self,
        name: &'static str,
        help: &'static str,
        kind: Kind,
        labels: Labels,
        make: impl FnOnce() -> Series,
    ) -> Series {
        let key = label_text(labels);
        let mut families = lock(&self.families);
        let fam = families.entry(name).or_insert_with(|| Family { help, kind, series: BTreeMap::new() });
        if fam.kind != kind {
            unreachable_kind(name);
        }
        fam.series.entry(key).or_insert_with(make).clone()
    }

    fn replace(&self, name: &'static str, help: &'static str, kind: Kind, labels: Labels, s: Series) {
        let mut families = lock(&self.families);
        let fam = families.entry(name).or_insert_with(|| Family { help, kind, series: BTreeMap::new() });
        fam.series.insert(label_text(labels), s);
    }

    /// Adds a function that appends whole families at scrape time, for series whose label
    /// sets change at run time (circuit states of the current config, say). It must write
    /// complete `# HELP`/`# TYPE` blocks with names no other family uses.
    pub fn add_collector(&self, f: impl Fn(&mut String) + Send + Sync + 'static) {
        lock(&self.collectors).push(Box::new(f));
    }

    /// The Prometheus text exposition of every family.
    pub fn render(&self) -> String {
        let mut out = self.render_families();
        for c in lock(&self.collectors).iter() {
            c(&mut out);
        }
        out
    }

    fn render_families(&self) -> String {
        let families = lock(&self.families);
        let mut out = String::with_capacity(4096);
        for (name, fam) in families.iter() {
            let kind = match fam.kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
                Kind::Histogram => "histogram",
            };
            let _ = writeln!(out, "# HELP {name} {}", fam.help);
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (labels, s) in &fam.series {
                match s {
                    Series::Counter(c) => write_sample(&mut out, name, "", labels, c.get() as f64),
                    Series::Gauge(g) => write_sample(&mut out, name, "", labels, g.get() as f64),
                    Series::GaugeFn(f) | Series::CounterFn(f) => write_sample(&mut out, name, "", labels, f()),
                    Series::Histogram(h) => render_histogram(&mut out, name, labels, h),
                }
            }
        }
        out
    }

    /// The current value of a counter or gauge series, for tests and admin views.
    pub fn value(&self, name: &str, labels: Labels) -> Option<f64> {
        let families = lock(&self.families);
        let s = families.get(name)?.series.get(&label_text(labels))?;
        Some(match s {
            Series::Counter(c) => c.get() as f64,
            Series::Gauge(g) => g.get() as f64,
            Series::GaugeFn(f) | Series::CounterFn(f) => f(),
            Series::Histogram(h) => h.count() as f64,
        })
    }

    /// Registers process metrics (CPU seconds, resident memory, start time, open fds).
    pub fn register_process_metrics(&self) {
        let start = crate::time::unix_nanos() as f64 / 1e9;
        self.gauge_fn(
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch.",
            &[],
            move || start,
        );
        self.counter_fn("process_cpu_seconds_total", "User and system CPU time spent, in seconds.", &[], || {
            proc_stat().map(|s| s.cpu_seconds).unwrap_or(0.0)
        });
        self.gauge_fn("process_resident_memory_bytes", "Resident memory size in bytes.", &[], || {
            proc_stat().map(|s| s.rss_bytes).unwrap_or(0.0)
        });
        self.gauge_fn("process_open_fds", "Number of open file descriptors.", &[], || {
            std::fs::read_dir("/proc/self/fd").map(|d| d.count() as f64).unwrap_or(0.0)
        });
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding this lock leaves plain data behind; keep serving it.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn unreachable_kind(name: &str) -> ! {
    // Metric names are compile-time constants; reusing one with another kind is a code bug.
    panic!("metric {name} registered twice with different kinds")
}

fn label_text(labels: Labels) -> String {
    let mut s = String::new();
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(k);
        s.push_str("=\"");
        for c in v.chars() {
            match c {
                '\\' => s.push_str("\\\\"),
                '"' => s.push_str("\\\""),
                '\n' => s.push_str("\\n"),
                c => s.push(c),
            }
        }
        s.push('"');
    }
    s
}

fn write_sample(out: &mut String, name: &str, suffix: &str, labels: &str, v: f64) {
    out.push_str(name);
    out.push_str(suffix);
    if !labels.is_empty() {
        out.push('{');
        out.push_str(labels);
        out.push('}');
    }
    out.push(' ');
    write_float(out, v);
    out.push('\n');
}

fn write_float(out: &mut String, v: f64) {
    if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else if v.is_nan() {
        out.push_str("NaN");
    } else {
        let _ = write!(out, "{v}");
    }
}

fn render_histogram(out: &mut String, name: &str, labels: &str, h: &Histogram) {
    let sep = if labels.is_empty() { "" } else { "," };
    let mut cumulative = 0u64;
    for (bound, bucket) in h.0.bounds.iter().zip(h.0.buckets.iter()) {
        cumulative += bucket.load(Ordering::Relaxed);
        let mut le = String::new();
        write_float(&mut le, *bound);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {cumulative}");
    }
    let count = h.count();
    let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
    write_sample(out, name, "_sum", labels, h.sum());
    write_sample(out, name, "_count", labels, count as f64);
}

struct ProcStat {
    cpu_seconds: f64,
    rss_bytes: f64,
}

fn proc_stat() -> Option<ProcStat> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = 100.0; // USER_HZ is 100 on every Linux platform Signalbox targets.
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    let rss_pages: f64 = f.get(21)?.parse().ok()?;
    Some(ProcStat { cpu_seconds: (utime + stime) / ticks, rss_bytes: rss_pages * 4096.0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms() {
        let r = Registry::new();
        let c = r.counter("x_total", "Things.", &[("a", "1"), ("b", "q\"t")]);
        c.add(3);
        assert_eq!(r.counter("x_total", "Things.", &[("a", "1"), ("b", "q\"t")]).get(), 3);
        let h = r.histogram("lat_seconds", "Latency.", &[], &[0.1, 1.0]);
        h.observe(0.05);
        h.observe(0.5);
        h.observe(5.0);
        let text = r.render();
        assert!(text.contains("# TYPE x_total counter\nx_total{a=\"1\",b=\"q\\\"t\"} 3\n"), "{text}");
        assert!(text.contains("lat_seconds_bucket{le=\"0.1\"} 1\n"), "{text}");
        assert!(text.contains("lat_seconds_bucket{le=\"1\"} 2\n"), "{text}");
        assert!(text.contains("lat_seconds_bucket{le=\"+Inf\"} 3\n"), "{text}");
        assert!(text.contains("lat_seconds_sum 5.55\n"), "{text}");
        assert!(text.contains("lat_seconds_count 3\n"), "{text}");
    }

    #[test]
    fn process_metrics_read_proc() {
        let r = Registry::new();
        r.register_process_metrics();
        assert!(r.value("process_resident_memory_bytes", &[]).unwrap() > 0.0);
    }
}
