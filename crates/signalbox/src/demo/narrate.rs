//! What the demo says while it runs: a line when an alert starts or stops firing, and a
//! summary (requests, failures, healthy instances, open circuits, firing alerts) every
//! 30 s of wall time (shorter at high speed).

use super::setup::Scale;
use super::telemetry::clock;
use super::traffic::{Counts, TrafficStats};
use serde_json::Value;
use signalbox_core::shutdown::Shutdown;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

/// Polls the node's alerts and prints summaries until `stop`.
pub async fn run(
    client: signalbox_client::Client,
    console: String,
    stats: Arc<TrafficStats>,
    scale: Scale,
    mut stop: Shutdown,
) {
    let summary_every = scale.wall(Duration::from_secs(30)).clamp(Duration::from_secs(5), Duration::from_secs(30));
    let mut poll = tokio::time::interval(Duration::from_secs(1));
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut next_summary = tokio::time::Instant::now() + summary_every;
    let mut firing: BTreeSet<String> = BTreeSet::new();
    let mut last = Counts::default();
    loop {
        tokio::select! {
            _ = stop.wait() => return,
            _ = poll.tick() => {}
        }
        if let Some(now) = firing_alerts(&client).await {
            for a in now.difference(&firing) {
                match service_of(a) {
                    Some(s) => println!("{} alert firing: {a} -> {console}/services/{s}", clock()),
                    None => println!("{} alert firing: {a}", clock()),
                }
            }
            for a in firing.difference(&now) {
                println!("{} alert resolved: {a}", clock());
            }
            firing = now;
        }
        if tokio::time::Instant::now() >= next_summary {
            next_summary += summary_every;
            let c = stats.counts();
            println!("{} summary: {}", clock(), summary(&client, &last, &c, summary_every, &firing).await);
            last = c;
        }
    }
}

/// The `service` label of an alert as [`firing_alerts`] writes it.
fn service_of(alert: &str) -> Option<&str> {
    let rest = alert.split_once("service=")?.1;
    rest.split([',', '}']).next().filter(|s| !s.is_empty())
}

/// Firing alerts as `Name{label=value,...}` (the labels that say where), or `None` when the
/// node did not answer.
async fn firing_alerts(client: &signalbox_client::Client) -> Option<BTreeSet<String>> {
    let v = client.request(http::Method::GET, "/prometheus/api/v1/alerts", None).await.ok()?;
    let list = v["data"]["alerts"].as_array()?;
    Some(
        list.iter()
            .filter(|a| a["state"] == "firing")
            .map(|a| {
                let labels = &a["labels"];
                let name = labels["alertname"].as_str().unwrap_or("?");
                // Alerts over the node's own metrics carry the node's name as `instance`,
                // which says nothing about where the trouble is.
                let own = labels["job"] == "signalbox";
                let wher: Vec<String> = ["service", "instance", "endpoint"]
                    .iter()
                    .filter(|k| !(own && **k == "instance"))
                    .filter_map(|k| labels[*k].as_str().map(|v| format!("{k}={v}")))
                    .collect();
                format!("{name}{{{}}}", wher.join(","))
            })
            .collect(),
    )
}

async fn summary(
    client: &signalbox_client::Client,
    last: &Counts,
    now: &Counts,
    period: Duration,
    firing: &BTreeSet<String>,
) -> String {
    let sent = now.sent - last.sent;
    let answered = (now.ok - last.ok) + (now.failed - last.failed);
    let mean_ms = if answered > 0 { (now.latency_us - last.latency_us) as f64 / answered as f64 / 1000.0 } else { 0.0 };
    let mut s = format!(
        "{sent} requests ({:.1}/s), {} failed, {} unanswered, mean {mean_ms:.0} ms",
        sent as f64 / period.as_secs_f64(),
        now.failed - last.failed,
        now.unanswered - last.unanswered,
    );
    if let Ok(Value::Array(services)) = client.request(http::Method::GET, "/api/registry/services", None).await {
        let total: u64 = services.iter().map(|x| x["instances"].as_u64().unwrap_or(0)).sum();
        let passing: u64 = services.iter().map(|x| x["passing"].as_u64().unwrap_or(0)).sum();
        s.push_str(&format!("; instances {passing}/{total} healthy"));
    }
    let open = open_circuits(client).await;
    s.push_str(&format!("; open circuits: {}", if open.is_empty() { "none".into() } else { open.join(", ") }));
    let alerts: Vec<&str> = firing.iter().map(String::as_str).collect();
    s.push_str(&format!("; alerts firing: {}", if alerts.is_empty() { "none".into() } else { alerts.join(", ") }));
    s
}

/// The services (and endpoints) whose circuit breaker is open, from the stored gateway metrics.
async fn open_circuits(client: &signalbox_client::Client) -> Vec<String> {
    let path = "/prometheus/api/v1/query?query=signalbox_gateway_circuit_state%20%3D%3D%201";
    let Ok(v) = client.request(http::Method::GET, path, None).await else { return Vec::new() };
    let mut out: Vec<String> = v["data"]["result"]
        .as_array()
        .map(|r| {
            r.iter()
                .map(|x| {
                    let m = &x["metric"];
                    match m["endpoint"].as_str().filter(|e| !e.is_empty()) {
                        Some(e) => format!("{} {e}", m["service"].as_str().unwrap_or("?")),
                        None => m["service"].as_str().unwrap_or("?").to_owned(),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn service_of_an_alert_line() {
        assert_eq!(super::service_of("CircuitOpen{service=payments,endpoint=a}"), Some("payments"));
        assert_eq!(super::service_of("InstanceDown{service=orders}"), Some("orders"));
        assert_eq!(super::service_of("DiskNearlyFull{}"), None);
    }
}
