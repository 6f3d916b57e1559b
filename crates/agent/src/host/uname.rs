//! node_exporter's `uname` collector: `node_uname_info{sysname,release,version,machine,
//! nodename,domainname} 1`, from uname(2).

use super::Snapshot;
use super::collect::{Cache, HostSettings};

pub fn collect(_s: &HostSettings, cache: &mut Cache, out: &mut Snapshot) -> Result<(), String> {
    // Fixed while the machine runs (a hostname change shows within the cache's refresh).
    let labels = cache.uname.get_or_insert_with(|| {
        let u = rustix::system::uname();
        let text = |c: &std::ffi::CStr| c.to_string_lossy().into_owned();
        [
            ("domainname", text(u.domainname())),
            ("machine", text(u.machine())),
            ("nodename", text(u.nodename())),
            ("release", text(u.release())),
            ("sysname", text(u.sysname())),
            ("version", text(u.version())),
        ]
    });
    let labels: [(&str, &str); 6] = std::array::from_fn(|i| (labels[i].0, labels[i].1.as_str()));
    out.gauge("node_uname_info", "Labeled system information as provided by the uname system call.", &labels, 1.0);
    Ok(())
}
