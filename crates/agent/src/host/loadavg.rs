//! node_exporter's `loadavg` collector: `node_load1`, `node_load5`, `node_load15`.

use super::collect::{Cache, HostSettings};
use super::{Snapshot, num, read};

pub fn collect(s: &HostSettings, _cache: &mut Cache, out: &mut Snapshot) -> Result<(), String> {
    let text = read(&s.proc_path.join("loadavg"))?;
    let f: Vec<&str> = text.split_whitespace().collect();
    if f.len() < 3 {
        return Err(format!("/proc/loadavg: `{}` has fewer than 3 fields", text.trim()));
    }
    for (name, v, help) in [("node_load1", f[0], "1m"), ("node_load5", f[1], "5m"), ("node_load15", f[2], "15m")] {
        out.gauge(name, &format!("{help} load average."), &[], num(v)?);
    }
    Ok(())
}
