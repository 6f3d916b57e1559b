use super::collect::{ALL, Collectors, HostSettings};
use super::filesystem::parse_mounts;
use super::sample::WriteRequest;
use super::{Kind, Snapshot};
use prost::Message;
use std::path::Path;

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// A procfs and sysfs made of fixture files, every collector but the live ones enabled.
fn fixture() -> (tempfile::TempDir, HostSettings) {
    let d = tempfile::tempdir().unwrap();
    let proc = d.path().join("proc");
    let r = &proc;
    write(
        r,
        "stat",
        "cpu  10 0 5 100 0 0 0 0 0 0\ncpu0 250 1 30 1000 7 0 3 2 4 0\ncpu1 100 0 20 900 0 0 0 0 0 0\nintr 12345 1 2\nctxt 999\nbtime 1700000000\nprocesses 4242\nprocs_running 3\nprocs_blocked 1\n",
    );
    write(r, "loadavg", "0.50 0.25 0.10 2/300 4000\n");
    write(
        r,
        "meminfo",
        "MemTotal:        1000 kB\nMemAvailable:     500 kB\nActive(anon):      20 kB\nHugePages_Total:       0\nbroken line\n",
    );
    write(
        r,
        "pressure/cpu",
        "some avg10=0.00 avg60=0.00 avg300=0.00 total=2500000\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
    );
    write(
        r,
        "pressure/io",
        "some avg10=0.00 avg60=0.00 avg300=0.00 total=1000000\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=500000\n",
    );
    write(
        r,
        "pressure/memory",
        "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
    );
    write(r, "sys/fs/file-nr", "512\t0\t9999\n");
    write(
        r,
        "diskstats",
        "   7       0 loop0 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n 254       0 vda 10 2 80 40 5 1 16 20 1 50 60 0 0 0 0 3 9\n 254       1 vda1 1 0 8 4 0 0 0 0 0 5 5 0 0 0 0 0 0\n",
    );
    write(
        r,
        "net/dev",
        "Inter-|   Receive\n face |bytes\n    lo: 1 2 0 0 0 0 0 0 1 2 0 0 0 0 0 0\n  eth0: 100 10 1 2 0 0 0 3 200 20 0 1 0 0 0 0\n",
    );
    write(r, "net/netstat", "TcpExt: ListenDrops SyncookiesSent Other\nTcpExt: 4 5 6\n");
    write(r, "net/snmp", "Tcp: ActiveOpens CurrEstab MaxConn\nTcp: 7 8 -1\nUdp: InDatagrams InErrors\nUdp: 9 10\n");
    write(
        r,
        "net/snmp6",
        "Ip6InOctets                      11\nUdp6InDatagrams                  12\nIp6InReceives 13\n",
    );
    write(r, "net/sockstat", "sockets: used 42\nTCP: inuse 4 orphan 0 tw 1 alloc 5 mem 2\nUDP: inuse 3 mem 1\n");
    write(r, "vmstat", "nr_free_pages 100\noom_kill 2\npgfault 77\npswpin 0\n");
    write(
        r,
        "1/mounts",
        "/dev/vda / ext4 rw,relatime 0 0\nproc /proc proc rw 0 0\n/dev/vdb /mnt/my\\040data ext4 ro,relatime 0 0\ntmpfs /run tmpfs rw 0 0\n",
    );
    let mut s = HostSettings::defaults("test-host");
    s.proc_path = proc;
    s.sys_path = d.path().join("sys");
    s.udev_data_path = d.path().join("udev");
    // Only the fixture's mounts that exist here: `/` is statfs'ed through rootfs_path.
    s.rootfs_path = "/".into();
    s.cgroup_mount = None;
    s.processes.clear();
    (d, s)
}

#[test]
fn every_collector_reads_its_fixture_with_node_exporter_names() {
    let (_d, s) = fixture();
    let snap = Collectors::new(s).collect();
    let v =
        |name: &str, labels: &[(&str, &str)]| snap.value(name, labels).unwrap_or_else(|| panic!("no {name}{labels:?}"));
    assert_eq!(v("node_cpu_seconds_total", &[("cpu", "0"), ("mode", "user")]), 2.5);
    assert_eq!(v("node_cpu_seconds_total", &[("cpu", "0"), ("mode", "steal")]), 0.02);
    assert_eq!(v("node_cpu_guest_seconds_total", &[("cpu", "0"), ("mode", "user")]), 0.04);
    assert_eq!(snap.family("node_cpu_seconds_total").unwrap().samples.len(), 16, "2 CPUs × 8 modes, no total line");
    assert_eq!(v("node_boot_time_seconds", &[]), 1_700_000_000.0);
    assert_eq!(v("node_context_switches_total", &[]), 999.0);
    assert_eq!(v("node_forks_total", &[]), 4242.0);
    assert_eq!(v("node_intr_total", &[]), 12345.0);
    assert_eq!(v("node_procs_blocked", &[]), 1.0);
    assert_eq!(v("node_load1", &[]), 0.5);
    assert_eq!(v("node_load15", &[]), 0.1);
    assert_eq!(v("node_memory_MemTotal_bytes", &[]), 1_024_000.0);
    assert_eq!(v("node_memory_Active_anon_bytes", &[]), 20.0 * 1024.0);
    assert_eq!(v("node_memory_HugePages_Total", &[]), 0.0);
    assert_eq!(v("node_pressure_cpu_waiting_seconds_total", &[]), 2.5);
    assert_eq!(v("node_pressure_io_stalled_seconds_total", &[]), 0.5);
    assert!(snap.family("node_pressure_cpu_stalled_seconds_total").is_none());
    assert_eq!(v("node_filefd_allocated", &[]), 512.0);
    assert_eq!(v("node_filefd_maximum", &[]), 9999.0);
    // loop0 and the partition vda1 are excluded by node_exporter's default.
    assert_eq!(v("node_disk_read_bytes_total", &[("device", "vda")]), 80.0 * 512.0);
    assert_eq!(v("node_disk_io_time_seconds_total", &[("device", "vda")]), 0.05);
    assert_eq!(v("node_disk_flush_requests_total", &[("device", "vda")]), 3.0);
    assert_eq!(snap.family("node_disk_reads_completed_total").unwrap().samples.len(), 1);
    assert_eq!(v("node_network_receive_bytes_total", &[("device", "eth0")]), 100.0);
    assert_eq!(v("node_network_receive_multicast_total", &[("device", "eth0")]), 3.0);
    assert_eq!(v("node_network_transmit_drop_total", &[("device", "eth0")]), 1.0);
    assert!(snap.value("node_network_receive_bytes_total", &[("device", "lo")]).is_none());
    assert_eq!(v("node_netstat_Tcp_CurrEstab", &[]), 8.0);
    assert_eq!(v("node_netstat_TcpExt_ListenDrops", &[]), 4.0);
    assert_eq!(v("node_netstat_Udp_InErrors", &[]), 10.0);
    assert_eq!(v("node_netstat_Ip6_InOctets", &[]), 11.0);
    assert!(snap.family("node_netstat_Tcp_MaxConn").is_none(), "not in the default fields");
    assert!(snap.family("node_netstat_Ip6_InReceives").is_none());
    assert_eq!(snap.family("node_netstat_Tcp_CurrEstab").unwrap().kind, Kind::Untyped);
    assert_eq!(v("node_sockstat_sockets_used", &[]), 42.0);
    assert_eq!(v("node_sockstat_TCP_tw", &[]), 1.0);
    assert_eq!(v("node_sockstat_TCP_mem_bytes", &[]), 2.0 * rustix::param::page_size() as f64);
    assert_eq!(v("node_vmstat_oom_kill", &[]), 2.0);
    assert!(snap.family("node_vmstat_nr_free_pages").is_none());
    let root = [("device", "/dev/vda"), ("fstype", "ext4"), ("mountpoint", "/")];
    assert!(v("node_filesystem_size_bytes", &root) > 0.0);
    assert_eq!(v("node_filesystem_readonly", &root), 0.0);
    // The escaped mount point is decoded; it does not exist here, so statfs fails.
    let data = [("device", "/dev/vdb"), ("fstype", "ext4"), ("mountpoint", "/mnt/my data")];
    assert_eq!(v("node_filesystem_readonly", &data), 1.0);
    assert_eq!(v("node_filesystem_device_error", &data), 1.0);
    assert!(snap.value("node_filesystem_size_bytes", &data).is_none());
    assert!(snap.family("node_filesystem_size_bytes").unwrap().samples.iter().all(|(l, _)| l[2].1 != "/proc"));
    assert_eq!(
        v("node_uname_info", &[("sysname", "Linux")].iter().copied().chain(uname_rest()).collect::<Vec<_>>()),
        1.0
    );
    for c in [
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
        "filefd",
        "uname",
        "vmstat",
        "time",
    ] {
        assert_eq!(v("node_scrape_collector_success", &[("collector", c)]), 1.0, "{c}");
    }
}

fn uname_rest() -> Vec<(&'static str, &'static str)> {
    let u = rustix::system::uname();
    let leak = |c: &std::ffi::CStr| &*Box::leak(c.to_string_lossy().into_owned().into_boxed_str());
    vec![
        ("domainname", leak(u.domainname())),
        ("machine", leak(u.machine())),
        ("nodename", leak(u.nodename())),
        ("release", leak(u.release())),
        ("version", leak(u.version())),
    ]
}

#[test]
fn a_failing_collector_reports_zero_and_the_others_still_run() {
    let (d, s) = fixture();
    std::fs::remove_file(d.path().join("proc/loadavg")).unwrap();
    std::fs::write(d.path().join("proc/sys/fs/file-nr"), "garbage").unwrap();
    let mut c = Collectors::new(s);
    let snap = c.collect();
    assert_eq!(snap.value("node_scrape_collector_success", &[("collector", "loadavg")]), Some(0.0));
    assert_eq!(snap.value("node_scrape_collector_success", &[("collector", "filefd")]), Some(0.0));
    assert_eq!(snap.value("node_scrape_collector_success", &[("collector", "cpu")]), Some(1.0));
    assert!(snap.family("node_load1").is_none());
    assert!(snap.value("node_memory_MemTotal_bytes", &[]).is_some());
}

#[test]
fn the_text_exposition_and_remote_write_carry_the_same_series() {
    let mut s = Snapshot::new(1_700_000_000_123);
    s.counter("node_cpu_seconds_total", "Seconds.", &[("cpu", "0"), ("mode", "idle")], 12.5);
    s.gauge("node_uname_info", "Info.", &[("version", "#1 \"SMP\"\n")], 1.0);
    s.add("node_netstat_Tcp_CurrEstab", "Statistic.", Kind::Untyped, &[], 3.0);
    let mut text = String::new();
    s.render(&mut text);
    assert!(
        text.contains("# TYPE node_cpu_seconds_total counter\nnode_cpu_seconds_total{cpu=\"0\",mode=\"idle\"} 12.5\n"),
        "{text}"
    );
    assert!(text.contains("node_uname_info{version=\"#1 \\\"SMP\\\"\\n\"} 1\n"), "{text}");
    assert!(text.contains("# TYPE node_netstat_Tcp_CurrEstab untyped\n"), "{text}");
    let body = s.remote_write(&[("job", "node"), ("instance", "web-1"), ("cpu", "ignored: the series has one")]);
    let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
    let req = WriteRequest::decode(raw.as_slice()).unwrap();
    assert_eq!(req.timeseries.len(), 3);
    let cpu = &req.timeseries[0];
    let names: Vec<&str> = cpu.labels.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["__name__", "cpu", "instance", "job", "mode"], "sorted, the series' own cpu kept");
    assert_eq!(cpu.labels[1].value, "0");
    assert_eq!(cpu.samples[0].value, 12.5);
    assert_eq!(cpu.samples[0].timestamp, 1_700_000_000_123);
    assert_eq!(req.metadata.iter().map(|m| m.r#type).collect::<Vec<_>>(), [1, 2, 0]);
}

#[test]
fn remote_write_bodies_are_the_bytes_prost_writes() {
    use super::sample::{Label, MetricMetadata, Sample, TimeSeries};
    let mut s = Snapshot::new(1_700_000_000_123);
    s.counter("node_cpu_seconds_total", "Seconds.", &[("cpu", "0"), ("mode", "idle")], 12.5);
    s.counter("node_cpu_seconds_total", "Seconds.", &[("cpu", "1"), ("mode", "idle")], 0.0);
    s.gauge("node_uname_info", "", &[("version", ""), ("zone", "\u{e9}t\u{e9}")], f64::NAN);
    s.add("node_netstat_Tcp_CurrEstab", "Statistic.", Kind::Untyped, &[], -3.0);
    let long = "x".repeat(300);
    s.gauge("node_long", &long, &[("a", &long)], 1e300);
    let extra = [("job", "node"), ("instance", ""), ("cpu", "ignored")];
    // The same request built as prost messages, the way a receiver reads it.
    let mut want = WriteRequest { timeseries: Vec::new(), metadata: Vec::new() };
    for f in &s.families {
        want.metadata.push(MetricMetadata {
            r#type: match f.kind {
                Kind::Counter => 1,
                Kind::Gauge => 2,
                Kind::Untyped => 0,
            },
            metric_family_name: f.name.clone(),
            help: f.help.clone(),
            unit: String::new(),
        });
        for (labels, v) in &f.samples {
            let mut ls = vec![Label { name: "__name__".into(), value: f.name.clone() }];
            ls.extend(
                labels.iter().filter(|(_, v)| !v.is_empty()).map(|(k, v)| Label { name: k.clone(), value: v.clone() }),
            );
            for (k, v) in extra {
                if !labels.iter().any(|(n, _)| n == k) && !v.is_empty() {
                    ls.push(Label { name: k.into(), value: v.into() });
                }
            }
            ls.sort_by(|a, b| a.name.cmp(&b.name));
            want.timeseries
                .push(TimeSeries { labels: ls, samples: vec![Sample { value: *v, timestamp: s.timestamp_ms }] });
        }
    }
    let raw = snap::raw::Decoder::new().decompress_vec(&s.remote_write(&extra)).unwrap();
    assert_eq!(raw, want.encode_to_vec());
    let got = WriteRequest::decode(raw.as_slice()).unwrap();
    assert_eq!(got.timeseries.len(), 5);
    assert!(got.timeseries[2].samples[0].value.is_nan());
    assert_eq!(got.timeseries[1].samples[0].value, 0.0);
}

#[test]
fn mounts_are_parsed_with_escapes_and_read_only_flags() {
    let m = parse_mounts("/dev/sda1 /a\\040b\\011c ext4 ro,noatime 0 0\nshort line\n");
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].mountpoint, "/a b\tc");
    assert!(m[0].readonly);
}

#[test]
fn built_in_patterns_compile_and_every_collector_has_a_name() {
    let s = HostSettings::defaults("h");
    assert!(s.fs_mount_exclude.is_match("/proc/sys"));
    assert!(!s.fs_mount_exclude.is_match("/var/lib"));
    assert!(s.disk_exclude.is_match("nvme0n1p1"));
    assert!(!s.disk_exclude.is_match("nvme0n1"));
    assert_eq!(ALL.len(), s.enabled.len());
}

#[test]
fn processes_are_summed_per_entry_and_the_agent_reports_itself() {
    let mut s = HostSettings::defaults("h");
    s.enabled = ["process"].into_iter().collect();
    s.processes.push(super::ProcessSpec {
        service: "gone".into(),
        instance: "i".into(),
        matcher: super::ProcessMatch::Pids(vec![u32::MAX - 1]),
    });
    let snap = Collectors::new(s).collect();
    let me = [("instance", "h"), ("service", "signalbox-agent")];
    assert!(snap.value("process_resident_memory_bytes", &me).unwrap() > 1e6);
    assert!(snap.value("process_threads", &me).unwrap() >= 1.0);
    assert!(snap.value("process_open_fds", &me).unwrap() >= 3.0);
    assert!(snap.value("process_max_fds", &me).unwrap() >= 3.0);
    let gone = [("instance", "i"), ("service", "gone")];
    assert_eq!(snap.value("signalbox_agent_processes_matched", &gone), Some(0.0));
    assert!(snap.value("process_cpu_seconds_total", &gone).is_none());
}

#[test]
fn answers_are_read_as_prometheus_reads_them() {
    use super::push::{PushOutcome, classify};
    use http::{HeaderValue, StatusCode};
    assert_eq!(classify(StatusCode::NO_CONTENT, None, b""), PushOutcome::Stored);
    assert!(
        matches!(classify(StatusCode::BAD_REQUEST, None, b"out of order"), PushOutcome::Refused(e) if e.contains("out of order"))
    );
    assert!(matches!(classify(StatusCode::PAYLOAD_TOO_LARGE, None, b""), PushOutcome::Refused(_)));
    let h = HeaderValue::from_static("7");
    assert_eq!(
        classify(StatusCode::TOO_MANY_REQUESTS, Some(&h), b"busy"),
        PushOutcome::Retry {
            after: Some(std::time::Duration::from_secs(7)),
            error: "429 Too Many Requests: busy".into()
        }
    );
    assert!(matches!(classify(StatusCode::SERVICE_UNAVAILABLE, None, b""), PushOutcome::Retry { after: None, .. }));
    assert!(matches!(classify(StatusCode::UNAUTHORIZED, None, b""), PushOutcome::Retry { .. }));
}

#[test]
fn the_metrics_buffer_survives_a_restart_and_refuses_when_full() {
    use crate::spool::Header;
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("metrics-buffer");
    let header = Header { records: 3, sealed_ns: 1, positions: Vec::new() };
    let spool = crate::spool::open_plain(&dir, 1024 * 1024).unwrap();
    assert!(spool.try_push(&header, &[7u8; 600 * 1024]).unwrap());
    // Full: a second one of that size does not fit, and nothing is written for it.
    assert!(!spool.try_push(&header, &[8u8; 600 * 1024]).unwrap());
    assert!(spool.try_push(&header, b"small").unwrap());
    drop(spool);
    std::fs::write(dir.join("00000000000000000099.batch"), b"torn").unwrap();
    let spool = crate::spool::open_plain(&dir, 1024 * 1024).unwrap();
    assert_eq!(spool.usage().0, 2, "the damaged file is set aside");
    let first = spool.oldest().unwrap().unwrap();
    assert_eq!(first.payload.len(), 600 * 1024);
    spool.remove(first.seq).unwrap();
    assert_eq!(spool.oldest().unwrap().unwrap().payload, b"small");
    assert!(dir.join("00000000000000000099.corrupt").exists());
}

#[test]
fn timex_converts_the_kernel_units_as_node_exporter_does() {
    use super::timex::{KernelClock, STA_NANO, TIME_ERROR, report};
    // Microsecond mode, synchronised: 1.5 ms offset, +10 ppm, PPS at +2 ppm.
    let k = KernelClock {
        state: 0,
        offset: 1500,
        freq: 10 * 65536,
        maxerror: 250_000,
        esterror: 1_000,
        status: 0x1, // STA_PLL
        constant: 7,
        tick: 10_000,
        ppsfreq: 2 * 65536,
        jitter: 40,
        shift: 4,
        stabil: 65536 / 2,
        jitcnt: 3,
        calcnt: 11,
        errcnt: 1,
        stbcnt: 2,
        tai: 37,
    };
    let mut snap = Snapshot::new(0);
    report(&k, &mut snap);
    let v = |n: &str| snap.value(n, &[]).unwrap_or_else(|| panic!("{n} missing"));
    let close = |n: &str, want: f64| assert!((v(n) - want).abs() < 1e-12, "{n}: {} != {want}", v(n));
    close("node_timex_sync_status", 1.0);
    close("node_timex_offset_seconds", 0.0015);
    close("node_timex_frequency_adjustment_ratio", 1.00001);
    close("node_timex_maxerror_seconds", 0.25);
    close("node_timex_estimated_error_seconds", 0.001);
    close("node_timex_status", 1.0);
    close("node_timex_loop_time_constant", 7.0);
    close("node_timex_tick_seconds", 0.01);
    close("node_timex_pps_frequency_hertz", 2e-6);
    close("node_timex_pps_jitter_seconds", 40e-6);
    close("node_timex_pps_shift_seconds", 4.0);
    close("node_timex_pps_stability_hertz", 0.5e-6);
    close("node_timex_pps_jitter_total", 3.0);
    close("node_timex_pps_calibration_total", 11.0);
    close("node_timex_pps_error_total", 1.0);
    close("node_timex_pps_stability_exceeded_total", 2.0);
    close("node_timex_tai_offset_seconds", 37.0);
    assert_eq!(snap.family("node_timex_pps_error_total").unwrap().kind, Kind::Counter);
    assert_eq!(snap.family("node_timex_offset_seconds").unwrap().kind, Kind::Gauge);
    assert_eq!(snap.len(), 17);

    // Nanosecond mode (STA_NANO) changes offset and jitter only; TIME_ERROR means unsynced,
    // and a negative frequency slows the clock.
    let k =
        KernelClock { state: TIME_ERROR, status: STA_NANO | 0x40, offset: -2_000_000, jitter: 500, freq: -65536, ..k };
    let mut snap = Snapshot::new(0);
    report(&k, &mut snap);
    let v = |n: &str| snap.value(n, &[]).unwrap();
    assert_eq!(v("node_timex_sync_status"), 0.0);
    assert!((v("node_timex_offset_seconds") + 0.002).abs() < 1e-12);
    assert!((v("node_timex_pps_jitter_seconds") - 500e-9).abs() < 1e-15);
    assert!((v("node_timex_frequency_adjustment_ratio") - 0.999999).abs() < 1e-12);
    assert!((v("node_timex_maxerror_seconds") - 0.25).abs() < 1e-12, "maxerror is always µs");
    assert_eq!(v("node_timex_status"), (STA_NANO | 0x40) as f64);
}

#[test]
fn timex_reads_this_machines_kernel_clock() {
    let k = super::timex::read_kernel_clock().expect("adjtimex(2) with modes 0 needs no privilege");
    // The kernel's tick is 1/HZ (HZ is 100 to 1000), and maxerror is capped at 16 s.
    assert!((1_000..=10_000).contains(&k.tick), "tick {} µs", k.tick);
    assert!((0..=16_000_000).contains(&k.maxerror), "maxerror {} µs", k.maxerror);
    assert!((0..=5).contains(&k.state), "state {}", k.state);
    // Reading changes nothing: a second reading has the same status bits and time constant.
    let again = super::timex::read_kernel_clock().unwrap();
    assert_eq!((again.status, again.constant, again.tick), (k.status, k.constant, k.tick));
}

/// The workspace's `unsafe_code` lint is `deny` for one exception, the read-only adjtimex(2)
/// call in host/timex.rs: no other source file may allow it.
#[test]
fn only_timex_allows_unsafe_code() {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut found = Vec::new();
    let mut stack = vec![crates.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if p.is_dir() && name != "target" && !name.starts_with('.') && name != "node_modules" {
                stack.push(p);
            } else if name.ends_with(".rs") {
                let text = std::fs::read_to_string(&p).unwrap();
                let needle = ["allow(", "unsafe_code)"].concat();
                let needle2 = ["expect(", "unsafe_code)"].concat();
                if text.contains(&needle) || text.contains(&needle2) {
                    found.push(p.strip_prefix(crates).unwrap().to_string_lossy().into_owned());
                }
            }
        }
    }
    assert_eq!(found, ["agent/src/host/timex.rs"], "files that allow unsafe code");
    let timex = std::fs::read_to_string(crates.join("agent/src/host/timex.rs")).unwrap();
    assert_eq!(timex.matches("unsafe {").count(), 1, "one unsafe block in timex.rs");
    let root = std::fs::read_to_string(crates.parent().unwrap().join("Cargo.toml")).unwrap();
    assert!(root.contains("unsafe_code = \"deny\""), "the workspace lint is deny");
}

/// One `SOCK_DIAG_BY_FAMILY` message: a socket in `state` with the given queues.
fn diag_message(state: u8, rqueue: u32, wqueue: u32) -> Vec<u8> {
    let mut m = vec![0u8; 16 + 72];
    m[0..4].copy_from_slice(&(16u32 + 72).to_ne_bytes());
    m[4..6].copy_from_slice(&20u16.to_ne_bytes());
    m[16] = libc::AF_INET as u8;
    m[17] = state;
    m[16 + 56..16 + 60].copy_from_slice(&rqueue.to_ne_bytes());
    m[16 + 60..16 + 64].copy_from_slice(&wqueue.to_ne_bytes());
    m
}

#[test]
fn tcpstat_counts_states_and_queues_of_a_netlink_dump() {
    use super::tcpstat::{TcpStats, parse, report};
    let mut stats = TcpStats::default();
    let mut d = [diag_message(1, 10, 20), diag_message(1, 0, 5), diag_message(10, 3, 4096)].concat();
    assert!(!parse(&d, &mut stats).unwrap(), "no NLMSG_DONE yet");
    // The end of the dump, after one socket in an unknown state (counted nowhere).
    d = diag_message(13, 0, 0);
    let mut done = vec![0u8; 20];
    done[0..4].copy_from_slice(&20u32.to_ne_bytes());
    done[4..6].copy_from_slice(&3u16.to_ne_bytes());
    d.extend_from_slice(&done);
    assert!(parse(&d, &mut stats).unwrap());
    assert_eq!(stats.by_state[1], 2);
    assert_eq!(stats.by_state[10], 1);
    assert_eq!((stats.rx_queued, stats.tx_queued), (13, 4121));
    let mut snap = Snapshot::new(0);
    report(&stats, &mut snap);
    let v = |s: &str| snap.value("node_tcp_connection_states", &[("state", s)]);
    assert_eq!(v("established"), Some(2.0));
    assert_eq!(v("listen"), Some(1.0));
    assert_eq!(v("time_wait"), None, "states without sockets are left out, as node_exporter does");
    assert_eq!(v("rx_queued_bytes"), Some(13.0));
    assert_eq!(v("tx_queued_bytes"), Some(4121.0));

    // An error answer names the errno; a length past the datagram is refused, not read.
    let mut e = vec![0u8; 20];
    e[0..4].copy_from_slice(&20u32.to_ne_bytes());
    e[4..6].copy_from_slice(&2u16.to_ne_bytes());
    e[16..20].copy_from_slice(&(-libc::EPERM).to_ne_bytes());
    let err = parse(&e, &mut TcpStats::default()).unwrap_err();
    assert!(err.contains("refused") && err.contains("ermitted"), "{err}");
    let mut bad = diag_message(1, 0, 0);
    bad[0..4].copy_from_slice(&1000u32.to_ne_bytes());
    assert!(parse(&bad, &mut TcpStats::default()).unwrap_err().contains("1000 bytes"));
}

#[test]
fn tcpstat_sees_a_listener_and_a_connection_of_this_test() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (_server, _) = listener.accept().unwrap();
    let mut s = HostSettings::defaults("h");
    s.enabled = ["tcpstat"].into_iter().collect();
    let snap = Collectors::new(s).collect();
    assert_eq!(snap.value("node_scrape_collector_success", &[("collector", "tcpstat")]), Some(1.0));
    let v = |st: &str| snap.value("node_tcp_connection_states", &[("state", st)]).unwrap_or(0.0);
    assert!(v("listen") >= 1.0, "listen {}", v("listen"));
    assert!(v("established") >= 2.0, "established {}", v("established"));
    drop(client);
}

/// Discovery over a procfs made of directories and symlinks: `fd` links into a real log
/// file match it by identity, other links (sockets, devices, missing tables) do not; the
/// budget spreads a rescan over passes; new processes, late opens and exits are noticed.
#[test]
fn log_writers_are_found_by_their_open_descriptors() {
    use super::logproc::{Discovery, TailedFiles};
    use crate::record::Labels;
    use std::os::unix::fs::{MetadataExt, symlink};
    use std::sync::Arc;
    let d = tempfile::tempdir().unwrap();
    let log = d.path().join("app.log");
    std::fs::write(&log, "line\n").unwrap();
    let other = d.path().join("other.log");
    std::fs::write(&other, "x\n").unwrap();
    let proc = d.path().join("proc");
    let fd = |pid: u32, n: u32, target: &Path| {
        let dir = proc.join(pid.to_string()).join("fd");
        std::fs::create_dir_all(&dir).unwrap();
        symlink(target, dir.join(n.to_string())).unwrap();
    };
    // 100 writes the log (after a socket and another file); 101 holds other files only;
    // 102 has no descriptor table (exited mid-read, or another user's).
    fd(100, 0, Path::new("socket:[4242]"));
    fd(100, 1, &other);
    fd(100, 7, &log);
    fd(101, 0, Path::new("/dev/null"));
    fd(101, 1, &other);
    std::fs::create_dir_all(proc.join("102")).unwrap();
    std::fs::create_dir_all(proc.join("sys")).unwrap();
    let meta = std::fs::metadata(&log).unwrap();
    let labels = Arc::new(Labels {
        service: "orders".into(),
        instance: "orders-1".into(),
        host: "h".into(),
        static_labels: Vec::new(),
    });
    let tailed = TailedFiles::default();
    let mut disc = Discovery::new(tailed.clone());
    assert!(disc.pass(&proc, 1000).is_empty(), "nothing followed: nothing found");
    tailed.publish([((meta.dev(), meta.ino()), labels.clone())].into_iter().collect());
    let want = |pids: &[u32]| vec![("orders".to_owned(), "orders-1".to_owned(), pids.to_vec())];
    // A budget of 1 descriptor: 100 is examined to its end (its third is the log), then the
    // pass stops; 101 and 102 wait for the next passes.
    assert_eq!(disc.pass(&proc, 1), want(&[100]));
    assert_eq!(disc.pending(), 2);
    assert_eq!(disc.pass(&proc, 1), want(&[100]), "100 re-examined, then the budget is spent");
    assert_eq!(disc.pending(), 2);
    assert_eq!(disc.pass(&proc, 1000), want(&[100]));
    assert_eq!(disc.pending(), 0);
    // A new process writing the log, and one that opens it a pass after it appeared.
    fd(103, 4, &log);
    fd(104, 0, &other);
    assert_eq!(disc.pass(&proc, 1000), want(&[100, 103]));
    fd(104, 9, &log);
    assert_eq!(disc.pass(&proc, 1000), want(&[100, 103, 104]));
    // A process that closed the log, and one that exited.
    std::fs::remove_file(proc.join("103/fd/4")).unwrap();
    std::fs::remove_dir_all(proc.join("100")).unwrap();
    assert_eq!(disc.pass(&proc, 1000), want(&[104]));
    // The followed set changes: the other file is now followed too, under another service.
    let meta2 = std::fs::metadata(&other).unwrap();
    let billing = Arc::new(Labels {
        service: "billing".into(),
        instance: "b-1".into(),
        host: "h".into(),
        static_labels: Vec::new(),
    });
    tailed.publish([((meta.dev(), meta.ino()), labels), ((meta2.dev(), meta2.ino()), billing)].into_iter().collect());
    assert_eq!(
        disc.pass(&proc, 1000),
        vec![("billing".to_owned(), "b-1".to_owned(), vec![101, 104])],
        "104 holds `other` at a lower descriptor than the log: counted once, there"
    );
    tailed.publish(Default::default());
    assert!(disc.pass(&proc, 1000).is_empty());
}

/// Processes found writing a source's logs join a configured entry with the same labels
/// (one series each, pids counted once) and make their own entry otherwise.
#[test]
fn found_log_writers_merge_with_configured_entries() {
    let mut s = HostSettings::defaults("h");
    s.enabled = ["process"].into_iter().collect();
    let me = std::process::id();
    s.processes.push(super::ProcessSpec {
        service: "orders".into(),
        instance: "o-1".into(),
        matcher: super::ProcessMatch::Pids(vec![me]),
    });
    let mut snap = Snapshot::new(0);
    let found = vec![
        ("orders".to_owned(), "o-1".to_owned(), vec![me]),
        ("billing".to_owned(), "b-1".to_owned(), vec![me, u32::MAX - 1]),
    ];
    let watched = super::process::collect(&s, 0.0, found, &mut snap);
    assert_eq!(watched.len(), 3, "agent, orders, billing");
    for l in [[("instance", "o-1"), ("service", "orders")], [("instance", "b-1"), ("service", "billing")]] {
        assert_eq!(snap.value("signalbox_agent_processes_matched", &l), Some(1.0), "{l:?}");
        assert!(snap.value("process_threads", &l).unwrap() >= 1.0);
    }
    let mut text = String::new();
    snap.render(&mut text);
    assert_eq!(text.matches("process_threads{instance=\"o-1\",service=\"orders\"}").count(), 1, "{text}");
}
