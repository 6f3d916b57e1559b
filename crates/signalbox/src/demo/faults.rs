//! The fault schedule: what goes wrong, when, and for how long, in demo seconds (divided by
//! `--speed` on the wall clock). The schedule repeats every [`CYCLE`] seconds for as long as
//! the demo runs; each fault is undone when it ends, and the demo prints a line for both.

use super::services::Fleet;
use super::setup::Scale;
use super::telemetry::clock;
use signalbox_core::shutdown::Shutdown;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// One fault.
#[derive(Clone, Copy, Debug)]
pub enum Fault {
    /// Every instance of `service` answers `extra_ms` later.
    LatencySpike { service: &'static str, extra_ms: u64 },
    /// Every instance of `service` fails this share of requests (thousandths).
    ErrorBurst { service: &'static str, permille: u64 },
    /// The instance stops listening (its health check fails, the gateway ejects it, its
    /// scrape reads `up == 0`), then comes back on the same port.
    InstanceDown { instance: &'static str },
    /// A bad value written to central configuration, undone by a rollback to the version
    /// before it (both stay in the key's history).
    BadConfig { service: &'static str, key: &'static str, value: &'static str },
}

/// A fault at `at` seconds into the cycle, lasting `lasts` seconds.
#[derive(Clone, Copy, Debug)]
pub struct Scheduled {
    pub at: u64,
    pub lasts: u64,
    pub fault: Fault,
}

/// The schedule, in demo seconds from the start of a cycle.
pub const SCHEDULE: &[Scheduled] = &[
    Scheduled { at: 45, lasts: 120, fault: Fault::LatencySpike { service: "inventory-db", extra_ms: 1500 } },
    Scheduled { at: 180, lasts: 60, fault: Fault::ErrorBurst { service: "orders", permille: 600 } },
    Scheduled { at: 270, lasts: 90, fault: Fault::InstanceDown { instance: "payments-2" } },
    Scheduled {
        at: 390,
        lasts: 90,
        fault: Fault::BadConfig { service: "payments", key: "failure_rate", value: "0.6" },
    },
];

/// The schedule repeats after this many demo seconds.
pub const CYCLE: u64 = 540;

impl Fault {
    fn describe(&self, lasts: Duration) -> String {
        let s = lasts.as_secs_f64().max(1.0);
        match self {
            Fault::LatencySpike { service, extra_ms } => {
                format!("{service} latency spike (+{extra_ms} ms per request) for {s:.0}s")
            }
            Fault::ErrorBurst { service, permille } => {
                format!("{service} error burst ({}% of requests fail) for {s:.0}s", permille / 10)
            }
            Fault::InstanceDown { instance } => format!("{instance} dies (stops listening) for {s:.0}s"),
            Fault::BadConfig { service, key, value } => {
                format!("bad config change {service}/default/{key} = {value}, rolled back after {s:.0}s")
            }
        }
    }
}

/// Runs the schedule until `stop`; a fault in progress at the stop is undone.
pub async fn run(fleet: &Fleet, client: &signalbox_client::Client, scale: Scale, mut stop: Shutdown) {
    let start = tokio::time::Instant::now();
    let mut cycle = 0u64;
    loop {
        for s in SCHEDULE {
            let at = start + scale.wall(Duration::from_secs(cycle * CYCLE + s.at));
            tokio::select! {
                _ = stop.wait() => return,
                _ = tokio::time::sleep_until(at) => {}
            }
            let lasts = scale.wall(Duration::from_secs(s.lasts));
            println!("{} injecting: {}", clock(), s.fault.describe(lasts));
            let undo = inject(fleet, client, s.fault).await;
            tokio::select! {
                _ = stop.wait() => {}
                _ = tokio::time::sleep(lasts) => {}
            }
            if let Some(undo) = undo {
                recover(fleet, client, s.fault, undo).await;
            }
            if stop.is_triggered() {
                return;
            }
        }
        cycle += 1;
        let next = start + scale.wall(Duration::from_secs(cycle * CYCLE));
        tokio::select! {
            _ = stop.wait() => return,
            _ = tokio::time::sleep_until(next) => {}
        }
        println!("{} the fault schedule starts again", clock());
    }
}

/// What undoing a fault needs: the config version to roll back to, if any.
struct Undo {
    rollback_to: Option<u64>,
}

async fn inject(fleet: &Fleet, client: &signalbox_client::Client, fault: Fault) -> Option<Undo> {
    match fault {
        Fault::LatencySpike { service, extra_ms } => {
            fleet.injected(service)?.extra_latency_ms.store(extra_ms, Ordering::Relaxed);
        }
        Fault::ErrorBurst { service, permille } => {
            fleet.injected(service)?.error_permille.store(permille, Ordering::Relaxed);
        }
        Fault::InstanceDown { instance } => fleet.instance(instance)?.stop().await,
        Fault::BadConfig { service, key, value } => {
            let before = match client.config_get(service, "default", key).await {
                Ok(v) => v["version"].as_u64(),
                Err(e) => {
                    println!("{}   cannot read {service}/default/{key}: {e}", clock());
                    return None;
                }
            };
            match client.config_put(service, "default", key, value, "demo: raise the payment retry budget", None).await
            {
                Ok(v) => println!(
                    "{}   config {service}/default/{key} = {value} (version {})",
                    clock(),
                    v["version"].as_u64().unwrap_or(0)
                ),
                Err(e) => {
                    println!("{}   cannot write {service}/default/{key}: {e}", clock());
                    return None;
                }
            }
            return Some(Undo { rollback_to: before });
        }
    }
    Some(Undo { rollback_to: None })
}

async fn recover(fleet: &Fleet, client: &signalbox_client::Client, fault: Fault, undo: Undo) {
    let what = match fault {
        Fault::LatencySpike { service, .. } => {
            if let Some(i) = fleet.injected(service) {
                i.extra_latency_ms.store(0, Ordering::Relaxed);
            }
            format!("{service} latency back to normal")
        }
        Fault::ErrorBurst { service, .. } => {
            if let Some(i) = fleet.injected(service) {
                i.error_permille.store(0, Ordering::Relaxed);
            }
            format!("{service} errors back to normal")
        }
        Fault::InstanceDown { instance } => match fleet.instance(instance) {
            Some(i) => match i.start().await {
                Ok(()) => format!("{instance} is back on port {}", i.port()),
                Err(e) => format!("{instance} cannot listen again: {e}"),
            },
            None => return,
        },
        Fault::BadConfig { service, key, .. } => {
            let Some(to) = undo.rollback_to else { return };
            match client.config_rollback(service, "default", key, to, "demo: roll back the bad change").await {
                Ok(v) => format!(
                    "{service}/default/{key} rolled back to version {to} (now version {})",
                    v["version"].as_u64().unwrap_or(0)
                ),
                Err(e) => format!("cannot roll back {service}/default/{key}: {e}"),
            }
        }
    };
    println!("{} recovered: {what}", clock());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::topology::TOPOLOGY;

    #[test]
    fn the_schedule_fits_its_cycle_and_names_real_services() {
        let mut end = 0;
        for s in SCHEDULE {
            assert!(s.at >= end, "{s:?} overlaps the fault before it");
            end = s.at + s.lasts;
            let service = match s.fault {
                Fault::LatencySpike { service, .. }
                | Fault::ErrorBurst { service, .. }
                | Fault::BadConfig { service, .. } => service.to_owned(),
                Fault::InstanceDown { instance } => instance.rsplit_once('-').unwrap().0.to_owned(),
            };
            assert!(TOPOLOGY.iter().any(|t| t.name == service), "{s:?}");
        }
        assert!(end < CYCLE, "the last fault ends before the cycle does");
        // The dying instance is not its service's only one.
        assert!(TOPOLOGY.iter().any(|t| t.name == "payments" && t.instances >= 2));
    }
}
