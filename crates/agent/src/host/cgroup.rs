//! cgroup v2 groups as cAdvisor's `container_*` series, labelled `id` (the group's path
//! below the cgroup v2 mount, as cAdvisor's raw containers are), `name` (its last
//! component), `service` and `instance`. The groups are those directly below
//! `host_metrics.cgroup_root` (service: the group's name without `.service` / `.scope`) and
//! the groups of the watched processes (their entry's service and instance).
//!
//! A file a kernel or a cgroup's controllers do not provide (no `memory` controller in the
//! group, say) leaves its series out; only an unreadable group is an error.

use super::Snapshot;
use super::collect::HostSettings;
use super::logproc::Found;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// One group to report.
#[derive(Clone, Debug, PartialEq)]
pub struct Group {
    /// Path below the cgroup v2 mount, starting with `/`.
    pub id: String,
    pub service: String,
    pub instance: String,
}

/// The cgroup v2 mount: `/sys/fs/cgroup` on a unified host, `/sys/fs/cgroup/unified` on a
/// hybrid one.
pub fn detect_mount(sys_path: &Path) -> Option<PathBuf> {
    let base = sys_path.join("fs/cgroup");
    [base.clone(), base.join("unified")].into_iter().find(|p| p.join("cgroup.controllers").exists())
}

/// The cgroup v2 path of a process (`0::/path` in `/proc/PID/cgroup`).
pub fn process_group(proc_path: &Path, pid: u32) -> Option<String> {
    let text = std::fs::read_to_string(proc_path.join(pid.to_string()).join("cgroup")).ok()?;
    text.lines().find_map(|l| l.strip_prefix("0::")).map(|p| p.trim().to_owned())
}

/// The groups to report now: those below the configured root, then those of the watched
/// processes (`watched`: service, instance, pids), each once.
pub fn groups(s: &HostSettings, watched: &Found) -> Result<Vec<Group>, String> {
    let mut out: Vec<Group> = Vec::new();
    let Some(mount) = &s.cgroup_mount else { return Ok(out) };
    if let Some(root) = &s.cgroup_root {
        let dir = mount.join(root.trim_start_matches('/'));
        let entries = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut names: Vec<String> = entries
            .filter_map(|e| {
                let e = e.ok()?;
                e.file_type().ok()?.is_dir().then_some(())?;
                e.file_name().into_string().ok()
            })
            .collect();
        names.sort();
        for n in names {
            let service = n.trim_end_matches(".service").trim_end_matches(".scope").to_owned();
            let id = format!("{}/{n}", root.trim_end_matches('/'));
            let id = if id.starts_with('/') { id } else { format!("/{id}") };
            out.push(Group { id, service, instance: s.host.clone() });
        }
    }
    for (service, instance, pids) in watched {
        for pid in pids {
            let Some(id) = process_group(&s.proc_path, *pid) else { continue };
            match out.iter_mut().find(|g| g.id == id) {
                Some(g) => {
                    g.service = service.clone();
                    g.instance = instance.clone();
                }
                None => out.push(Group { id, service: service.clone(), instance: instance.clone() }),
            }
        }
    }
    Ok(out)
}

/// `key value` lines (cpu.stat, memory.stat, memory.events).
pub fn flat_keyed(text: &str) -> HashMap<&str, f64> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k, v.trim().parse::<f64>().ok()?))
        })
        .collect()
}

fn read_opt(dir: &Path, file: &str) -> Option<String> {
    std::fs::read_to_string(dir.join(file)).ok()
}

pub fn collect(s: &HostSettings, watched: &Found, out: &mut Snapshot) -> Result<(), String> {
    let groups = groups(s, watched)?;
    let Some(mount) = &s.cgroup_mount else {
        return if s.cgroup_root.is_some() { Err("no cgroup v2 mount found".into()) } else { Ok(()) };
    };
    let devices = block_devices(&s.sys_path);
    for g in groups {
        let dir = mount.join(g.id.trim_start_matches('/'));
        let name = g.id.rsplit('/').next().unwrap_or("").to_owned();
        let l = [
            ("id", g.id.as_str()),
            ("instance", g.instance.as_str()),
            ("name", name.as_str()),
            ("service", g.service.as_str()),
        ];
        let Some(cpu) = read_opt(&dir, "cpu.stat") else {
            // The group went away between listing and reading.
            continue;
        };
        let cpu = flat_keyed(&cpu);
        let usec = |k: &str| cpu.get(k).map(|v| v / 1e6);
        if let Some(v) = usec("usage_usec") {
            let mut lt = l.to_vec();
            lt.push(("cpu", "total"));
            out.counter("container_cpu_usage_seconds_total", "Cumulative cpu time consumed in seconds.", &lt, v);
        }
        if let Some(v) = usec("user_usec") {
            out.counter("container_cpu_user_seconds_total", "Cumulative user cpu time consumed in seconds.", &l, v);
        }
        if let Some(v) = usec("system_usec") {
            out.counter("container_cpu_system_seconds_total", "Cumulative system cpu time consumed in seconds.", &l, v);
        }
        if let Some(v) = cpu.get("nr_periods") {
            out.counter("container_cpu_cfs_periods_total", "Number of elapsed enforcement period intervals.", &l, *v);
        }
        if let Some(v) = cpu.get("nr_throttled") {
            out.counter("container_cpu_cfs_throttled_periods_total", "Number of throttled period intervals.", &l, *v);
        }
        if let Some(v) = usec("throttled_usec") {
            out.counter(
                "container_cpu_cfs_throttled_seconds_total",
                "Total time duration the container has been throttled.",
                &l,
                v,
            );
        }
        if let Some(max) = read_opt(&dir, "cpu.max") {
            let mut f = max.split_whitespace();
            if let (Some(quota), Some(Ok(period))) = (f.next(), f.next().map(str::parse::<f64>)) {
                out.gauge("container_spec_cpu_period", "CPU period of the container.", &l, period);
                if let Ok(q) = quota.parse::<f64>() {
                    out.gauge("container_spec_cpu_quota", "CPU quota of the container.", &l, q);
                }
            }
        }
        if let Some(Ok(usage)) = read_opt(&dir, "memory.current").map(|t| t.trim().parse::<f64>()) {
            out.gauge(
                "container_memory_usage_bytes",
                "Current memory usage in bytes, including all memory regardless of when it was accessed",
                &l,
                usage,
            );
            let stat = read_opt(&dir, "memory.stat").unwrap_or_default();
            let stat = flat_keyed(&stat);
            let inactive = stat.get("inactive_file").copied().unwrap_or(0.0);
            out.gauge(
                "container_memory_working_set_bytes",
                "Current working set in bytes.",
                &l,
                (usage - inactive).max(0.0),
            );
            if let Some(v) = stat.get("anon") {
                out.gauge("container_memory_rss", "Size of RSS in bytes.", &l, *v);
            }
            if let Some(v) = stat.get("file") {
                out.gauge("container_memory_cache", "Number of bytes of page cache memory.", &l, *v);
            }
        }
        if let Some(max) = read_opt(&dir, "memory.max") {
            // cAdvisor reports an unlimited group as 0.
            let limit = max.trim().parse::<f64>().unwrap_or(0.0);
            out.gauge("container_spec_memory_limit_bytes", "Memory limit for the container.", &l, limit);
        }
        if let Some(ev) = read_opt(&dir, "memory.events") {
            let ev = flat_keyed(&ev);
            if let Some(v) = ev.get("oom_kill") {
                out.counter(
                    "container_oom_events_total",
                    "Count of out of memory events observed for the container",
                    &l,
                    *v,
                );
            }
        }
        if let Some(io) = read_opt(&dir, "io.stat") {
            for line in io.lines() {
                let mut f = line.split_whitespace();
                let Some(dev) = f.next() else { continue };
                let device = devices.get(dev).cloned().unwrap_or_else(|| dev.to_owned());
                let mut ld = l.to_vec();
                ld.push(("device", device.as_str()));
                for kv in f {
                    let Some((k, v)) = kv.split_once('=') else { continue };
                    let Ok(v) = v.parse::<f64>() else { continue };
                    let (name, help) = match k {
                        "rbytes" => ("container_fs_reads_bytes_total", "Cumulative count of bytes read"),
                        "wbytes" => ("container_fs_writes_bytes_total", "Cumulative count of bytes written"),
                        "rios" => ("container_fs_reads_total", "Cumulative count of reads completed"),
                        "wios" => ("container_fs_writes_total", "Cumulative count of writes completed"),
                        _ => continue,
                    };
                    out.counter(name, help, &ld, v);
                }
            }
        }
        if let Some(procs) = read_opt(&dir, "cgroup.procs") {
            out.gauge(
                "container_processes",
                "Number of processes running inside the container.",
                &l,
                procs.lines().count() as f64,
            );
        }
        if let Some(threads) = read_opt(&dir, "cgroup.threads") {
            out.gauge(
                "container_threads",
                "Number of threads running inside the container",
                &l,
                threads.lines().count() as f64,
            );
        }
        if let Some(Ok(max)) = read_opt(&dir, "pids.max").map(|t| t.trim().parse::<f64>()) {
            out.gauge(
                "container_threads_max",
                "Maximum number of threads allowed inside the container, infinity if value is zero",
                &l,
                max,
            );
        }
    }
    Ok(())
}

/// `major:minor` → `/dev/NAME` from `/sys/dev/block/*/uevent`.
fn block_devices(sys_path: &Path) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let Ok(dir) = std::fs::read_dir(sys_path.join("dev/block")) else { return out };
    for e in dir.flatten() {
        let Ok(id) = e.file_name().into_string() else { continue };
        if let Ok(uevent) = std::fs::read_to_string(e.path().join("uevent"))
            && let Some(name) = uevent.lines().find_map(|l| l.strip_prefix("DEVNAME="))
        {
            out.insert(id, format!("/dev/{name}"));
        }
    }
    out
}
