//! The compiled host-metrics settings and one collection pass over every enabled collector,
//! each timed and reported as node_exporter does (`node_scrape_collector_success` and
//! `node_scrape_collector_duration_seconds` per collector).

use super::{
    Snapshot, cgroup, cpu, diskstats, filefd, filesystem, loadavg, logproc, meminfo, netdev, netstat, pressure,
};
use super::{process, tcpstat, time, timex, uname, vmstat};
use regex::Regex;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::Instant;

/// Every collector, by node_exporter's name (plus `cgroup` and `process`).
pub const ALL: [&str; 18] = [
    "cpu",
    "stat",
    "loadavg",
    "meminfo",
    "pressure",
    "filesystem",
    "diskstats",
    "netdev",
    "netstat",
    "sockstat",
    "tcpstat",
    "filefd",
    "time",
    "timex",
    "uname",
    "vmstat",
    "cgroup",
    "process",
];

/// node_exporter 1.5's default `--collector.filesystem.mount-points-exclude` (upstream; the
/// Debian package's build also excludes `/run`, `/mnt` and `/media`).
pub const FS_MOUNT_EXCLUDE: &str =
    r"^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)";
/// node_exporter's default `--collector.filesystem.fs-types-exclude`.
pub const FS_TYPE_EXCLUDE: &str = r"^(autofs|binfmt_misc|bpf|cgroup2?|configfs|debugfs|devpts|devtmpfs|fusectl|hugetlbfs|iso9660|mqueue|nsfs|overlay|proc|procfs|pstore|rpc_pipefs|securityfs|selinuxfs|squashfs|sysfs|tracefs)$";
/// node_exporter's default `--collector.diskstats.device-exclude`.
pub const DISK_EXCLUDE: &str = r"^(ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$";
/// node_exporter's default `--collector.netdev.device-exclude`.
pub const NETDEV_EXCLUDE: &str = r"^lo$";
/// node_exporter's default `--collector.netstat.fields`.
pub const NETSTAT_FIELDS: &str = r"^(.*_(InErrors|InErrs)|Ip_Forwarding|Ip(6|Ext)_(InOctets|OutOctets)|Icmp6?_(InMsgs|OutMsgs)|TcpExt_(Listen.*|Syncookies.*|TCPSynRetrans|TCPTimeouts)|Tcp_(ActiveOpens|InSegs|OutSegs|OutRsts|PassiveOpens|RetransSegs|CurrEstab)|Udp6?_(InDatagrams|OutDatagrams|NoPorts|RcvbufErrors|SndbufErrors))$";
/// node_exporter's default `--collector.vmstat.fields`.
pub const VMSTAT_FIELDS: &str = r"^(oom_kill|pgpg|pswp|pg.*fault).*";

/// How a watched process is found.
#[derive(Clone, Debug)]
pub enum ProcessMatch {
    /// The agent itself.
    Agent,
    Pids(Vec<u32>),
    /// A file holding a pid, read at every collection.
    PidFile(PathBuf),
    /// A regex matched against `/proc/PID/comm` and the command line.
    Name(Regex),
}

/// A watched process and the labels of its series.
#[derive(Clone, Debug)]
pub struct ProcessSpec {
    pub service: String,
    pub instance: String,
    pub matcher: ProcessMatch,
}

/// Where and what to collect.
#[derive(Clone, Debug)]
pub struct HostSettings {
    pub host: String,
    pub proc_path: PathBuf,
    pub sys_path: PathBuf,
    /// Prefix of mount points for statfs (`/`; `/host` when the agent runs in a container
    /// with the host's root mounted there).
    pub rootfs_path: PathBuf,
    pub udev_data_path: PathBuf,
    pub enabled: HashSet<&'static str>,
    pub fs_mount_exclude: Regex,
    pub fs_type_exclude: Regex,
    pub disk_exclude: Regex,
    pub netdev_exclude: Regex,
    pub netstat_fields: Regex,
    pub vmstat_fields: Regex,
    /// The cgroup v2 mount, if the machine has one.
    pub cgroup_mount: Option<PathBuf>,
    /// The group whose children are reported (a path below the mount), if configured.
    pub cgroup_root: Option<String>,
    pub processes: Vec<ProcessSpec>,
    /// Also report the processes holding a followed log file open, with their source's
    /// `service` and `instance` ([`logproc`]; needs [`Collectors::follow_logs`]).
    pub log_processes: bool,
    /// Added to the system clock wherever the agent states the time (sample timestamps,
    /// `node_time_seconds`, a push's send time): 0 except in tests of clock-offset
    /// measurement (`host_metrics.test_clock_skew_ms`).
    pub clock_skew_ms: i64,
}

impl HostSettings {
    /// Settings for this machine with node_exporter's defaults, every collector enabled,
    /// and the agent itself as the one watched process.
    pub fn defaults(host: &str) -> HostSettings {
        let re = |s: &str| Regex::new(s).unwrap_or_else(|e| panic!("built-in pattern {s}: {e}"));
        HostSettings {
            host: host.to_owned(),
            proc_path: "/proc".into(),
            sys_path: "/sys".into(),
            rootfs_path: "/".into(),
            udev_data_path: "/run/udev/data".into(),
            enabled: ALL.into_iter().collect(),
            fs_mount_exclude: re(FS_MOUNT_EXCLUDE),
            fs_type_exclude: re(FS_TYPE_EXCLUDE),
            disk_exclude: re(DISK_EXCLUDE),
            netdev_exclude: re(NETDEV_EXCLUDE),
            netstat_fields: re(NETSTAT_FIELDS),
            vmstat_fields: re(VMSTAT_FIELDS),
            cgroup_mount: cgroup::detect_mount(std::path::Path::new("/sys")),
            cgroup_root: None,
            processes: vec![ProcessSpec {
                service: "signalbox-agent".into(),
                instance: host.to_owned(),
                matcher: ProcessMatch::Agent,
            }],
            log_processes: true,
            clock_skew_ms: 0,
        }
    }

    /// The agent's clock in Unix nanoseconds: the system clock plus [`Self::clock_skew_ms`].
    pub fn now_nanos(&self) -> i64 {
        signalbox_core::time::unix_nanos() as i64 + self.clock_skew_ms * 1_000_000
    }
}

/// What collectors keep between passes, so a pass reads and matches only what can change:
/// uname(2), the clock sources on offer and each disk's udev properties (fixed while the
/// machine runs; re-read every [`Cache::REFRESH_PASSES`] passes in case a device was
/// replaced), and whether each netstat or vmstat field name matches the configured pattern.
#[derive(Default)]
pub struct Cache {
    /// `node_uname_info`'s labels in label order.
    pub uname: Option<[(&'static str, String); 6]>,
    /// udev `E:` properties by `major:minor`.
    pub udev: HashMap<String, Vec<(String, String)>>,
    /// (clocksource device, its available clock sources), devices sorted.
    pub clocksources: Option<Vec<(String, Vec<String>)>>,
    /// netstat field (`Tcp_CurrEstab`) → included by `netstat_fields`.
    pub netstat_keep: HashMap<String, bool>,
    /// vmstat field → included by `vmstat_fields`.
    pub vmstat_keep: HashMap<String, bool>,
    passes: u64,
}

impl Cache {
    /// Passes between two re-reads of the fixed facts (an hour at 15 s).
    pub const REFRESH_PASSES: u64 = 240;
    /// Most names a field map holds (the kernel has a few hundred; a map past this is
    /// cleared, which only costs the matches again).
    pub const MAX_FIELDS: usize = 4096;

    fn start_pass(&mut self) {
        if self.passes.is_multiple_of(Self::REFRESH_PASSES) {
            self.uname = None;
            self.udev.clear();
            self.clocksources = None;
        }
        self.passes += 1;
        for m in [&mut self.netstat_keep, &mut self.vmstat_keep] {
            if m.len() > Self::MAX_FIELDS {
                m.clear();
            }
        }
    }
}

/// Whether `field` matches `pattern`, remembered in `memo`.
pub fn keep_field(memo: &mut HashMap<String, bool>, pattern: &Regex, field: &str) -> bool {
    if let Some(keep) = memo.get(field) {
        return *keep;
    }
    let keep = pattern.is_match(field);
    memo.insert(field.to_owned(), keep);
    keep
}

type NodeCollector = fn(&HostSettings, &mut Cache, &mut Snapshot) -> Result<(), String>;

/// The node_exporter collectors in the order they run.
const NODE: [(&str, NodeCollector); 16] = [
    ("cpu", cpu::collect_cpu),
    ("stat", cpu::collect_stat),
    ("loadavg", loadavg::collect),
    ("meminfo", meminfo::collect),
    ("pressure", pressure::collect),
    ("filesystem", filesystem::collect),
    ("diskstats", diskstats::collect),
    ("netdev", netdev::collect),
    ("netstat", netstat::collect_netstat),
    ("sockstat", netstat::collect_sockstat),
    ("tcpstat", tcpstat::collect),
    ("filefd", filefd::collect),
    ("time", time::collect),
    ("timex", timex::collect),
    ("uname", uname::collect),
    ("vmstat", vmstat::collect),
];

/// The collectors with their settings; remembers which ones are failing so a failure is
/// logged when it starts and when it ends, not at every pass.
pub struct Collectors {
    pub settings: HostSettings,
    failing: HashSet<&'static str>,
    cache: Cache,
    /// Finds the processes writing the followed logs, when given the reader's files.
    logs: Option<logproc::Discovery>,
}

impl Collectors {
    pub fn new(settings: HostSettings) -> Collectors {
        Collectors { settings, failing: HashSet::new(), cache: Cache::default(), logs: None }
    }

    /// Reports the processes holding one of `tailed` open as `process_*` with its source's
    /// labels (unless `log_processes` is off).
    pub fn follow_logs(&mut self, tailed: logproc::TailedFiles) {
        if self.settings.log_processes {
            self.logs = Some(logproc::Discovery::new(tailed));
        }
    }

    /// One pass over every enabled collector.
    pub fn collect(&mut self) -> Snapshot {
        let now_ms = self.settings.now_nanos() / 1_000_000;
        let mut out = Snapshot::new(now_ms);
        let mut boot_time = 0.0;
        let mut cache = std::mem::take(&mut self.cache);
        cache.start_pass();
        // `/proc/stat` once for the pass (its read error is each user's error).
        let enabled = |n: &str| self.settings.enabled.contains(n);
        let stat = (enabled("cpu") || enabled("stat") || enabled("process")).then(|| cpu::read_stat(&self.settings));
        for (name, f) in NODE {
            if !self.settings.enabled.contains(name) {
                continue;
            }
            let r = match (name, &stat) {
                ("cpu", Some(text)) => self.timed(name, &mut out, |_, o| cpu::cpu_from(text.as_deref()?, o)),
                ("stat", Some(text)) => self.timed(name, &mut out, |_, o| cpu::stat_from(text.as_deref()?, o)),
                _ => self.timed(name, &mut out, |s, o| f(s, &mut cache, o)),
            };
            if name == "stat" && r {
                boot_time = out.value("node_boot_time_seconds", &[]).unwrap_or(0.0);
            }
        }
        self.cache = cache;
        if boot_time == 0.0 {
            boot_time = stat.as_ref().and_then(|t| boot_time_in(t.as_deref().ok()?)).unwrap_or(0.0);
        }
        let mut watched = Vec::new();
        if self.settings.enabled.contains("process") {
            let start = Instant::now();
            let mut found = Vec::new();
            if let Some(d) = self.logs.as_mut() {
                found = d.pass(&self.settings.proc_path, logproc::Discovery::MAX_FDS_PER_PASS);
                out.gauge(
                    "signalbox_agent_log_processes_pending",
                    "Processes not yet examined for open log files (a rescan spread over passes).",
                    &[],
                    d.pending() as f64,
                );
            }
            watched = process::collect(&self.settings, boot_time, found, &mut out);
            record(&mut out, "process", start, true);
        }
        if self.settings.enabled.contains("cgroup") && (self.settings.cgroup_root.is_some() || !watched.is_empty()) {
            self.timed("cgroup", &mut out, |s, o| cgroup::collect(s, &watched, o));
        }
        out
    }

    fn timed(
        &mut self,
        name: &'static str,
        out: &mut Snapshot,
        f: impl FnOnce(&HostSettings, &mut Snapshot) -> Result<(), String>,
    ) -> bool {
        let start = Instant::now();
        let ok = match f(&self.settings, out) {
            Ok(()) => {
                if self.failing.remove(name) {
                    tracing::info!(collector = name, "host metrics collector works again");
                }
                true
            }
            Err(error) => {
                if self.failing.insert(name) {
                    tracing::warn!(collector = name, %error, "host metrics collector failed");
                }
                false
            }
        };
        record(out, name, start, ok);
        ok
    }
}

fn record(out: &mut Snapshot, name: &str, start: Instant, ok: bool) {
    let labels = [("collector", name)];
    out.gauge(
        "node_scrape_collector_duration_seconds",
        "node_exporter: Duration of a collector scrape.",
        &labels,
        start.elapsed().as_secs_f64(),
    );
    out.gauge(
        "node_scrape_collector_success",
        "node_exporter: Whether a collector succeeded.",
        &labels,
        if ok { 1.0 } else { 0.0 },
    );
}

fn boot_time_in(stat: &str) -> Option<f64> {
    stat.lines().find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok())
}
