//! node_exporter's `filefd` collector: `/proc/sys/fs/file-nr` as `node_filefd_allocated` and
//! `node_filefd_maximum`.

use super::collect::{Cache, HostSettings};
use super::{Snapshot, num, read};

pub fn collect(s: &HostSettings, _cache: &mut Cache, out: &mut Snapshot) -> Result<(), String> {
    let text = read(&s.proc_path.join("sys/fs/file-nr"))?;
    let f: Vec<&str> = text.split_whitespace().collect();
    if f.len() != 3 {
        return Err(format!("/proc/sys/fs/file-nr: `{}` is not 3 fields", text.trim()));
    }
    out.gauge("node_filefd_allocated", "File descriptor statistics: allocated.", &[], num(f[0])?);
    out.gauge("node_filefd_maximum", "File descriptor statistics: maximum.", &[], num(f[2])?);
    Ok(())
}
