//! node_exporter's `time` collector: `node_time_seconds` and the clock sources from
//! `/sys/devices/system/clocksource`.
//!
//! The kernel's NTP state (`node_timex_*`) is [`super::timex`].

use super::Snapshot;
use super::collect::{Cache, HostSettings};

pub fn collect(s: &HostSettings, cache: &mut Cache, out: &mut Snapshot) -> Result<(), String> {
    let now = s.now_nanos();
    if now < 0 {
        return Err("the clock is before 1970".into());
    }
    out.gauge("node_time_seconds", "System time in seconds since epoch (1970).", &[], now as f64 / 1e9);
    let dir = s.sys_path.join("devices/system/clocksource");
    // The devices and the sources on offer are fixed while the machine runs (re-read at the
    // cache's refresh); the current one is read at every pass.
    let devices = cache.clocksources.get_or_insert_with(|| {
        let Ok(entries) = std::fs::read_dir(&dir) else { return Vec::new() };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok()?.strip_prefix("clocksource").map(str::to_owned))
            .collect();
        names.sort();
        names
            .into_iter()
            .map(|device| {
                let avail = std::fs::read_to_string(dir.join(format!("clocksource{device}/available_clocksource")))
                    .map(|t| t.split_whitespace().map(str::to_owned).collect())
                    .unwrap_or_default();
                (device, avail)
            })
            .collect()
    });
    for (device, available) in devices.iter() {
        for c in available {
            out.gauge(
                "node_time_clocksource_available_info",
                "Available clocksources read from '/sys/devices/system/clocksource'.",
                &[("clocksource", c), ("device", device)],
                1.0,
            );
        }
        let current = dir.join(format!("clocksource{device}/current_clocksource"));
        if let Ok(cur) = std::fs::read_to_string(current) {
            out.gauge(
                "node_time_clocksource_current_info",
                "Current clocksource read from '/sys/devices/system/clocksource'.",
                &[("clocksource", cur.trim()), ("device", device)],
                1.0,
            );
        }
    }
    Ok(())
}
