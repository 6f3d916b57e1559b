//! The generated dataset both engines load: a seeded, deterministic set of about a hundred
//! series over two hours at a 15 s interval, shaped to exercise PromQL: counters with resets,
//! gauges (sine waves, random walks, negative values, NaN), classic histograms with several
//! label sets, series that stop for more than the 5 m lookback and come back, one-to-many
//! label pairs for `group_left`, irregular and jittered timestamps, and series with
//! staleness markers (sent by remote write, as OpenMetrics cannot carry them).

use signalbox_metrics::storage::{Labels, MemStorage, stale_nan};
use std::fmt::Write as _;

/// The scrape interval of most series, in milliseconds.
pub const STEP_MS: i64 = 15_000;
/// How far back the data reaches from its last sample, in milliseconds.
pub const SPAN_MS: i64 = 2 * 3600 * 1000;

/// What OpenMetrics calls a metric family's type; it decides the `# TYPE` line and the
/// sample-name suffixes promtool expects.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// One metric family: its OpenMetrics name (without `_total` for counters) and its series.
#[derive(Debug, Clone)]
pub struct Family {
    pub name: String,
    pub kind: Kind,
    pub series: Vec<GenSeries>,
}

/// One series: its labels including `__name__` (the full sample name, e.g. `x_total`), and
/// its samples in time order.
#[derive(Debug, Clone)]
pub struct GenSeries {
    pub labels: Labels,
    pub samples: Vec<(i64, f64)>,
}

/// The whole dataset: regular series run from `start_ms` to `end_ms`; jittered samples may
/// fall up to a second either side.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub start_ms: i64,
    pub end_ms: i64,
    /// Series written as OpenMetrics and turned into blocks by promtool.
    pub families: Vec<Family>,
    /// Series with staleness markers, which OpenMetrics cannot express: Prometheus gets them
    /// by remote write. The first is an anchor one minute after `end_ms`, which moves the
    /// head's time forward so the rest are accepted as out-of-order samples.
    pub remote_written: Vec<GenSeries>,
}

/// The time of the remote-write anchor sample, after every block's samples.
pub fn anchor_ms(end_ms: i64) -> i64 {
    end_ms + 60_000
}

/// SplitMix64: a small deterministic generator, so the dataset is the same on every run.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

fn labels(name: &str, pairs: &[(&str, &str)]) -> Labels {
    let mut l: Labels = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    l.push(("__name__".into(), name.into()));
    l.sort();
    l
}

/// Rounds to a few decimals so values print short (and survive any text round trip).
fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// The API instances the request metrics share with `up` and `instance_info`.
const API_INSTANCES: [&str; 2] = ["10.0.0.1:8080", "10.0.0.2:8080"];
const WEB_INSTANCE: &str = "web-1:80";
/// Upper bounds of the request-duration histogram's buckets, as their `le` label values.
const BUCKETS: [&str; 7] = ["0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf"];

impl Dataset {
    /// Generates the dataset whose last regular sample is at `end_ms` (a multiple of a minute
    /// keeps the query times round).
    pub fn generate(seed: u64, end_ms: i64) -> Dataset {
        let mut rng = Rng(seed);
        let start_ms = end_ms - SPAN_MS;
        let times: Vec<i64> = (0..=SPAN_MS / STEP_MS).map(|i| start_ms + i * STEP_MS).collect();
        let mut families = Vec::new();

        // Request counters: per-series rates, random resets (a restart) in some series.
        let mut requests = Vec::new();
        let mut request_sets: Vec<Vec<(&str, &str)>> = Vec::new();
        for inst in API_INSTANCES {
            for method in ["GET", "POST"] {
                for code in ["200", "500"] {
                    request_sets.push(vec![("job", "api"), ("instance", inst), ("method", method), ("code", code)]);
                }
            }
        }
        request_sets.push(vec![("job", "web"), ("instance", WEB_INSTANCE), ("method", "GET"), ("code", "200")]);
        request_sets.push(vec![("job", "web"), ("instance", WEB_INSTANCE), ("method", "GET"), ("code", "404")]);
        for (i, set) in request_sets.iter().enumerate() {
            let rate = if set.contains(&("code", "500")) { 0.2 + rng.unit() } else { 5.0 + 20.0 * rng.unit() };
            let resets = i % 3 == 0;
            let mut v = (rng.below(1000)) as f64;
            let mut samples = Vec::new();
            for &t in &times {
                if resets && rng.below(120) == 0 {
                    v = 0.0;
                }
                v += (rate * 15.0 * (0.5 + rng.unit())).round();
                samples.push((t, v));
            }
            requests.push(GenSeries { labels: labels("http_requests_total", set), samples });
        }
        families.push(Family { name: "http_requests".into(), kind: Kind::Counter, series: requests });

        // CPU counters: one-to-many with instance_info, several label dimensions.
        let mut cpu = Vec::new();
        for inst in API_INSTANCES {
            for c in ["0", "1"] {
                for mode in ["user", "system", "idle"] {
                    let share = match mode {
                        "user" => 0.3,
                        "system" => 0.1,
                        _ => 0.6,
                    };
                    let mut v = 1000.0 * rng.unit();
                    let mut samples = Vec::new();
                    for &t in &times {
                        v = round3(v + 15.0 * share * (0.8 + 0.4 * rng.unit()));
                        samples.push((t, v));
                    }
                    let set = [("job", "api"), ("instance", inst), ("cpu", c), ("mode", mode)];
                    cpu.push(GenSeries { labels: labels("node_cpu_seconds_total", &set), samples });
                }
            }
        }
        families.push(Family { name: "node_cpu_seconds".into(), kind: Kind::Counter, series: cpu });

        // Sine-wave temperatures, two of them below zero most of the time.
        let mut temps = Vec::new();
        for (i, (inst, sensor, offset)) in [
            (API_INSTANCES[0], "cpu", 55.0),
            (API_INSTANCES[1], "cpu", 60.0),
            (API_INSTANCES[0], "outside", -8.0),
            (API_INSTANCES[1], "outside", -3.0),
        ]
        .into_iter()
        .enumerate()
        {
            let amplitude = 2.0 + 3.0 * rng.unit();
            let period = (20 + 10 * i) as f64 * 60_000.0;
            let samples = times
                .iter()
                .map(|&t| {
                    let phase = (t - start_ms) as f64 / period * std::f64::consts::TAU;
                    (t, round3(offset + amplitude * phase.sin()))
                })
                .collect();
            let set = [("job", "node"), ("instance", inst), ("sensor", sensor)];
            temps.push(GenSeries { labels: labels("node_temperature_celsius", &set), samples });
        }
        families.push(Family { name: "node_temperature_celsius".into(), kind: Kind::Gauge, series: temps });

        // Random walks pulled back towards zero, so they cross it often.
        let mut queues = Vec::new();
        for (inst, queue) in [(API_INSTANCES[0], "ingest"), (API_INSTANCES[0], "egress"), (API_INSTANCES[1], "ingest")]
        {
            let mut v = 0.0;
            let samples = times
                .iter()
                .map(|&t| {
                    v = round3(0.95 * v + rng.unit() * 4.0 - 2.0);
                    (t, v)
                })
                .collect();
            let set = [("job", "api"), ("instance", inst), ("queue", queue)];
            queues.push(GenSeries { labels: labels("queue_depth", &set), samples });
        }
        families.push(Family { name: "queue_depth".into(), kind: Kind::Gauge, series: queues });

        // Large gauges (bytes), integer valued.
        let mut memory = Vec::new();
        for inst in [API_INSTANCES[0], API_INSTANCES[1], WEB_INSTANCE] {
            let mut v = 2e9 + 1e9 * rng.unit();
            let samples = times
                .iter()
                .map(|&t| {
                    v = (v + 4e6 * (rng.unit() - 0.45)).round();
                    (t, v)
                })
                .collect();
            let job = if inst == WEB_INSTANCE { "web" } else { "api" };
            memory.push(GenSeries {
                labels: labels("process_resident_memory_bytes", &[("job", job), ("instance", inst)]),
                samples,
            });
        }
        families.push(Family { name: "process_resident_memory_bytes".into(), kind: Kind::Gauge, series: memory });

        // Classic histograms of request durations, one with a counter reset.
        let mut hist = Vec::new();
        let hist_sets: [(&str, &str, &str); 4] = [
            ("api", API_INSTANCES[0], "GET"),
            ("api", API_INSTANCES[1], "GET"),
            ("api", API_INSTANCES[0], "POST"),
            ("web", WEB_INSTANCE, "GET"),
        ];
        for (h, (job, inst, method)) in hist_sets.into_iter().enumerate() {
            let mut counts = [0f64; BUCKETS.len()];
            let mut sum = 0.0;
            let mut series: Vec<Vec<(i64, f64)>> = vec![Vec::new(); BUCKETS.len() + 2];
            // Each histogram has its own latency profile: a typical duration it centres on.
            let typical = [0.08, 0.3, 0.9, 0.2][h];
            for (n, &t) in times.iter().enumerate() {
                if h == 1 && n == 300 {
                    counts = [0.0; BUCKETS.len()];
                    sum = 0.0;
                }
                for _ in 0..(3 + rng.below(12)) {
                    let d = typical * (0.1 + 2.5 * rng.unit() * rng.unit());
                    sum += d;
                    for (b, le) in BUCKETS.iter().enumerate() {
                        let bound = if *le == "+Inf" { f64::INFINITY } else { le.parse::<f64>().unwrap() };
                        if d <= bound {
                            counts[b] += 1.0;
                        }
                    }
                }
                for (b, c) in counts.iter().enumerate() {
                    series[b].push((t, *c));
                }
                series[BUCKETS.len()].push((t, round3(sum)));
                series[BUCKETS.len() + 1].push((t, counts[BUCKETS.len() - 1]));
            }
            let base = [("job", job), ("instance", inst), ("method", method)];
            for (b, le) in BUCKETS.iter().enumerate() {
                let mut set = base.to_vec();
                set.push(("le", le));
                hist.push(GenSeries {
                    labels: labels("request_duration_seconds_bucket", &set),
                    samples: std::mem::take(&mut series[b]),
                });
            }
            hist.push(GenSeries {
                labels: labels("request_duration_seconds_sum", &base),
                samples: std::mem::take(&mut series[BUCKETS.len()]),
            });
            hist.push(GenSeries {
                labels: labels("request_duration_seconds_count", &base),
                samples: std::mem::take(&mut series[BUCKETS.len() + 1]),
            });
        }
        families.push(Family { name: "request_duration_seconds".into(), kind: Kind::Histogram, series: hist });

        // Batch jobs: one pauses from 40 m to 52 m (past the lookback), one stops at 90 m,
        // one starts at 30 m.
        let mut batch = Vec::new();
        for (inst, active) in [("b1", (0, 160, 208, 480)), ("b2", (0, 360, 481, 481)), ("b3", (120, 480, 481, 481))] {
            let mut v = 0.0;
            let samples = times
                .iter()
                .enumerate()
                .filter(|(n, _)| (active.0..=active.1).contains(n) || (active.2..=active.3).contains(n))
                .map(|(_, &t)| {
                    v += rng.below(10) as f64;
                    (t, v)
                })
                .collect();
            batch.push(GenSeries {
                labels: labels("batch_items_processed_total", &[("job", "batch"), ("instance", inst)]),
                samples,
            });
        }
        families.push(Family { name: "batch_items_processed".into(), kind: Kind::Counter, series: batch });

        // up: every instance, with a short outage of one.
        let mut up = Vec::new();
        let up_sets = [
            ("api", API_INSTANCES[0]),
            ("api", API_INSTANCES[1]),
            ("web", WEB_INSTANCE),
            ("node", API_INSTANCES[0]),
            ("node", API_INSTANCES[1]),
            ("batch", "b1"),
        ];
        for (job, inst) in up_sets {
            let samples = times
                .iter()
                .enumerate()
                .map(|(n, &t)| {
                    (t, if inst == API_INSTANCES[1] && job == "api" && (200..220).contains(&n) { 0.0 } else { 1.0 })
                })
                .collect();
            up.push(GenSeries { labels: labels("up", &[("job", job), ("instance", inst)]), samples });
        }
        families.push(Family { name: "up".into(), kind: Kind::Gauge, series: up });

        // Info metric: one per instance, the "one" side of one-to-many matches.
        let mut info = Vec::new();
        for (inst, version, region) in [
            (API_INSTANCES[0], "1.4.2", "eu-west"),
            (API_INSTANCES[1], "1.5.0", "eu-west"),
            (WEB_INSTANCE, "2.0.1", "us-east"),
        ] {
            let samples = times.iter().map(|&t| (t, 1.0)).collect();
            info.push(GenSeries {
                labels: labels("instance_info", &[("instance", inst), ("version", version), ("region", region)]),
                samples,
            });
        }
        families.push(Family { name: "instance_info".into(), kind: Kind::Gauge, series: info });

        // A gauge with NaN now and then, one with an infinite sample.
        let mut odd = Vec::new();
        let mut v = 10.0;
        let samples = times
            .iter()
            .enumerate()
            .map(|(n, &t)| {
                v = round3(v + rng.unit() - 0.5);
                (t, if n % 97 == 50 { f64::NAN } else { v })
            })
            .collect();
        odd.push(GenSeries {
            labels: labels("flaky_ratio", &[("job", "api"), ("instance", API_INSTANCES[0])]),
            samples,
        });
        let samples = times
            .iter()
            .enumerate()
            .map(|(n, &t)| (t, if n == 240 { f64::INFINITY } else { (n % 7) as f64 }))
            .collect();
        odd.push(GenSeries {
            labels: labels("flaky_ratio", &[("job", "api"), ("instance", API_INSTANCES[1])]),
            samples,
        });
        families.push(Family { name: "flaky_ratio".into(), kind: Kind::Gauge, series: odd });

        // Buckets histogram_quantile must make sense of: upper bounds spelt two ways ("1.0"
        // and "1"), in exponent form, one that is no number, and a set without "+Inf".
        let mut odd_buckets = Vec::new();
        for (inst, bounds) in [("a", &["0.5", "1.0", "1", "5e0", "abc"][..]), ("b", &["0.5", "1", "2.5", "+Inf"][..])] {
            let mut counts = vec![0f64; bounds.len()];
            let mut series: Vec<Vec<(i64, f64)>> = vec![Vec::new(); bounds.len()];
            for &t in &times {
                let step: Vec<f64> = (0..bounds.len()).map(|_| rng.below(3) as f64).collect();
                // Cumulative over the (sorted) bounds, whatever their spelling.
                let mut running = 0.0;
                for (b, inc) in step.iter().enumerate() {
                    running += inc;
                    counts[b] += running;
                    series[b].push((t, counts[b]));
                }
            }
            for (b, le) in bounds.iter().enumerate() {
                odd_buckets.push(GenSeries {
                    labels: labels("odd_latency_seconds_bucket", &[("job", "odd"), ("instance", inst), ("le", le)]),
                    samples: std::mem::take(&mut series[b]),
                });
            }
        }
        families.push(Family { name: "odd_latency_seconds_bucket".into(), kind: Kind::Gauge, series: odd_buckets });

        // Irregular intervals: samples every 15 s to 3 m, with a gap of 7 m in the middle.
        let mut sparse = Vec::new();
        let mut samples = Vec::new();
        let mut t = start_ms;
        while t <= end_ms {
            if !(start_ms + 55 * 60_000..start_ms + 62 * 60_000).contains(&t) {
                samples.push((t, round3(100.0 * rng.unit())));
            }
            t += STEP_MS * (1 + rng.below(12) as i64);
        }
        sparse.push(GenSeries { labels: labels("sparse_gauge", &[("job", "sparse")]), samples });
        families.push(Family { name: "sparse_gauge".into(), kind: Kind::Gauge, series: sparse });

        // A counter scraped with millisecond jitter, as real scrapes are.
        let mut jittered = Vec::new();
        let mut v = 0.0;
        let samples = times
            .iter()
            .map(|&t| {
                v += rng.below(50) as f64;
                (t - 1000 + rng.below(2000) as i64, v)
            })
            .collect();
        jittered.push(GenSeries { labels: labels("jittered_events_total", &[("job", "jitter")]), samples });
        families.push(Family { name: "jittered_events".into(), kind: Kind::Counter, series: jittered });

        // Series that go stale (a staleness marker where a scrape found them missing) and
        // come back within the lookback, a gauge and a counter; and one that ends stale.
        let mut remote_written = vec![GenSeries {
            labels: labels("dataset_anchor", &[("job", "anchor")]),
            samples: vec![(anchor_ms(end_ms), 1.0)],
        }];
        for (name, inst, counter) in
            [("flapping_gauge", "f1", false), ("flapping_requests_total", "f1", true), ("flapping_gauge", "f2", false)]
        {
            let mut v = 0.0;
            let mut samples = Vec::new();
            let mut n = 0;
            while n < times.len() {
                if inst == "f2" && n == 400 {
                    samples.push((times[n], stale_nan()));
                    break;
                }
                if n % 37 == 20 {
                    // Stale at this scrape, back after 15 s to 2 m.
                    samples.push((times[n], stale_nan()));
                    n += 2 + rng.below(8) as usize;
                    continue;
                }
                v = if counter { v + rng.below(20) as f64 } else { round3(50.0 + 20.0 * rng.unit()) };
                samples.push((times[n], v));
                n += 1;
            }
            remote_written.push(GenSeries { labels: labels(name, &[("job", "flap"), ("instance", inst)]), samples });
        }

        Dataset { start_ms, end_ms, families, remote_written }
    }

    /// Every series, from blocks and from remote write.
    pub fn series(&self) -> impl Iterator<Item = &GenSeries> {
        self.families.iter().flat_map(|f| f.series.iter()).chain(self.remote_written.iter())
    }

    /// The samples in Signalbox's in-memory storage.
    pub fn to_storage(&self) -> MemStorage {
        let mut storage = MemStorage::default();
        for s in self.series() {
            for &(t, v) in &s.samples {
                storage.add(s.labels.clone(), t, v);
            }
        }
        storage
    }

    /// The samples as an OpenMetrics exposition with timestamps, the input of
    /// `promtool tsdb create-blocks-from openmetrics` (which wants `# TYPE` lines and the
    /// closing `# EOF`).
    pub fn to_openmetrics(&self) -> String {
        let mut out = String::new();
        for family in &self.families {
            let kind = match family.kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
                Kind::Histogram => "histogram",
            };
            let _ = writeln!(out, "# TYPE {} {kind}", family.name);
            for s in &family.series {
                let name = &s.labels.iter().find(|(k, _)| k == "__name__").expect("every series has a name").1;
                let rest: Vec<String> = s
                    .labels
                    .iter()
                    .filter(|(k, _)| k != "__name__")
                    .map(|(k, v)| format!("{k}=\"{}\"", escape_label_value(v)))
                    .collect();
                for &(t, v) in &s.samples {
                    let _ =
                        writeln!(out, "{name}{{{}}} {} {}.{:03}", rest.join(","), format_value(v), t / 1000, t % 1000);
                }
            }
        }
        out.push_str("# EOF\n");
        out
    }
}

/// A float as OpenMetrics writes it; Rust's shortest round-trip form parses back exactly.
fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

fn escape_label_value(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
