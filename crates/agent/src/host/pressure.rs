//! node_exporter's `pressure` collector: pressure stall information from
//! `/proc/pressure/{cpu,io,memory}`, the `total` (microseconds) of the `some` and `full`
//! lines as seconds.

use super::collect::{Cache, HostSettings};
use super::{Snapshot, read};

pub fn collect(s: &HostSettings, _cache: &mut Cache, out: &mut Snapshot) -> Result<(), String> {
    for resource in ["cpu", "io", "memory"] {
        let text = read(&s.proc_path.join("pressure").join(resource))?;
        for line in text.lines() {
            let mut f = line.split_whitespace();
            let Some(kind) = f.next() else { continue };
            let Some(total) = f.find_map(|kv| kv.strip_prefix("total=")) else { continue };
            let Ok(us) = total.parse::<f64>() else { continue };
            // node_exporter reports only `some` for CPU (the `full` line is zero at system level).
            let (name, help) = match (resource, kind) {
                ("cpu", "some") => (
                    "node_pressure_cpu_waiting_seconds_total",
                    "Total time in seconds that processes have waited for CPU time",
                ),
                ("io", "some") => (
                    "node_pressure_io_waiting_seconds_total",
                    "Total time in seconds that processes have waited due to IO congestion",
                ),
                ("io", "full") => (
                    "node_pressure_io_stalled_seconds_total",
                    "Total time in seconds no process could make progress due to IO congestion",
                ),
                ("memory", "some") => (
                    "node_pressure_memory_waiting_seconds_total",
                    "Total time in seconds that processes have waited for memory",
                ),
                ("memory", "full") => (
                    "node_pressure_memory_stalled_seconds_total",
                    "Total time in seconds no process could make progress due to memory congestion",
                ),
                _ => continue,
            };
            out.counter(name, help, &[], us / 1e6);
        }
    }
    Ok(())
}
