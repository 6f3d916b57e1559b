//! Host metrics against the real thing: the agent's collectors next to the real Prometheus
//! node_exporter (Debian's `prometheus-node-exporter`, scripts/test-deps.sh installs it) on
//! this machine, and the container collector against a cgroup v2 group this test creates
//! with a process burning CPU in it, compared with the kernel's own files.

use signalbox_agent::host::collect::{FS_MOUNT_EXCLUDE, HostSettings};
use signalbox_agent::host::{Collectors, ProcessMatch, ProcessSpec, Snapshot};
use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// node_exporter's collectors compared; all of them are the agent's too.
const COMPARED: [&str; 16] = [
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
];

/// Families node_exporter's compared collectors expose that the agent does not:
/// `node_time_zone_offset_seconds` (the local zone's name needs a tz database reader).
const ONLY_NODE_EXPORTER: [&str; 1] = ["node_time_zone_offset_seconds"];

type Series = BTreeMap<String, BTreeMap<String, f64>>;

/// Parses the text exposition into family → label text → value (node_* only).
fn parse_exposition(text: &str) -> Series {
    let mut out = Series::new();
    for line in text.lines() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap();
        let (name, labels) = match series.find('{') {
            Some(i) => (&series[..i], &series[i..]),
            None => (series, ""),
        };
        if !name.starts_with("node_") || name.starts_with("node_scrape_collector") || name == "node_exporter_build_info"
        {
            continue;
        }
        let v: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap(),
        };
        out.entry(name.to_owned()).or_default().insert(labels.to_owned(), v);
    }
    out
}

fn render(s: &Snapshot) -> String {
    let mut text = String::new();
    s.render(&mut text);
    text
}

/// Tolerance of a sample of family `name` whose node_exporter value is `theirs`, on this
/// shared build machine (other engineers compile while the test runs): 5% or the family's
/// absolute tolerance, whichever is larger, except for the kernel clock's state (`timex`),
/// which is compared absolutely.
fn tolerance(name: &str, theirs: f64) -> f64 {
    let abs: f64 = match name {
        // Seconds counters read a moment apart: every CPU can add up to the gap.
        n if n.starts_with("node_cpu_") || n.starts_with("node_pressure_") => 2.0,
        n if n.starts_with("node_disk_") => 1000.0,
        // Every process's committed address space: a compiler or a test's child (the Python
        // log writer of the process test, run in parallel) starting between the two reads
        // moves it by a hundred MiB or more.
        "node_memory_Committed_AS_bytes" => 512.0 * 1024.0 * 1024.0,
        n if n.starts_with("node_memory_") => 64.0 * 1024.0 * 1024.0,
        n if n.starts_with("node_filesystem_") => 1024.0 * 1024.0 * 1024.0,
        "node_time_seconds" => 5.0,
        n if n.starts_with("node_load") => 1.0,
        n if n.starts_with("node_procs_") => 20.0,
        n if n.starts_with("node_sockstat_") || n.starts_with("node_filefd_") => 500.0,
        // Other tests open and close connections meanwhile; the queues move with traffic.
        "node_tcp_connection_states" => 4.0 * 1024.0 * 1024.0,
        n if n.starts_with("node_network_") || n.starts_with("node_netstat_") => 100_000.0,
        // adjtimex(2) read a moment apart. The kernel adds 500 µs a second to the maximum
        // error (up to 16 s) until an NTP daemon resets it; the offset still to be slewed
        // and the frequency move by microseconds and fractions of a ppm per second under an
        // NTP daemon. The status bits, time constant, tick, TAI offset, sync status and the
        // PPS figures must be equal.
        "node_timex_maxerror_seconds" | "node_timex_estimated_error_seconds" => return 0.01,
        "node_timex_offset_seconds" => return 0.001,
        "node_timex_frequency_adjustment_ratio" => return 1e-6,
        n if n.starts_with("node_timex_") => return 0.0,
        _ => 1.0,
    };
    abs.max(0.05 * theirs.abs())
}

/// `# TYPE` of every family in a text exposition.
fn types(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.strip_prefix("# TYPE ")?.split_whitespace();
            Some((w.next()?.to_owned(), w.next()?.to_owned()))
        })
        .collect()
}

struct NodeExporter(Child);

impl Drop for NodeExporter {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_node_exporter(port: u16) -> NodeExporter {
    let bin = ["prometheus-node-exporter", "node_exporter"]
        .into_iter()
        .find(|b| Command::new(b).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok())
        .expect("node_exporter is not installed: run scripts/test-deps.sh (Debian package prometheus-node-exporter)");
    let mut cmd = Command::new(bin);
    cmd.arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--collector.disable-defaults")
        // Debian's build excludes /run, /mnt and /media too; the agent follows upstream.
        .arg(format!("--collector.filesystem.mount-points-exclude={FS_MOUNT_EXCLUDE}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for c in COMPARED {
        cmd.arg(format!("--collector.{c}"));
    }
    NodeExporter(cmd.spawn().unwrap())
}

fn scrape(port: u16) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let (head, body) = buf.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.0 200")
        .then(|| body.to_owned())
        .or_else(|| head.starts_with("HTTP/1.1 200").then(|| body.to_owned()))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Every family and label set of node_exporter's compared collectors is the agent's, and
/// the agent has no other; values agree within 5% or the family's absolute tolerance
/// ([`tolerance`]; the kernel clock's `node_timex_*` absolutely), the agent reading right
/// after node_exporter answered; every family has node_exporter's type.
#[test]
fn the_agent_matches_node_exporter_names_labels_and_values() {
    let port = free_port();
    let _ne = start_node_exporter(port);
    let deadline = Instant::now() + Duration::from_secs(20);
    let theirs_text = loop {
        if let Some(t) = scrape(port) {
            break t;
        }
        assert!(Instant::now() < deadline, "node_exporter did not answer on 127.0.0.1:{port}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut settings = HostSettings::defaults("test-host");
    settings.processes.clear();
    let mut collectors = Collectors::new(settings);
    let snap = collectors.collect();
    let ours = parse_exposition(&render(&snap));
    let theirs = parse_exposition(&theirs_text);
    // A collector node_exporter runs here runs for the agent too (and fails where it fails:
    // no /proc/pressure on a kernel without PSI, say).
    for c in COMPARED {
        let line = format!("node_scrape_collector_success{{collector=\"{c}\"}} ");
        let theirs: f64 = theirs_text.lines().find_map(|l| l.strip_prefix(&line)?.parse().ok()).unwrap();
        assert_eq!(snap.value("node_scrape_collector_success", &[("collector", c)]), Some(theirs), "collector {c}");
    }

    let our_names: BTreeSet<&String> = ours.keys().collect();
    let their_names: BTreeSet<&String> = theirs.keys().filter(|n| !ONLY_NODE_EXPORTER.contains(&n.as_str())).collect();
    let missing: Vec<_> = their_names.difference(&our_names).collect();
    let extra: Vec<_> = our_names.difference(&their_names).collect();
    assert!(missing.is_empty(), "node_exporter has families the agent lacks: {missing:?}");
    assert!(extra.is_empty(), "the agent has families node_exporter lacks: {extra:?}");

    let mut problems = Vec::new();
    let (our_types, their_types) = (types(&render(&snap)), types(&theirs_text));
    for name in theirs.keys().filter(|n| ours.contains_key(*n)) {
        if our_types.get(name) != their_types.get(name) {
            problems.push(format!("{name}: type {:?}, node_exporter {:?}", our_types.get(name), their_types.get(name)));
        }
    }
    // The time-sync families are all there (adjtimex(2) answers here, as for node_exporter).
    let timex: Vec<&String> = theirs.keys().filter(|n| n.starts_with("node_timex_")).collect();
    assert_eq!(timex.len(), 17, "node_exporter's timex families: {timex:?}");
    let mut compared = 0;
    for (name, their_series) in &theirs {
        let Some(our_series) = ours.get(name) else { continue };
        if name == "node_tcp_connection_states" {
            // Both leave out the states without sockets, and a state can empty or fill in a
            // moment (this test's scrape connection closes in between): a missing one is 0.
            // Socket counts agree within 200 or 5%, the queued bytes within 4 MiB or 5%.
            for state in our_series.keys().chain(their_series.keys()).collect::<BTreeSet<_>>() {
                let (a, b) =
                    (our_series.get(state).copied().unwrap_or(0.0), their_series.get(state).copied().unwrap_or(0.0));
                compared += 1;
                let tol = if state.contains("queued") { tolerance(name, b) } else { 200f64.max(0.05 * b) };
                if (a - b).abs() > tol {
                    problems.push(format!("{name}{state}: agent {a}, node_exporter {b} (tolerance {tol})"));
                }
            }
            continue;
        }
        let a: BTreeSet<&String> = our_series.keys().collect();
        let b: BTreeSet<&String> = their_series.keys().collect();
        if a != b {
            problems.push(format!("{name}: label sets differ: agent {a:?}, node_exporter {b:?}"));
            continue;
        }
        for (labels, theirs) in their_series {
            let ours = our_series[labels];
            compared += 1;
            let tol = tolerance(name, *theirs);
            let same_inf = ours.is_infinite() && ours == *theirs;
            if !same_inf && (ours - theirs).abs() > tol {
                problems.push(format!("{name}{labels}: agent {ours}, node_exporter {theirs} (tolerance {tol})"));
            }
        }
    }
    // A second pass, from the collectors' caches (uname, clock sources, udev properties,
    // field-pattern decisions), reports the same families and label sets.
    let again = parse_exposition(&render(&collectors.collect()));
    for (name, series) in &ours {
        let a: BTreeSet<&String> = series.keys().collect();
        let b: BTreeSet<&String> = again.get(name).map(|s| s.keys().collect()).unwrap_or_default();
        if a != b {
            problems.push(format!("{name}: second pass label sets {b:?}, first {a:?}"));
        }
    }
    assert_eq!(ours.len(), again.len(), "families in the first and second pass");
    eprintln!("compared {compared} samples of {} families with node_exporter", theirs.len());
    assert!(compared > 100, "only {compared} samples compared");
    assert!(problems.is_empty(), "{} differences:\n{}", problems.len(), problems.join("\n"));
}

/// A process that burns CPU until killed.
struct Burner(Child);

impl Drop for Burner {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The group the container test uses: a new one below the cgroup v2 mount when it is
/// writable (parent `sbtest-PID`, child `burner`), else the test's own group.
struct TestGroup {
    mount: std::path::PathBuf,
    /// Path below the mount of the group whose children are listed (`cgroup_root`).
    root: Option<String>,
    /// Path below the mount of the group the burner runs in.
    id: String,
    created: bool,
}

impl Drop for TestGroup {
    fn drop(&mut self) {
        if self.created {
            let dir = self.mount.join(self.id.trim_start_matches('/'));
            // The burner is killed first (dropped before); its group empties within moments.
            for _ in 0..50 {
                if std::fs::remove_dir(&dir).is_ok() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if let Some(root) = &self.root {
                let _ = std::fs::remove_dir(self.mount.join(root.trim_start_matches('/')));
            }
        }
    }
}

fn test_group(burner_pid: u32) -> TestGroup {
    let mount = signalbox_agent::host::cgroup::detect_mount(std::path::Path::new("/sys"))
        .expect("no cgroup v2 mount under /sys/fs/cgroup (nor /sys/fs/cgroup/unified)");
    let root = format!("/sbtest-{}", std::process::id());
    let parent = mount.join(&root[1..]);
    if std::fs::create_dir(&parent).is_ok() {
        let child = parent.join("burner");
        std::fs::create_dir(&child).unwrap();
        std::fs::write(child.join("cgroup.procs"), burner_pid.to_string()).unwrap();
        return TestGroup { mount, root: Some(root.clone()), id: format!("{root}/burner"), created: true };
    }
    // Not writable: the burner stays in the test's own group, found through its pid.
    let own = signalbox_agent::host::cgroup::process_group(std::path::Path::new("/proc"), burner_pid).unwrap();
    TestGroup { mount, root: None, id: own, created: false }
}

fn kernel_cpu_usage(dir: &std::path::Path) -> f64 {
    let text = std::fs::read_to_string(dir.join("cpu.stat")).unwrap();
    signalbox_agent::host::cgroup::flat_keyed(&text)["usage_usec"] / 1e6
}

/// A process burns CPU in a group; the agent's `container_*` and `process_*` values are
/// bracketed by the kernel's own readings taken just before and just after collecting.
#[test]
fn container_metrics_match_the_kernel_for_a_group_the_test_creates() {
    let burner = Burner(Command::new("sh").args(["-c", "while :; do :; done"]).spawn().unwrap());
    let pid = burner.0.id();
    let group = test_group(pid);
    let dir = group.mount.join(group.id.trim_start_matches('/'));
    // Until the burner has used 0.4 s of CPU (1.5 s at least, 20 s at most: on this shared
    // machine, under load, it gets a small share of a core).
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(1500)
        || (kernel_cpu_usage(&dir) < 0.4 && started.elapsed() < Duration::from_secs(20))
    {
        std::thread::sleep(Duration::from_millis(100));
    }

    let mut settings = HostSettings::defaults("test-host");
    settings.enabled = ["cgroup", "process", "stat"].into_iter().collect();
    settings.cgroup_mount = Some(group.mount.clone());
    settings.cgroup_root = group.root.clone();
    settings.processes = vec![ProcessSpec {
        service: "burner".into(),
        instance: "burner-1".into(),
        matcher: ProcessMatch::Pids(vec![pid]),
    }];
    let mut collectors = Collectors::new(settings);
    let before = kernel_cpu_usage(&dir);
    let snap = collectors.collect();
    let after = kernel_cpu_usage(&dir);
    assert_eq!(snap.value("node_scrape_collector_success", &[("collector", "cgroup")]), Some(1.0));

    let name = group.id.rsplit('/').next().unwrap().to_owned();
    let labels = [("id", group.id.as_str()), ("instance", "burner-1"), ("name", name.as_str()), ("service", "burner")];
    let mut with_cpu = labels.to_vec();
    with_cpu.push(("cpu", "total"));
    let usage =
        snap.value("container_cpu_usage_seconds_total", &with_cpu).expect("no container_cpu_usage_seconds_total");
    assert!(before <= usage && usage <= after, "agent {usage} s, kernel {before}..{after} s");
    if group.created {
        // Only the burner runs there: it has used the 0.4 s waited for above.
        assert!(usage > 0.3, "the burner used {usage} s of CPU");
        assert_eq!(snap.value("container_processes", &labels), Some(1.0));
        assert_eq!(snap.value("container_threads", &labels), Some(1.0));
        let p = [("instance", "burner-1"), ("service", "burner")];
        let proc_cpu = snap.value("process_cpu_seconds_total", &p).unwrap();
        assert!((proc_cpu - usage).abs() < 0.1, "process {proc_cpu} s, group {usage} s");
    }
    // Every cgroup file the kernel gives this group is reported with its value.
    let kernel = |file: &str| std::fs::read_to_string(dir.join(file)).ok();
    let cpu_text = kernel("cpu.stat").unwrap_or_default();
    let cpu = signalbox_agent::host::cgroup::flat_keyed(&cpu_text);
    for (key, metric) in [
        ("nr_periods", "container_cpu_cfs_periods_total"),
        ("nr_throttled", "container_cpu_cfs_throttled_periods_total"),
    ] {
        assert_eq!(snap.value(metric, &labels), cpu.get(key).copied(), "{metric}");
    }
    match kernel("memory.current") {
        Some(current) => {
            let v = snap.value("container_memory_usage_bytes", &labels).unwrap();
            let k: f64 = current.trim().parse().unwrap();
            assert!((v - k).abs() < 0.1 * k + 1e6, "memory agent {v}, kernel {k}");
            let limit = kernel("memory.max").unwrap();
            let want = limit.trim().parse::<f64>().unwrap_or(0.0);
            assert_eq!(snap.value("container_spec_memory_limit_bytes", &labels), Some(want));
        }
        None => {
            // A hybrid host whose memory controller is on cgroup v1: nothing is invented.
            assert_eq!(snap.value("container_memory_usage_bytes", &labels), None);
        }
    }
    match kernel("memory.events") {
        Some(ev) => {
            let k = signalbox_agent::host::cgroup::flat_keyed(&ev);
            assert_eq!(snap.value("container_oom_events_total", &labels), k.get("oom_kill").copied());
        }
        None => assert_eq!(snap.value("container_oom_events_total", &labels), None),
    }
    drop(burner);
}

/// A log writer the test spawns: Python holding `path` open, appending a line every 50 ms,
/// with 3 threads besides its main one and 32 MiB touched, so its values are distinct.
const WRITER: &str = r#"
import sys, threading, time
f = open(sys.argv[1], "a", buffering=1)
stop = threading.Event()
for _ in range(3):
    threading.Thread(target=stop.wait, daemon=True).start()
ballast = bytearray(32 * 1024 * 1024)
for i in range(0, len(ballast), 4096):
    ballast[i] = 1
print("ready", flush=True)
n = 0
while True:
    f.write("seq=%d level=info msg=\"writer alive\"\n" % n)
    n += 1
    time.sleep(0.05)
"#;

/// The value of `name{instance="orders-1",service="orders"}` in an exposition.
fn orders_value(text: &str, name: &str) -> Option<f64> {
    let prefix = format!("{name}{{instance=\"orders-1\",service=\"orders\"}} ");
    text.lines().find_map(|l| l.strip_prefix(prefix.as_str())?.parse().ok())
}

/// A `/proc/PID/status` field's first number (`Threads`, `VmRSS` in kB).
fn status_field(pid: u32, field: &str) -> f64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = text.lines().find_map(|l| l.strip_prefix(&format!("{field}:"))).unwrap();
    line.split_whitespace().next().unwrap().parse().unwrap()
}

/// The agent finds the process writing a log it ships (it holds the file open) and reports
/// it as `process_*` with the source's `service` and `instance`, the labels of the shipped
/// records; its values agree with `/proc/PID/stat`, `status`, `fd` and `limits`; its series
/// go when it exits. With `log_processes = false` it is not reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_writing_followed_logs_are_reported_with_the_sources_labels() {
    tokio::time::timeout(Duration::from_secs(90), async {
        let r = crate::receiver::Receiver::start().await;
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("orders.log");
        let mut child = Command::new("python3")
            .arg("-c")
            .arg(WRITER)
            .arg(&log)
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 (scripts/test-deps.sh)");
        struct Kill(Child);
        impl Drop for Kill {
            fn drop(&mut self) {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
        let mut ready = String::new();
        let out = child.stdout.take().unwrap();
        let pid = child.id();
        let mut child = Kill(child);
        tokio::task::spawn_blocking(move || {
            std::io::BufRead::read_line(&mut std::io::BufReader::new(out), &mut ready).unwrap();
            assert_eq!(ready.trim(), "ready");
        })
        .await
        .unwrap();

        let agent_cfg = |name: &str, port: u16, on: bool| {
            let mut c = crate::support::config(&dir.path().join(name), &r.url(), &[log.display().to_string()]);
            c.metrics_listen = format!("127.0.0.1:{port}");
            c.host_metrics.enabled = true;
            c.host_metrics.interval = signalbox_core::config::Dur::secs(1);
            c.host_metrics.collectors = vec!["process".into()];
            c.host_metrics.remote_write_url = "none".into();
            c.host_metrics.log_processes = on;
            c
        };
        let (on_port, off_port) = (free_port(), free_port());
        let on = crate::support::start(agent_cfg("on", on_port, true));
        let off = crate::support::start(agent_cfg("off", off_port, false));
        let scrape_at = |port: u16| async move { tokio::task::spawn_blocking(move || scrape(port)).await.unwrap() };

        // Wait for a collection made after the writer settled: 4 threads, its ballast resident.
        let text = signalbox_testkit::eventually(Duration::from_secs(20), "the writer's process_* series", || async {
            let t = scrape_at(on_port).await?;
            (orders_value(&t, "process_threads") == Some(4.0)
                && orders_value(&t, "process_resident_memory_bytes")? > 32.0 * 1024.0 * 1024.0)
                .then_some(t)
        })
        .await;
        // The kernel's view right after the scrape (the collection is at most 1 s older).
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let f: Vec<f64> =
            stat[stat.rfind(')').unwrap() + 2..].split_whitespace().map(|v| v.parse().unwrap_or(0.0)).collect();
        let cpu = (f[11] + f[12]) / 100.0;
        let btime: f64 = std::fs::read_to_string("/proc/stat")
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok())
            .unwrap();
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count() as f64;
        let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
        let max_fds: f64 = limits
            .lines()
            .find_map(|l| l.strip_prefix("Max open files")?.split_whitespace().next()?.parse().ok())
            .unwrap();
        let v = |name: &str| orders_value(&text, name).unwrap_or_else(|| panic!("{name} missing:\n{text}"));
        assert_eq!(
            v("signalbox_agent_processes_matched"),
            1.0,
            "the writer alone (the agent holding the file is not counted)"
        );
        assert_eq!(v("process_threads"), status_field(pid, "Threads"));
        assert_eq!(v("process_open_fds"), fds, "a steady writer's descriptors");
        assert_eq!(v("process_max_fds"), max_fds);
        // Tolerances: resident memory within 2 MiB (the interpreter's own allocations while
        // it writes), CPU within 0.5 s of the kernel's count a moment later and not above it,
        // start time within 10 ms (one clock tick, rounding).
        let rss = status_field(pid, "VmRSS") * 1024.0;
        assert!((v("process_resident_memory_bytes") - rss).abs() <= 2.0 * 1024.0 * 1024.0, "rss {rss}:\n{text}");
        let agent_cpu = v("process_cpu_seconds_total");
        assert!(agent_cpu <= cpu + 0.011 && cpu - agent_cpu <= 0.5, "cpu {agent_cpu} vs kernel {cpu}");
        assert!((v("process_start_time_seconds") - (btime + f[19] / 100.0)).abs() <= 0.01);
        assert!(v("process_virtual_memory_bytes") >= 32.0 * 1024.0 * 1024.0);
        // The shipped records carry the same labels.
        signalbox_testkit::eventually(Duration::from_secs(10), "the writer's records", || async {
            r.lines().iter().any(|l| l["service"] == "orders" && l["instance"] == "orders-1").then_some(())
        })
        .await;

        // Turned off: the other agent follows the same file and reports only itself.
        let off_text = scrape_at(off_port).await.expect("the second agent's /metrics");
        assert!(off_text.contains("process_threads{instance=\"test-host\",service=\"signalbox-agent\"}"), "{off_text}");
        assert!(orders_value(&off_text, "process_threads").is_none(), "{off_text}");

        // The writer exits: its series go.
        child.0.kill().unwrap();
        child.0.wait().unwrap();
        signalbox_testkit::eventually(Duration::from_secs(15), "the writer's series to go", || async {
            let t = scrape_at(on_port).await?;
            (t.contains("process_threads{instance=\"test-host\",service=\"signalbox-agent\"}")
                && orders_value(&t, "process_threads").is_none()
                && orders_value(&t, "signalbox_agent_processes_matched").is_none())
            .then_some(())
        })
        .await;
        on.stop().await;
        off.stop().await;
    })
    .await
    .expect("the test took longer than 90 s");
}
