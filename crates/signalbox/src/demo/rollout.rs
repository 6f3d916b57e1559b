//! The demo's canary rollout: a little after the start, web-frontend's new version
//! ([`CANARY`], failing 5 % of its requests) is rolled out with the node's rollout
//! controller (20 %, 50 %, 100 %, judged every interval against a 1 % error-rate limit).
//! The node rolls it back by itself; this task only starts it and prints each decision.

use super::setup::{Scale, dur};
use super::telemetry::clock;
use super::topology::{CANARY, TOPOLOGY};
use serde_json::{Value, json};
use signalbox_core::shutdown::Shutdown;
use std::time::Duration;

/// When the rollout starts, in demo seconds.
pub const START_AT: Duration = Duration::from_secs(20);
/// Each step's interval, in demo seconds (at least [`MIN_INTERVAL`] on the wall clock, so
/// the canary serves enough requests to be judged).
pub const INTERVAL: Duration = Duration::from_secs(60);
pub const MIN_INTERVAL: Duration = Duration::from_secs(8);

/// Starts the rollout, then prints its decisions until it ends or `stop`.
pub async fn run(client: signalbox_client::Client, scale: Scale, mut stop: Shutdown) {
    tokio::select! {
        _ = stop.wait() => return,
        _ = tokio::time::sleep(scale.wall(START_AT).max(Duration::from_secs(3))) => {}
    }
    let stable = TOPOLOGY.iter().find(|s| s.name == CANARY.name).map(|s| s.version).unwrap_or_default();
    let interval = scale.wall(INTERVAL).max(MIN_INTERVAL);
    let body = json!({
        "to": CANARY.version, "from": stable, "steps": [20, 50, 100], "interval": dur(interval),
        "max_error_rate": "1%", "min_requests": 20,
    });
    let path = format!("/api/v1/rollouts/{}", CANARY.name);
    if let Err(e) = client.request(http::Method::POST, &path, Some(body)).await {
        println!("{} cannot start the rollout of {} {}: {e}", clock(), CANARY.name, CANARY.version);
        return;
    }
    let mut printed = 0;
    loop {
        match client.request(http::Method::GET, &path, None).await {
            Ok(r) => {
                let history = r["history"].as_array().cloned().unwrap_or_default();
                for e in history.iter().skip(printed) {
                    print_decision(e);
                }
                printed = history.len();
                if !matches!(r["phase"].as_str(), Some("progressing" | "paused")) {
                    return;
                }
            }
            Err(e) => println!("{} cannot read the rollout: {e}", clock()),
        }
        tokio::select! {
            _ = stop.wait() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

fn print_decision(e: &Value) {
    let weights = e["weights"]
        .as_object()
        .map(|o| o.iter().map(|(k, v)| format!("{k}={v}%")).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    println!(
        "{} rollout of {} {}: {} [{weights}] {}",
        clock(),
        CANARY.name,
        CANARY.version,
        e["decision"].as_str().unwrap_or("?").replace('_', " "),
        e["reason"].as_str().unwrap_or("")
    );
}
