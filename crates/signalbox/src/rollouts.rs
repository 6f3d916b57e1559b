//! `signalbox rollout ...`: canary rollouts on a running node, through `/api/v1/rollouts`.

use crate::cli::{NodeOpts, RolloutAction};
use http::Method;
use serde_json::{Value, json};
use signalbox_client::Client;
use std::process::ExitCode;

pub fn main(node: NodeOpts, action: RolloutAction) -> ExitCode {
    crate::block_on(async move {
        let c = Client::new(&node.url, node.token.clone());
        let path = |service: &str, what: &str| format!("/api/v1/rollouts/{service}{what}");
        let v = match action {
            RolloutAction::Start {
                service,
                to,
                from,
                steps,
                interval,
                max_error_rate,
                max_p99,
                min_requests,
                max_holds,
            } => {
                let mut body = json!({
                    "to": to, "steps": steps, "interval": interval, "max_error_rate": max_error_rate,
                });
                for (k, v) in [("from", from.map(Value::from)), ("max_p99", max_p99.map(Value::from))] {
                    if let Some(v) = v {
                        body[k] = v;
                    }
                }
                if let Some(n) = min_requests {
                    body["min_requests"] = json!(n);
                }
                if let Some(n) = max_holds {
                    body["max_holds"] = json!(n);
                }
                c.request(Method::POST, &path(&service, ""), Some(body)).await?
            }
            RolloutAction::List => {
                let v = c.request(Method::GET, "/api/v1/rollouts", None).await?;
                for r in v["rollouts"].as_array().into_iter().flatten() {
                    println!("{}", one_line(r));
                }
                return Ok(());
            }
            RolloutAction::Status { service } => c.request(Method::GET, &path(&service, ""), None).await?,
            RolloutAction::Pause { service } => c.request(Method::POST, &path(&service, "/pause"), None).await?,
            RolloutAction::Resume { service } => c.request(Method::POST, &path(&service, "/resume"), None).await?,
            RolloutAction::Promote { service, full } => {
                let q = if full { "/promote?full=true" } else { "/promote" };
                c.request(Method::POST, &path(&service, q), None).await?
            }
            RolloutAction::Abort { service } => c.request(Method::POST, &path(&service, "/abort"), None).await?,
        };
        print_status(&v);
        Ok(())
    })
}

fn weights(v: &Value) -> String {
    v.as_object().map(|o| o.iter().map(|(k, w)| format!("{k}={w}%")).collect::<Vec<_>>().join(" ")).unwrap_or_default()
}

fn one_line(r: &Value) -> String {
    let s = &r["spec"];
    format!(
        "{:<20} {:<12} {} -> {}  {}",
        s["service"].as_str().unwrap_or(""),
        r["phase"].as_str().unwrap_or(""),
        s["stable"].as_str().unwrap_or(""),
        s["canary"].as_str().unwrap_or(""),
        weights(&r["weights"])
    )
}

fn print_status(r: &Value) {
    println!("{}", one_line(r));
    let steps: Vec<String> = r["spec"]["steps"].as_array().into_iter().flatten().map(|s| format!("{s}%")).collect();
    println!("steps {} (now step {})", steps.join(", "), r["step"].as_u64().unwrap_or(0) + 1);
    for e in r["history"].as_array().into_iter().flatten() {
        let when = signalbox_core::time::rfc3339_millis(e["t_ms"].as_u64().unwrap_or(0) * 1_000_000);
        println!(
            "{when}  {:<12} {:<20} {}",
            e["decision"].as_str().unwrap_or(""),
            weights(&e["weights"]),
            e["reason"].as_str().unwrap_or("")
        );
    }
}
