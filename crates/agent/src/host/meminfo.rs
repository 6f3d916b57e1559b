//! node_exporter's `meminfo` collector: every `/proc/meminfo` field as
//! `node_memory_<Field>_bytes` (fields in kB) or `node_memory_<Field>` (counts such as
//! `HugePages_Total`); `Active(anon)` becomes `Active_anon`.

use super::collect::{Cache, HostSettings};
use super::{Snapshot, num, read};

pub fn collect(s: &HostSettings, _cache: &mut Cache, out: &mut Snapshot) -> Result<(), String> {
    let text = read(&s.proc_path.join("meminfo"))?;
    let mut any = false;
    for line in text.lines() {
        let Some((key, rest)) = line.split_once(':') else { continue };
        let mut f = rest.split_whitespace();
        let Some(Ok(mut v)) = f.next().map(num) else { continue };
        let field = key.replace('(', "_").replace(')', "");
        let name = match f.next() {
            Some("kB") => {
                v *= 1024.0;
                format!("node_memory_{field}_bytes")
            }
            _ => format!("node_memory_{field}"),
        };
        out.gauge(&name, &format!("Memory information field {}.", &name["node_memory_".len()..]), &[], v);
        any = true;
    }
    if !any {
        return Err("/proc/meminfo has no fields".into());
    }
    Ok(())
}
