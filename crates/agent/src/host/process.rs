//! The processes the agent is configured to watch (pids, a pid file, or a name pattern),
//! the agent itself, and the processes writing the logs it ships (found by
//! [`super::logproc`]), as client_golang's `process_*` series with `service` and `instance`
//! labels: CPU seconds, resident and virtual memory, open and maximum descriptors, threads,
//! start time. When an entry has several processes their values are summed (maximum
//! descriptors: the smallest limit; start time: the earliest). Processes found writing a
//! source's logs join a configured entry with the same `service` and `instance`.

use super::Snapshot;
use super::collect::{HostSettings, ProcessMatch, ProcessSpec};
use super::logproc::Found;
use std::path::Path;

const USER_HZ: f64 = 100.0;

/// What one process reads as.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProcStats {
    pub cpu_seconds: f64,
    pub resident_bytes: f64,
    pub virtual_bytes: f64,
    pub threads: f64,
    pub start_time_seconds: f64,
    pub open_fds: f64,
    pub max_fds: f64,
}

/// The pids `spec` names now (a vanished pid file or no match: none).
pub fn resolve(proc_path: &Path, spec: &ProcessSpec) -> Vec<u32> {
    match &spec.matcher {
        ProcessMatch::Agent => vec![std::process::id()],
        ProcessMatch::Pids(p) => p.iter().copied().filter(|p| proc_path.join(p.to_string()).exists()).collect(),
        ProcessMatch::PidFile(f) => std::fs::read_to_string(f)
            .ok()
            .and_then(|t| t.trim().parse::<u32>().ok())
            .filter(|p| proc_path.join(p.to_string()).exists())
            .into_iter()
            .collect(),
        ProcessMatch::Name(re) => {
            let Ok(dir) = std::fs::read_dir(proc_path) else { return Vec::new() };
            let mut pids: Vec<u32> = dir
                .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
                .filter(|pid| {
                    let base = proc_path.join(pid.to_string());
                    let comm = std::fs::read_to_string(base.join("comm")).unwrap_or_default();
                    if re.is_match(comm.trim_end()) {
                        return true;
                    }
                    let cmdline = std::fs::read(base.join("cmdline")).unwrap_or_default();
                    let cmdline: String = String::from_utf8_lossy(&cmdline).replace('\0', " ");
                    !cmdline.is_empty() && re.is_match(cmdline.trim_end())
                })
                .collect();
            pids.sort_unstable();
            pids
        }
    }
}

/// Reads `/proc/PID/stat`, `limits` and `fd`; `None` if the process is gone.
pub fn read_process(proc_path: &Path, pid: u32, boot_time: f64) -> Option<ProcStats> {
    let base = proc_path.join(pid.to_string());
    let stat = std::fs::read_to_string(base.join("stat")).ok()?;
    // Fields after the parenthesised command (which may hold spaces and parentheses).
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok());
    let page = rustix::param::page_size() as f64;
    let mut p = ProcStats {
        cpu_seconds: (field(11)? + field(12)?) / USER_HZ,
        threads: field(17)?,
        start_time_seconds: boot_time + field(19)? / USER_HZ,
        virtual_bytes: field(20)?,
        resident_bytes: field(21)? * page,
        ..ProcStats::default()
    };
    p.open_fds = std::fs::read_dir(base.join("fd")).map(|d| d.count() as f64).unwrap_or(0.0);
    if let Ok(limits) = std::fs::read_to_string(base.join("limits")) {
        for line in limits.lines() {
            if let Some(rest) = line.strip_prefix("Max open files") {
                let soft = rest.split_whitespace().next().unwrap_or("");
                p.max_fds = if soft == "unlimited" { f64::INFINITY } else { soft.parse().unwrap_or(0.0) };
            }
        }
    }
    Some(p)
}

/// Adds the `process_*` series of every spec and of the processes found writing logs
/// (`found`: service, instance, pids); returns every entry's labels and pids for the cgroup
/// collector.
pub fn collect(s: &HostSettings, boot_time: f64, found: Found, out: &mut Snapshot) -> Found {
    let mut all: Found = Vec::with_capacity(s.processes.len() + found.len());
    for spec in &s.processes {
        all.push((spec.service.clone(), spec.instance.clone(), resolve(&s.proc_path, spec)));
    }
    for (service, instance, pids) in found {
        match all.iter_mut().find(|(s, i, _)| *s == service && *i == instance) {
            Some(entry) => {
                entry.2.extend(pids);
                entry.2.sort_unstable();
                entry.2.dedup();
            }
            None => all.push((service, instance, pids)),
        }
    }
    for (service, instance, pids) in &all {
        let stats: Vec<ProcStats> = pids.iter().filter_map(|p| read_process(&s.proc_path, *p, boot_time)).collect();
        let labels = [("instance", instance.as_str()), ("service", service.as_str())];
        out.gauge(
            "signalbox_agent_processes_matched",
            "Processes a `host_metrics.processes` entry, or found writing a source's logs, counts now (0: none running).",
            &labels,
            stats.len() as f64,
        );
        if !stats.is_empty() {
            let sum = |g: fn(&ProcStats) -> f64| stats.iter().map(g).sum::<f64>();
            out.counter(
                "process_cpu_seconds_total",
                "Total user and system CPU time spent in seconds.",
                &labels,
                sum(|p| p.cpu_seconds),
            );
            out.gauge(
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                &labels,
                sum(|p| p.resident_bytes),
            );
            out.gauge(
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                &labels,
                sum(|p| p.virtual_bytes),
            );
            out.gauge("process_open_fds", "Number of open file descriptors.", &labels, sum(|p| p.open_fds));
            out.gauge(
                "process_max_fds",
                "Maximum number of open file descriptors.",
                &labels,
                stats.iter().map(|p| p.max_fds).fold(f64::INFINITY, f64::min),
            );
            out.gauge("process_threads", "Number of OS threads in the process.", &labels, sum(|p| p.threads));
            out.gauge(
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                &labels,
                stats.iter().map(|p| p.start_time_seconds).fold(f64::INFINITY, f64::min),
            );
        }
    }
    all
}
