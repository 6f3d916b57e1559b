//! node_exporter's `filesystem` collector: for every mount of `/proc/1/mounts` (the host's
//! view; `/proc/self/mounts` if unreadable) not excluded by mount point or type,
//! `node_filesystem_{size,free,avail}_bytes`, `node_filesystem_files`, `_files_free`,
//! `_readonly` and `_device_error` with `device`, `fstype` and `mountpoint` labels. A mount
//! whose statfs fails reports only `device_error 1` (and `readonly`).

use super::Snapshot;
use super::collect::{Cache, HostSettings};
use std::collections::HashSet;

/// One line of a mounts file, octal escapes (`\040`) decoded.
#[derive(Debug, PartialEq)]
pub struct Mount {
    pub device: String,
    pub mountpoint: String,
    pub fstype: String,
    pub readonly: bool,
}

/// Parses a mounts file; malformed lines are skipped.
pub fn parse_mounts(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 4 {
                return None;
            }
            Some(Mount {
                device: unescape(f[0]),
                mountpoint: unescape(f[1]),
                fstype: f[2].to_owned(),
                readonly: f[3].split(',').any(|o| o == "ro"),
            })
        })
        .collect()
}

fn unescape(s: &str) -> String {
    if !s.contains('\\') {
        return s.to_owned();
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 4 <= b.len()
            && let Ok(v) = u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 4]).unwrap_or("x"), 8)
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn collect(s: &HostSettings, _cache: &mut Cache, out: &mut Snapshot) -> Result<(), String> {
    let text = std::fs::read_to_string(s.proc_path.join("1/mounts"))
        .or_else(|_| std::fs::read_to_string(s.proc_path.join("self/mounts")))
        .map_err(|e| format!("{}/self/mounts: {e}", s.proc_path.display()))?;
    let mut seen = HashSet::new();
    for m in parse_mounts(&text) {
        if s.fs_mount_exclude.is_match(&m.mountpoint) || s.fs_type_exclude.is_match(&m.fstype) {
            continue;
        }
        if !seen.insert((m.device.clone(), m.mountpoint.clone(), m.fstype.clone())) {
            continue;
        }
        let labels =
            [("device", m.device.as_str()), ("fstype", m.fstype.as_str()), ("mountpoint", m.mountpoint.as_str())];
        let path = s.rootfs_path.join(m.mountpoint.trim_start_matches('/'));
        match rustix::fs::statvfs(&path) {
            Ok(st) => {
                let bsize = st.f_bsize as f64;
                out.gauge(
                    "node_filesystem_device_error",
                    "Whether an error occurred while getting statistics for the given device.",
                    &labels,
                    0.0,
                );
                out.gauge(
                    "node_filesystem_size_bytes",
                    "Filesystem size in bytes.",
                    &labels,
                    st.f_blocks as f64 * bsize,
                );
                out.gauge(
                    "node_filesystem_free_bytes",
                    "Filesystem free space in bytes.",
                    &labels,
                    st.f_bfree as f64 * bsize,
                );
                out.gauge(
                    "node_filesystem_avail_bytes",
                    "Filesystem space available to non-root users in bytes.",
                    &labels,
                    st.f_bavail as f64 * bsize,
                );
                out.gauge("node_filesystem_files", "Filesystem total file nodes.", &labels, st.f_files as f64);
                out.gauge(
                    "node_filesystem_files_free",
                    "Filesystem total free file nodes.",
                    &labels,
                    st.f_ffree as f64,
                );
            }
            Err(e) => {
                tracing::debug!(mountpoint = %m.mountpoint, error = %e, "statfs failed");
                out.gauge(
                    "node_filesystem_device_error",
                    "Whether an error occurred while getting statistics for the given device.",
                    &labels,
                    1.0,
                );
            }
        }
        out.gauge(
            "node_filesystem_readonly",
            "Filesystem read-only status.",
            &labels,
            if m.readonly { 1.0 } else { 0.0 },
        );
    }
    Ok(())
}
