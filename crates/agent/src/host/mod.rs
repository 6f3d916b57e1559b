//! Host, container and process metrics, collected by the agent with the names and labels of
//! Prometheus's node_exporter (`node_*`), cAdvisor (`container_*`) and client_golang's
//! process collector (`process_*`), so existing dashboards and alert rules work unchanged.
//!
//! Every collector reads `/proc`, `/sys` or the cgroup v2 tree by hand (no `procfs` crate:
//! the files are small line formats, and parsing them here costs no build time), except
//! `timex` (adjtimex(2)) and `tcpstat` (a sock_diag netlink dump through rustix). A collector
//! that fails reports `node_scrape_collector_success{collector} 0` and logs its error; the
//! others are unaffected. Nothing here panics on odd input: unparsable lines are skipped.
//!
//! # Layout
//! - [`sample`]: the snapshot (families of samples), its text exposition and remote_write.
//! - [`collect`]: the [`Collectors`] set built from the config, one pass over all of them.
//! - one file per node_exporter collector: [`cpu`] (`cpu`, `stat`), [`loadavg`],
//!   [`meminfo`], [`pressure`], [`filesystem`], [`diskstats`], [`netdev`], [`netstat`]
//!   (`netstat`, `sockstat`), [`tcpstat`], [`filefd`], [`time`], [`timex`] (the
//!   workspace's one `unsafe` call, adjtimex(2)), [`uname`], [`vmstat`].
//! - [`cgroup`]: cgroup v2 groups as cAdvisor's `container_*`.
//! - [`process`]: the configured processes, the agent and the log writers as `process_*`.
//! - [`logproc`]: finds the processes holding a followed log file open (the log writers).
//! - [`push`]: snapshots into their disk buffer and out to a remote_write receiver.
//! - [`run`]: the collection loop.

pub mod cgroup;
pub mod collect;
pub mod cpu;
pub mod diskstats;
pub mod filefd;
pub mod filesystem;
pub mod loadavg;
pub mod logproc;
pub mod meminfo;
pub mod netdev;
pub mod netstat;
pub mod pressure;
pub mod process;
pub mod push;
pub mod run;
pub mod sample;
pub mod tcpstat;
pub mod time;
pub mod timex;
pub mod uname;
pub mod vmstat;

pub use collect::{Collectors, HostSettings, ProcessMatch, ProcessSpec};
pub use sample::{Kind, Snapshot};

/// Reads a whole small file as text, naming the path in the error.
pub(crate) fn read(path: &std::path::Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Parses a number, naming the text in the error.
pub(crate) fn num(s: &str) -> Result<f64, String> {
    s.trim().parse::<f64>().map_err(|_| format!("`{s}` is not a number"))
}

#[cfg(test)]
mod tests;
