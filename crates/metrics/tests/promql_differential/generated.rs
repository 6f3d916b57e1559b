//! Queries composed at random (from a fixed seed, so every run asks the same ones) out of
//! the dataset's metrics, the range and math functions, aggregations, binary operators with
//! and without vector matching, offsets, `@` and subqueries, nested a few levels deep: they
//! reach combinations a hand-written list does not.

use crate::dataset::Rng;

/// A metric of the dataset, its grouping labels and a few selectors' matchers.
struct Metric {
    name: &'static str,
    counter: bool,
    labels: &'static [&'static str],
    matchers: &'static [&'static str],
}

const METRICS: &[Metric] = &[
    Metric {
        name: "http_requests_total",
        counter: true,
        labels: &["job", "instance", "method", "code"],
        matchers: &["", r#"{code="200"}"#, r#"{method=~"G.*"}"#, r#"{instance!="10.0.0.1:8080"}"#],
    },
    Metric {
        name: "node_cpu_seconds_total",
        counter: true,
        labels: &["instance", "cpu", "mode"],
        matchers: &["", r#"{mode="idle"}"#, r#"{cpu!="0"}"#],
    },
    Metric {
        name: "request_duration_seconds_bucket",
        counter: true,
        labels: &["job", "instance", "le"],
        matchers: &["", r#"{job="api"}"#, r#"{le=~"0.*"}"#],
    },
    Metric {
        name: "batch_items_processed_total",
        counter: true,
        labels: &["instance"],
        matchers: &["", r#"{instance="b1"}"#],
    },
    Metric { name: "jittered_events_total", counter: true, labels: &["job"], matchers: &[""] },
    Metric {
        name: "node_temperature_celsius",
        counter: false,
        labels: &["instance", "sensor"],
        matchers: &["", r#"{sensor="outside"}"#],
    },
    Metric {
        name: "queue_depth",
        counter: false,
        labels: &["instance", "queue"],
        matchers: &["", r#"{queue="ingest"}"#],
    },
    Metric { name: "process_resident_memory_bytes", counter: false, labels: &["job", "instance"], matchers: &[""] },
    Metric { name: "up", counter: false, labels: &["job", "instance"], matchers: &["", r#"{job!="node"}"#] },
    Metric { name: "flaky_ratio", counter: false, labels: &["instance"], matchers: &[""] },
    Metric { name: "sparse_gauge", counter: false, labels: &["job"], matchers: &[""] },
];

const WINDOWS: &[&str] = &["30s", "1m", "2m", "5m", "7m30s", "20m"];
const OFFSETS: &[&str] = &[" offset 1m", " offset 5m", " offset -2m", " offset 37m", " @ start()", " @ end()"];
const COUNTER_FUNCTIONS: &[&str] = &["rate", "irate", "increase", "resets"];
const GAUGE_FUNCTIONS: &[&str] = &[
    "delta",
    "idelta",
    "deriv",
    "changes",
    "avg_over_time",
    "min_over_time",
    "max_over_time",
    "sum_over_time",
    "count_over_time",
    "stddev_over_time",
    "stdvar_over_time",
    "last_over_time",
    "present_over_time",
];
// Not `exp`: Go's amd64 math.Exp overflows to +Inf for x in about (709.09, 709.78), where
// the true value is finite, and counters pass through there. Not `%` nor `sin`: the
// remainder or sine of a huge value (after `^`) magnifies a last-bit difference of Go's
// math.Pow (or its argument reduction) into any value. The hand-written queries use all
// three on tame values.
const MATH: &[&str] = &["abs", "ceil", "floor", "ln", "sqrt", "sgn", "round", "-", "timestamp", "log2"];
const AGGREGATIONS: &[&str] = &["sum", "avg", "min", "max", "count", "group", "stddev", "stdvar"];
const ARITHMETIC: &[&str] = &["+", "-", "*", "/", "^", "atan2"];
const COMPARISON: &[&str] = &["==", "!=", ">", "<", ">=", "<="];
const SET: &[&str] = &["and", "or", "unless"];

struct Generator {
    rng: Rng,
}

impl Generator {
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.rng.below(items.len() as u64) as usize]
    }

    fn chance(&mut self, p: f64) -> bool {
        self.rng.unit() < p
    }

    fn selector(&mut self, m: &Metric) -> String {
        let matcher = *self.pick(m.matchers);
        let modifier = if self.chance(0.2) { *self.pick(OFFSETS) } else { "" };
        format!("{}{matcher}{modifier}", m.name)
    }

    /// A range vector over `m`: a selector with a window, or a subquery. Without `allow_at`
    /// a selector gets no `@`: Prometheus 2.42 answers `predict_linear(x[w] @ t, s)` wrongly
    /// in range queries (prometheus#11708), which a hand-written query already shows.
    fn range(&mut self, m: &'static Metric, depth: u32, allow_at: bool) -> String {
        let window = *self.pick(WINDOWS);
        if depth > 0 && self.chance(0.25) {
            let inner = self.vector(m, depth - 1);
            let step = *self.pick(&["", "30s", "1m", "45s"]);
            format!("({inner})[{window}:{step}]")
        } else {
            let matcher = *self.pick(m.matchers);
            let modifier = if self.chance(0.2) { *self.pick(OFFSETS) } else { "" };
            let modifier = if !allow_at && modifier.contains('@') { "" } else { modifier };
            format!("{}{matcher}[{window}]{modifier}", m.name)
        }
    }

    fn grouping(&mut self, m: &Metric) -> String {
        if self.chance(0.3) {
            return String::new();
        }
        let n = 1 + self.rng.below(2) as usize;
        let mut labels: Vec<&str> = (0..n).map(|_| *self.pick(m.labels)).collect();
        labels.dedup();
        format!(" {} ({}) ", if self.chance(0.7) { "by" } else { "without" }, labels.join(", "))
    }

    fn scalar(&mut self, depth: u32) -> String {
        match self.rng.below(4) {
            0 if depth > 0 => {
                let m = self.metric();
                format!("scalar(sum({}))", self.vector(m, depth - 1))
            }
            1 => "time() / 1e9".into(),
            _ => self.pick(&["2", "0.5", "-1", "10", "0", "3.7"]).to_string(),
        }
    }

    fn metric(&mut self) -> &'static Metric {
        &METRICS[self.rng.below(METRICS.len() as u64) as usize]
    }

    /// An instant-vector expression over `m`, nested at most `depth` more levels.
    fn vector(&mut self, m: &'static Metric, depth: u32) -> String {
        if depth == 0 {
            return self.selector(m);
        }
        match self.rng.below(12) {
            0 => self.selector(m),
            1 | 2 => {
                let f = if m.counter && self.chance(0.6) {
                    *self.pick(COUNTER_FUNCTIONS)
                } else {
                    *self.pick(GAUGE_FUNCTIONS)
                };
                format!("{f}({})", self.range(m, depth - 1, true))
            }
            3 => match self.rng.below(3) {
                0 => {
                    let r = self.range(m, depth - 1, true);
                    format!("quantile_over_time({}, {r})", self.pick(&["0.1", "0.5", "0.99"]))
                }
                1 => {
                    let r = self.range(m, depth - 1, false);
                    format!("predict_linear({r}, {})", self.pick(&["60", "600"]))
                }
                _ => format!("holt_winters({}, 0.3, 0.6)", self.range(m, depth - 1, true)),
            },
            4 => {
                let f = *self.pick(MATH);
                let inner = self.vector(m, depth - 1);
                match f {
                    "-" => format!("-({inner})"),
                    "timestamp" => format!("timestamp({})", self.selector(m)),
                    _ => format!("{f}({inner})"),
                }
            }
            5 => {
                let g = self.grouping(m);
                match self.rng.below(5) {
                    // Over a selector or a function of one only: among tied values
                    // Prometheus 2.42 picks by input order, which in a range query is
                    // random for any other input (its rangeEval collects series in a map).
                    0 => {
                        let inner = if self.chance(0.5) {
                            self.selector(m)
                        } else {
                            let f = if m.counter { "rate" } else { "avg_over_time" };
                            format!("{f}({}[{}])", m.name, self.pick(WINDOWS))
                        };
                        format!("{}{g}(2, {inner})", self.pick(&["topk", "bottomk"]))
                    }
                    1 => format!("quantile{g}(0.3, {})", self.vector(m, depth - 1)),
                    _ => format!("{}{g}({})", self.pick(AGGREGATIONS), self.vector(m, depth - 1)),
                }
            }
            6 | 7 => {
                let left = self.vector(m, depth - 1);
                let right = self.vector(m, depth - 1);
                let op = match self.rng.below(3) {
                    0 => self.pick(ARITHMETIC).to_string(),
                    1 => format!("{}{}", self.pick(COMPARISON), if self.chance(0.5) { " bool" } else { "" }),
                    _ => self.pick(SET).to_string(),
                };
                let matching = match self.rng.below(4) {
                    0 => format!(" on({})", self.pick(m.labels)),
                    1 => format!(" ignoring({})", self.pick(m.labels)),
                    _ => String::new(),
                };
                format!("({left}) {op}{matching} ({right})")
            }
            8 => {
                let v = self.vector(m, depth - 1);
                let s = self.scalar(depth - 1);
                let op = if self.chance(0.7) {
                    self.pick(ARITHMETIC).to_string()
                } else {
                    format!("{}{}", self.pick(COMPARISON), if self.chance(0.5) { " bool" } else { "" })
                };
                if self.chance(0.5) { format!("({v}) {op} {s}") } else { format!("{s} {op} ({v})") }
            }
            9 => {
                let label = *self.pick(m.labels);
                let inner = self.vector(m, depth - 1);
                format!(r#"label_replace({inner}, "copy", "x-$1", "{label}", "(.+)")"#)
            }
            10 => {
                let inner = self.vector(m, depth - 1);
                match self.rng.below(6) {
                    0 => format!("clamp({inner}, -1, 10)"),
                    1 => format!("({inner}) * on(instance) group_left(version) instance_info"),
                    2 => format!(r#"count_values{}("v", round({inner}))"#, self.grouping(m)),
                    3 => format!("absent({inner})"),
                    4 => format!("sort_desc({inner})"),
                    _ => {
                        let (a, b) = (*self.pick(m.labels), *self.pick(m.labels));
                        format!(r#"label_join({inner}, "joined", "/", "{a}", "{b}")"#)
                    }
                }
            }
            _ => {
                let inner = self.vector(m, depth - 1);
                let window = *self.pick(WINDOWS);
                let modifier = *self.pick(&["", " offset 5m", " @ end()", " @ start()"]);
                match self.rng.below(3) {
                    0 => format!("{}(({inner})[{window}:1m]{modifier})", self.pick(GAUGE_FUNCTIONS)),
                    1 => format!("vector(scalar({inner}))"),
                    _ => {
                        let q = *self.pick(&["0.5", "0.9", "0.99"]);
                        let by = *self.pick(&["", ", instance", ", job"]);
                        format!(
                            "histogram_quantile({q}, sum by (le{by}) (rate(request_duration_seconds_bucket[{window}]{modifier})))"
                        )
                    }
                }
            }
        }
    }
}

/// `n` queries from `seed`.
pub fn generated_queries(seed: u64, n: usize) -> Vec<String> {
    let mut g = Generator { rng: Rng(seed) };
    (0..n)
        .map(|_| {
            let m = g.metric();
            let depth = 1 + g.rng.below(3) as u32;
            g.vector(m, depth)
        })
        .collect()
}
