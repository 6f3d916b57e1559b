//! node_exporter's `cpu` and `stat` collectors, both from `/proc/stat`: seconds per CPU and
//! mode, guest seconds, boot time, context switches, forks, interrupts and runnable or
//! blocked processes.

use super::collect::{Cache, HostSettings};
use super::{Snapshot, num, read};

/// USER_HZ: `/proc/stat` counts in hundredths of a second on every Linux Signalbox targets.
const USER_HZ: f64 = 100.0;

const MODES: [&str; 8] = ["user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"];

/// `/proc/stat`, read once per collection pass and shared by `cpu`, `stat` and the boot
/// time the process collector needs (the kernel formats every interrupt count each time the
/// file is read, so a read is not free).
pub fn read_stat(s: &HostSettings) -> Result<String, String> {
    read(&s.proc_path.join("stat"))
}

/// `node_cpu_seconds_total{cpu,mode}` and `node_cpu_guest_seconds_total{cpu,mode}`.
pub fn collect_cpu(s: &HostSettings, _cache: &mut Cache, out: &mut Snapshot) -> Result<(), String> {
    cpu_from(&read_stat(s)?, out)
}

/// [`collect_cpu`] from `/proc/stat`'s text.
pub fn cpu_from(text: &str, out: &mut Snapshot) -> Result<(), String> {
    let mut cpus = 0;
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let Some(label) = f.next() else { continue };
        let Some(cpu) = label.strip_prefix("cpu") else { continue };
        if cpu.is_empty() {
            continue; // the machine's total line
        }
        let values: Vec<f64> = f.map(num).collect::<Result<_, _>>().map_err(|e| format!("/proc/stat {label}: {e}"))?;
        cpus += 1;
        for (mode, v) in MODES.iter().zip(&values) {
            out.counter(
                "node_cpu_seconds_total",
                "Seconds the CPUs spent in each mode.",
                &[("cpu", cpu), ("mode", mode)],
                v / USER_HZ,
            );
        }
        for (mode, v) in ["user", "nice"].iter().zip(values.iter().skip(8)) {
            out.counter(
                "node_cpu_guest_seconds_total",
                "Seconds the CPUs spent in guests (VMs) for each mode.",
                &[("cpu", cpu), ("mode", mode)],
                v / USER_HZ,
            );
        }
    }
    if cpus == 0 {
        return Err("/proc/stat has no cpuN lines".into());
    }
    Ok(())
}

/// `node_boot_time_seconds`, `node_context_switches_total`, `node_forks_total`,
/// `node_intr_total`, `node_procs_running`, `node_procs_blocked`.
pub fn collect_stat(s: &HostSettings, _cache: &mut Cache, out: &mut Snapshot) -> Result<(), String> {
    stat_from(&read_stat(s)?, out)
}

/// [`collect_stat`] from `/proc/stat`'s text.
pub fn stat_from(text: &str, out: &mut Snapshot) -> Result<(), String> {
    let mut boot = false;
    for line in text.lines() {
        let mut f = line.split_whitespace();
        let (Some(key), Some(first)) = (f.next(), f.next()) else { continue };
        let v = match num(first) {
            Ok(v) => v,
            Err(_) => continue,
        };
        match key {
            "btime" => {
                boot = true;
                out.gauge("node_boot_time_seconds", "Node boot time, in unixtime.", &[], v)
            }
            "ctxt" => out.counter("node_context_switches_total", "Total number of context switches.", &[], v),
            "processes" => out.counter("node_forks_total", "Total number of forks.", &[], v),
            "intr" => out.counter("node_intr_total", "Total number of interrupts serviced.", &[], v),
            "procs_running" => out.gauge("node_procs_running", "Number of processes in runnable state.", &[], v),
            "procs_blocked" => {
                out.gauge("node_procs_blocked", "Number of processes blocked waiting for I/O to complete.", &[], v)
            }
            _ => {}
        }
    }
    if !boot {
        return Err("/proc/stat has no btime line".into());
    }
    Ok(())
}
