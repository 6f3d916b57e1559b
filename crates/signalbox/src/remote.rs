//! Commands that talk to a running node over its API: `signalbox config ...` and
//! `signalbox services`.

use crate::cli::{ConfigAction, LogsAction, NodeOpts, TracesAction};
use serde_json::Value;
use signalbox_client::Client;
use std::io::Read;
use std::process::ExitCode;

fn client(n: &NodeOpts) -> Client {
    Client::new(&n.url, n.token.clone())
}

pub fn config(node: NodeOpts, action: ConfigAction) -> ExitCode {
    crate::block_on(async move {
        let c = client(&node);
        match action {
            ConfigAction::Get { app, profile, key, version } => {
                let v = match version {
                    None => c.config_get(&app, &profile, &key).await?,
                    Some(n) => {
                        c.request(http::Method::GET, &format!("/api/config/{app}/{profile}/{key}?version={n}"), None)
                            .await?
                    }
                };
                print!("{}", v["value"].as_str().unwrap_or(""));
                if !v["value"].as_str().unwrap_or("").ends_with('\n') {
                    println!();
                }
                eprintln!(
                    "# version {} by {} at {}",
                    v["version"],
                    v["author"].as_str().unwrap_or(""),
                    signalbox_core::time::rfc3339_millis(v["time_unix_ms"].as_u64().unwrap_or(0) * 1_000_000)
                );
            }
            ConfigAction::Set { app, profile, key, value, message, expect } => {
                let value = if value == "-" {
                    let mut s = String::new();
                    std::io::stdin().read_to_string(&mut s)?;
                    s
                } else {
                    value
                };
                let v = c.config_put(&app, &profile, &key, &value, &message, expect).await?;
                println!("{app}/{profile}/{key}: version {}", v["version"]);
            }
            ConfigAction::History { app, profile, key } => {
                let v = c.config_history(&app, &profile, &key).await?;
                for e in v["versions"].as_array().into_iter().flatten() {
                    let when =
                        signalbox_core::time::rfc3339_millis(e["time_unix_ms"].as_u64().unwrap_or(0) * 1_000_000);
                    let what = if e["deleted"] == true {
                        "deleted".to_owned()
                    } else {
                        format!("{} bytes", e["value"].as_str().map(str::len).unwrap_or(0))
                    };
                    println!(
                        "v{:<4} {when}  {:<16} {what:<12} {}",
                        e["version"],
                        e["author"].as_str().unwrap_or(""),
                        e["comment"].as_str().unwrap_or("")
                    );
                }
            }
            ConfigAction::Diff { app, profile, key, from, to } => {
                let v = c.config_diff(&app, &profile, &key, from, to).await?;
                print!("{}", v["unified"].as_str().unwrap_or(""));
            }
            ConfigAction::Rollback { app, profile, key, to, message } => {
                let v = c.config_rollback(&app, &profile, &key, to, &message).await?;
                println!("{app}/{profile}/{key}: version {} (= version {to})", v["version"]);
            }
            ConfigAction::Watch { app, profile } => {
                let mut rx = c.config_watch(app, profile);
                while let Some(ch) = rx.recv().await {
                    println!("{}", serde_json::to_string(&ch)?);
                }
            }
        }
        Ok(())
    })
}

/// `signalbox switch SERVICE --to V` (`to`) or `--back` (`None`).
pub fn switch(node: NodeOpts, service: String, to: Option<String>) -> ExitCode {
    crate::block_on(async move {
        let c = client(&node);
        let v = match &to {
            Some(to) => {
                let body = serde_json::json!({ "to": to });
                c.request(http::Method::POST, &format!("/api/v1/traffic/{service}/switch"), Some(body)).await?
            }
            None => c.request(http::Method::POST, &format!("/api/v1/traffic/{service}/back"), None).await?,
        };
        match to {
            Some(to) => println!("{service}: every request to {to} (policy version {})", v["policy_version"]),
            None => match v["policy"].as_str() {
                Some(p) => println!("{service}: back to {p} (policy version {})", v["policy_version"]),
                None => println!("{service}: back to no policy (every instance balanced)"),
            },
        }
        Ok(())
    })
}

pub fn services(node: NodeOpts, name: Option<String>) -> ExitCode {
    crate::block_on(async move {
        let c = client(&node);
        match name {
            None => {
                let v = c.services().await?;
                let rows = v
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|s| {
                        let n = |k: &str| s[k].as_u64().unwrap_or(0).to_string();
                        vec![
                            s["name"].as_str().unwrap_or("").to_owned(),
                            n("instances"),
                            n("passing"),
                            n("warning"),
                            n("critical"),
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    table(
                        &["SERVICE", "INSTANCES", "PASSING", "WARNING", "CRITICAL"],
                        rows,
                        &[false, true, true, true, true]
                    )
                );
            }
            Some(n) => {
                let v = c.instances(&n, false).await?;
                let rows = v
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|i| {
                        let checks: Vec<String> = i["checks"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .map(|c| {
                                format!("{}={}", c["name"].as_str().unwrap_or(""), c["status"].as_str().unwrap_or(""))
                            })
                            .collect();
                        let gw = match &i["gateway"] {
                            g if g["ejected"] == true => " [ejected by the gateway]",
                            _ => "",
                        };
                        vec![
                            i["id"].as_str().unwrap_or("").to_owned(),
                            format!("{}:{}", i["address"].as_str().unwrap_or(""), i["port"]),
                            i["status"].as_str().unwrap_or("").to_owned(),
                            format!("{}{gw}", checks.join(", ")),
                        ]
                    })
                    .collect();
                print!("{}", table(&["INSTANCE", "ADDRESS", "STATUS", "CHECKS"], rows, &[false; 4]));
            }
        }
        Ok(())
    })
}

/// Rows under headers, each column as wide as its widest cell (`right`: right-aligned, for
/// numbers), two spaces apart; the last column is not padded.
fn table(headers: &[&str], rows: Vec<Vec<String>>, right: &[bool]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let mut out = String::new();
        for (i, cell) in cells.into_iter().enumerate() {
            let pad = widths[i].saturating_sub(cell.chars().count());
            if i > 0 {
                out.push_str("  ");
            }
            if right.get(i).copied().unwrap_or(false) {
                out.extend(std::iter::repeat_n(' ', pad));
                out.push_str(cell);
            } else {
                out.push_str(cell);
                if i < last {
                    out.extend(std::iter::repeat_n(' ', pad));
                }
            }
        }
        out.push('\n');
        out
    };
    let mut out = line(headers.to_vec());
    for r in &rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

fn ms(nanos: u64) -> String {
    let ms = nanos as f64 / 1e6;
    if ms >= 1000.0 { format!("{:.2}s", ms / 1000.0) } else { format!("{ms:.2}ms") }
}

fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Unix nanoseconds as the native APIs send them: a string (or, from older nodes, a number).
fn nanos(v: &Value) -> Option<u64> {
    v.as_str().and_then(|t| t.parse().ok()).or_else(|| v.as_u64())
}

pub fn traces(node: NodeOpts, action: TracesAction) -> ExitCode {
    crate::block_on(async move {
        let c = client(&node);
        match action {
            TracesAction::Get { id } => {
                let v = c.request(http::Method::GET, &format!("/api/traces/{id}"), None).await?;
                let spans = v["spans"].as_array().cloned().unwrap_or_default();
                let ids: std::collections::HashSet<&str> = spans.iter().filter_map(|s| s["span_id"].as_str()).collect();
                let start = spans.iter().filter_map(|s| nanos(&s["start_unix_nanos"])).min().unwrap_or(0);
                let mut children: std::collections::HashMap<&str, Vec<&Value>> = std::collections::HashMap::new();
                let mut roots = Vec::new();
                for s in &spans {
                    match s["parent_span_id"].as_str().filter(|p| ids.contains(p)) {
                        Some(p) => children.entry(p).or_default().push(s),
                        None => roots.push(s),
                    }
                }
                fn print(s: &Value, depth: usize, start: u64, children: &std::collections::HashMap<&str, Vec<&Value>>) {
                    let offset = nanos(&s["start_unix_nanos"]).unwrap_or(0).saturating_sub(start);
                    let err = if s["status"] == "error" { "  ERROR" } else { "" };
                    println!(
                        "{}{} {}  {} (+{}){err}",
                        "  ".repeat(depth),
                        s["service"].as_str().unwrap_or(""),
                        s["name"].as_str().unwrap_or(""),
                        ms(s["duration_nanos"].as_u64().unwrap_or(0)),
                        ms(offset)
                    );
                    let mut kids = children.get(s["span_id"].as_str().unwrap_or("")).cloned().unwrap_or_default();
                    kids.sort_by_key(|k| nanos(&k["start_unix_nanos"]));
                    for k in kids {
                        print(k, depth + 1, start, children);
                    }
                }
                println!("trace {}  {} spans", v["trace_id"].as_str().unwrap_or(""), spans.len());
                for r in roots {
                    print(r, 0, start, &children);
                }
            }
            TracesAction::Search { service, operation, tags, errors, min_duration, max_duration, lookback, limit } => {
                let mut q = format!("/api/traces?lookback={}&limit={limit}", encode(&lookback));
                for (k, v) in [
                    ("service", service),
                    ("operation", operation),
                    ("min_duration", min_duration),
                    ("max_duration", max_duration),
                ] {
                    if let Some(v) = v {
                        q.push_str(&format!("&{k}={}", encode(&v)));
                    }
                }
                for t in tags {
                    q.push_str(&format!("&tag={}", encode(&t)));
                }
                if errors {
                    q.push_str("&status=error");
                }
                let v = c.request(http::Method::GET, &q, None).await?;
                for t in v["traces"].as_array().into_iter().flatten() {
                    let when = signalbox_core::time::rfc3339_millis(nanos(&t["start_unix_nanos"]).unwrap_or(0));
                    let err = if t["error"] == true { " ERROR" } else { "" };
                    println!(
                        "{}  {when}  {:>10}  {:>4} spans  {} {}{err}",
                        t["trace_id"].as_str().unwrap_or(""),
                        ms(t["duration_nanos"].as_u64().unwrap_or(0)),
                        t["span_count"],
                        t["root_service"].as_str().unwrap_or(""),
                        t["root_operation"].as_str().unwrap_or("")
                    );
                }
            }
        }
        Ok(())
    })
}

pub fn logs(node: NodeOpts, action: LogsAction) -> ExitCode {
    crate::block_on(async move {
        let c = client(&node);
        let LogsAction::Search { query, since, limit, follow } = action;
        let q = encode(&query);
        let path = format!("/api/logs?query={q}&since={}&limit={limit}", encode(&since));
        let v = c.request(http::Method::GET, &path, None).await?;
        let mut records: Vec<Value> = v["records"].as_array().cloned().unwrap_or_default();
        records.reverse();
        let mut last: u64 = 0;
        for r in &records {
            print_log_line(r);
            last = last.max(r["unix_nanos"].as_str().and_then(|t| t.parse().ok()).unwrap_or(0));
        }
        if !follow {
            return Ok(());
        }
        // Follow by polling for what is newer than the last line printed: simple, and it
        // resumes after a node restart.
        if last == 0 {
            last = signalbox_core::time::unix_nanos();
        }
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            let path = format!("/api/logs?query={q}&start={}&limit=1000&direction=forward", last + 1);
            let v = match c.request(http::Method::GET, &path, None).await {
                Ok(v) => v,
                Err(e) => {
                    eprintln!("# {e}; retrying");
                    continue;
                }
            };
            for r in v["records"].as_array().into_iter().flatten() {
                print_log_line(r);
                last = last.max(r["unix_nanos"].as_str().and_then(|t| t.parse().ok()).unwrap_or(0));
            }
        }
    })
}

fn print_log_line(r: &Value) {
    let s = |k: &str| r[k].as_str().unwrap_or("");
    let trace = r["trace_id"].as_str().map(|t| format!("  trace={t}")).unwrap_or_default();
    println!("{} {:<5} {}/{}  {}{trace}", s("time"), s("severity"), s("service"), s("instance"), s("body"));
}

#[cfg(test)]
mod tests {
    use super::table;

    #[test]
    fn columns_line_up_with_their_headers() {
        let rows = vec![
            vec!["orders-service-with-a-long-name".to_owned(), "12".to_owned(), "3".to_owned()],
            vec!["a".to_owned(), "1".to_owned(), "100".to_owned()],
        ];
        let t = table(&["SERVICE", "INSTANCES", "PASSING"], rows, &[false, true, true]);
        assert_eq!(
            t,
            "SERVICE                          INSTANCES  PASSING\n\
             orders-service-with-a-long-name         12        3\n\
             a                                        1      100\n"
        );
    }
}
