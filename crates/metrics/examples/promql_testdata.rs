//! Runs Prometheus's PromQL conformance scripts (`promql/testdata/*.test` in the Prometheus
//! repository, v2.42 being the reference) against Signalbox's engine: every `eval instant`
//! is checked, and its vector result again in range mode (the middle of three steps).
//!
//! `cargo run -p signalbox-metrics --example promql_testdata -- <dir with *.test files>`
//! prints each mismatch and exits with status 1 if there is any. Native-histogram cases
//! (`{{...}}`) are not in 2.42's files; other formats than `load` and `eval[_fail|_ordered]
//! instant` are reported as unsupported lines.

use signalbox_metrics::promql::{Engine, Value, parse_duration};
use signalbox_metrics::storage::{Labels, MemStorage, stale_nan};

fn show(labels: &Labels) -> String {
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", inner.join(", "))
}

fn parse_num(s: &str) -> Option<f64> {
    let l = s.to_ascii_lowercase();
    match l.as_str() {
        "inf" | "+inf" => Some(f64::INFINITY),
        "-inf" => Some(f64::NEG_INFINITY),
        "nan" => Some(f64::NAN),
        "stale" => Some(stale_nan()),
        _ => {
            if let Some(h) = l.strip_prefix("0x") {
                return i64::from_str_radix(h, 16).ok().map(|v| v as f64);
            }
            s.parse().ok()
        }
    }
}

/// Splits `name{a="b", c="d"} rest` into labels and rest.
fn split_series(line: &str) -> (Labels, String) {
    let line = line.trim();
    let (head, rest) = if let Some(open) = line.find('{') {
        let mut i = open + 1;
        let bytes = line.as_bytes();
        let mut in_q = false;
        while i < bytes.len() {
            match bytes[i] {
                b'\\' if in_q => i += 1,
                b'"' => in_q = !in_q,
                b'}' if !in_q => break,
                _ => {}
            }
            i += 1;
        }
        (&line[..=i], line[i + 1..].to_string())
    } else {
        match line.split_once(char::is_whitespace) {
            Some((a, b)) => (a, b.to_string()),
            None => (line, String::new()),
        }
    };
    let mut labels: Labels = Vec::new();
    let (name, inner) = match head.find('{') {
        Some(o) => (&head[..o], &head[o + 1..head.len() - 1]),
        None => (head, ""),
    };
    if !name.is_empty() {
        labels.push(("__name__".into(), name.into()));
    }
    // parse k="v" pairs
    let mut rest_inner = inner.trim();
    while !rest_inner.is_empty() {
        let Some(eq) = rest_inner.find('=') else { break };
        let k = rest_inner[..eq].trim().trim_start_matches(',').trim().to_string();
        let after = rest_inner[eq + 1..].trim_start();
        if !after.starts_with('"') {
            break;
        }
        let mut v = String::new();
        let mut chars = after[1..].char_indices();
        let mut end = 0;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    let Some((_, n)) = chars.next() else { break };
                    v.push(match n {
                        'n' => '\n',
                        't' => '\t',
                        o => o,
                    });
                }
                '"' => {
                    end = i + 2;
                    break;
                }
                c => v.push(c),
            }
        }
        labels.push((k, v));
        rest_inner = after[end..].trim().trim_start_matches(',').trim();
    }
    labels.sort();
    (labels, rest)
}

fn expand_values(s: &str) -> Vec<Option<f64>> {
    let mut out = Vec::new();
    for tok in s.split_whitespace() {
        if tok == "_" {
            out.push(None);
            continue;
        }
        if let Some(n) = tok.strip_prefix("_x") {
            for _ in 0..n.parse::<usize>().unwrap_or(0) {
                out.push(None);
            }
            continue;
        }
        if let Some((base, n)) = tok.rsplit_once('x')
            && let Ok(n) = n.parse::<i64>()
            && !base.is_empty()
        {
            // a+bxn, a-bxn or axn
            let split = base[1..].find(['+', '-']).map(|i| i + 1);
            let (a, b) = match split {
                Some(i) if !base[..i].to_ascii_lowercase().ends_with('e') => {
                    (parse_num(&base[..i]).unwrap_or(f64::NAN), parse_num(&base[i..]).unwrap_or(f64::NAN))
                }
                _ => (parse_num(base).unwrap_or(f64::NAN), 0.0),
            };
            let mut v = a;
            out.push(Some(v));
            for _ in 0..n {
                v += b;
                out.push(Some(v));
            }
            continue;
        }
        out.push(Some(parse_num(tok).unwrap_or(f64::NAN)));
    }
    out
}

fn almost(a: f64, b: f64) -> bool {
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || diff < f64::MIN_POSITIVE {
        return diff < 1e-6 * f64::MIN_POSITIVE;
    }
    diff / (a.abs() + b.abs()) < 1e-6
}

fn main() -> std::process::ExitCode {
    let Some(dir) = std::env::args().nth(1) else {
        eprintln!("usage: promql_testdata <directory of Prometheus *.test files>");
        return std::process::ExitCode::FAILURE;
    };
    let mut failures = Vec::new();
    let mut total = 0;
    let mut files: Vec<_> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "test"))
            .collect(),
        Err(e) => {
            eprintln!("reading {dir}: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    files.sort();
    for file in files {
        let Ok(text) = std::fs::read_to_string(&file) else {
            failures.push(format!("cannot read {}", file.display()));
            continue;
        };
        let lines: Vec<&str> = text.lines().collect();
        let mut db = MemStorage::default();
        let mut i = 0;
        while i < lines.len() {
            let line = lines[i].trim();
            i += 1;
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if line == "clear" {
                db = MemStorage::default();
                continue;
            }
            if let Some(step) = line.strip_prefix("load ") {
                let step = parse_duration(step.trim()).unwrap_or(0);
                while i < lines.len() && !lines[i].trim().is_empty() && lines[i].starts_with(char::is_whitespace) {
                    let (labels, rest) = split_series(lines[i]);
                    for (k, v) in expand_values(&rest).into_iter().enumerate() {
                        if let Some(v) = v {
                            db.add(labels.clone(), k as i64 * step, v);
                        }
                    }
                    i += 1;
                }
                continue;
            }
            let parsed = line.split_once(' ').and_then(|(kind, rest)| {
                let (at, query) = rest.strip_prefix("instant at ")?.split_once(' ')?;
                Some((kind, at, query, parse_duration(at).ok()?))
            });
            let Some((kind, at, query, t)) = parsed else {
                failures.push(format!("{}: unsupported line {line:?}", file.display()));
                continue;
            };
            let mut expected: Vec<(Labels, f64)> = Vec::new();
            let mut expected_scalar = None;
            while i < lines.len() && !lines[i].trim().is_empty() && lines[i].starts_with(char::is_whitespace) {
                let l = lines[i].trim();
                if let Some(v) = parse_num(l).filter(|_| !l.contains('{')) {
                    expected_scalar = Some(v);
                } else {
                    let (labels, rest) = split_series(l);
                    expected.push((labels, parse_num(rest.trim()).unwrap_or(f64::NAN)));
                }
                i += 1;
            }
            total += 1;
            let ctx = format!("{}: {query} at {at}", file.display());
            let result = Engine::default().instant(&db, query, t);
            if kind == "eval_fail" {
                if result.is_ok() {
                    failures.push(format!("{ctx}: expected failure, got {result:?}"));
                }
                continue;
            }
            let result = match result {
                Ok(r) => r,
                Err(e) => {
                    failures.push(format!("{ctx}: error {e}"));
                    continue;
                }
            };
            match &result {
                Value::Scalar { v, .. } => {
                    if !expected_scalar.is_some_and(|e| almost(e, *v)) {
                        failures.push(format!("{ctx}: scalar {v}, expected {expected_scalar:?}"));
                    }
                }
                Value::Vector(got) => {
                    let mut ok = got.len() == expected.len();
                    if ok {
                        if kind == "eval_ordered" {
                            for (g, (el, ev)) in got.iter().zip(&expected) {
                                if &g.labels != el || !almost(g.v, *ev) {
                                    ok = false;
                                }
                            }
                        } else {
                            for (el, ev) in &expected {
                                if !got.iter().any(|g| &g.labels == el && almost(g.v, *ev)) {
                                    ok = false;
                                }
                            }
                        }
                    }
                    if !ok {
                        let g: Vec<String> = got.iter().map(|s| format!("{} {}", show(&s.labels), s.v)).collect();
                        let e: Vec<String> = expected.iter().map(|(l, v)| format!("{} {v}", show(l))).collect();
                        failures.push(format!("{ctx}:\n   got {g:?}\n   exp {e:?}"));
                        continue;
                    }
                    // Range mode: the middle step equals the instant result.
                    match Engine::default().range(&db, query, t - 60_000, t + 60_000, 60_000) {
                        Ok(Value::Matrix(m)) => {
                            let mut mid: Vec<(Labels, f64)> = m
                                .iter()
                                .filter_map(|s| s.samples.iter().find(|p| p.0 == t).map(|p| (s.labels.clone(), p.1)))
                                .collect();
                            mid.sort_by(|a, b| a.0.cmp(&b.0));
                            let mut inst: Vec<(Labels, f64)> = got.iter().map(|s| (s.labels.clone(), s.v)).collect();
                            inst.sort_by(|a, b| a.0.cmp(&b.0));
                            let same = mid.len() == inst.len()
                                && mid.iter().zip(&inst).all(|(a, b)| a.0 == b.0 && almost(a.1, b.1));
                            if !same {
                                failures.push(format!("{ctx}: range mode differs: {mid:?} vs {inst:?}"));
                            }
                        }
                        other => failures.push(format!("{ctx}: range mode: {other:?}")),
                    }
                }
                Value::String { v, .. } => {
                    if !expected.is_empty() {
                        failures.push(format!("{ctx}: string {v}"));
                    }
                }
                Value::Matrix(m) => {
                    if !expected.is_empty() {
                        failures.push(format!("{ctx}: matrix {m:?}"));
                    }
                }
            }
        }
    }
    for f in &failures {
        println!("FAIL {f}");
    }
    println!("{} of {total} evaluations failed", failures.len());
    if failures.is_empty() { std::process::ExitCode::SUCCESS } else { std::process::ExitCode::FAILURE }
}
