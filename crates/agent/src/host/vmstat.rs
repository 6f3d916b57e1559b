//! node_exporter's `vmstat` collector: the `/proc/vmstat` fields its default
//! `--collector.vmstat.fields` selects (`oom_kill`, `pgpg*`, `pswp*`, `pg*fault`), untyped.

use super::collect::{Cache, HostSettings};
use super::{Kind, Snapshot, read};

pub fn collect(s: &HostSettings, cache: &mut Cache, out: &mut Snapshot) -> Result<(), String> {
    let text = read(&s.proc_path.join("vmstat"))?;
    for line in text.lines() {
        let Some((key, v)) = line.split_once(' ') else { continue };
        if !super::collect::keep_field(&mut cache.vmstat_keep, &s.vmstat_fields, key) {
            continue;
        }
        let Ok(v) = v.trim().parse::<f64>() else { continue };
        out.add(
            &format!("node_vmstat_{key}"),
            &format!("/proc/vmstat information field {key}."),
            Kind::Untyped,
            &[],
            v,
        );
    }
    Ok(())
}
