//! node_exporter's `uname` collector: `node_uname_info{sysname,release,version,machine,
//! nodename,domainname} 1`, from uname(2).

use super::Snapshot;
use super::collect::HostSettings;

pub fn collect(_s: &HostSettings, out: &mut Snapshot) -> Result<(), String> {
    let u = rustix::system::uname();
    let text = |c: &std::ffi::CStr| c.to_string_lossy().into_owned();
    let (sysname, release, version, machine, nodename, domainname) = (
        text(u.sysname()),
        text(u.release()),
        text(u.version()),
        text(u.machine()),
        text(u.nodename()),
        text(u.domainname()),
    );
    out.gauge(
        "node_uname_info",
        "Labeled system information as provided by the uname system call.",
        &[
            ("domainname", &domainname),
            ("machine", &machine),
            ("nodename", &nodename),
            ("release", &release),
            ("sysname", &sysname),
            ("version", &version),
        ],
        1.0,
    );
    Ok(())
}
