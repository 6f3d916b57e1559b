//! node_exporter's `time` collector: `node_time_seconds` and the clock sources from
//! `/sys/devices/system/clocksource`. Its `timex` collector (adjtimex(2): offset, sync status,
//! max error) needs a system call no safe wrapper in the build offers, so `node_timex_*` is
//! not reported (see docs/agent.md).

use super::Snapshot;
use super::collect::HostSettings;

pub fn collect(s: &HostSettings, out: &mut Snapshot) -> Result<(), String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| format!("the clock is before 1970: {e}"))?;
    out.gauge("node_time_seconds", "System time in seconds since epoch (1970).", &[], now.as_secs_f64());
    let dir = s.sys_path.join("devices/system/clocksource");
    let Ok(entries) = std::fs::read_dir(&dir) else { return Ok(()) };
    let mut devices: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok()?.strip_prefix("clocksource").map(str::to_owned))
        .collect();
    devices.sort();
    for device in devices {
        let base = dir.join(format!("clocksource{device}"));
        if let Ok(avail) = std::fs::read_to_string(base.join("available_clocksource")) {
            for c in avail.split_whitespace() {
                out.gauge(
                    "node_time_clocksource_available_info",
                    "Available clocksources read from '/sys/devices/system/clocksource'.",
                    &[("clocksource", c), ("device", &device)],
                    1.0,
                );
            }
        }
        if let Ok(cur) = std::fs::read_to_string(base.join("current_clocksource")) {
            out.gauge(
                "node_time_clocksource_current_info",
                "Current clocksource read from '/sys/devices/system/clocksource'.",
                &[("clocksource", cur.trim()), ("device", &device)],
                1.0,
            );
        }
    }
    Ok(())
}
