//! node_exporter's `diskstats` collector: `/proc/diskstats` per block device not excluded
//! (`ram*`, `loop*`, partitions by default) as `node_disk_*` counters, and `node_disk_info`
//! with the udev properties node_exporter labels it with.

use super::collect::{Cache, HostSettings};
use super::{Kind, Snapshot};

const SECTOR: f64 = 512.0;

/// (field index after the device name, name, help, scale, kind).
const FIELDS: [(usize, &str, &str, f64, Kind); 17] = [
    (0, "node_disk_reads_completed_total", "The total number of reads completed successfully.", 1.0, Kind::Counter),
    (1, "node_disk_reads_merged_total", "The total number of reads merged.", 1.0, Kind::Counter),
    (2, "node_disk_read_bytes_total", "The total number of bytes read successfully.", SECTOR, Kind::Counter),
    (3, "node_disk_read_time_seconds_total", "The total number of seconds spent by all reads.", 0.001, Kind::Counter),
    (4, "node_disk_writes_completed_total", "The total number of writes completed successfully.", 1.0, Kind::Counter),
    (5, "node_disk_writes_merged_total", "The number of writes merged.", 1.0, Kind::Counter),
    (6, "node_disk_written_bytes_total", "The total number of bytes written successfully.", SECTOR, Kind::Counter),
    (
        7,
        "node_disk_write_time_seconds_total",
        "This is the total number of seconds spent by all writes.",
        0.001,
        Kind::Counter,
    ),
    (8, "node_disk_io_now", "The number of I/Os currently in progress.", 1.0, Kind::Gauge),
    (9, "node_disk_io_time_seconds_total", "Total seconds spent doing I/Os.", 0.001, Kind::Counter),
    (
        10,
        "node_disk_io_time_weighted_seconds_total",
        "The weighted # of seconds spent doing I/Os.",
        0.001,
        Kind::Counter,
    ),
    (
        11,
        "node_disk_discards_completed_total",
        "The total number of discards completed successfully.",
        1.0,
        Kind::Counter,
    ),
    (12, "node_disk_discards_merged_total", "The total number of discards merged.", 1.0, Kind::Counter),
    (
        13,
        "node_disk_discarded_sectors_total",
        "The total number of sectors discarded successfully.",
        1.0,
        Kind::Counter,
    ),
    (
        14,
        "node_disk_discard_time_seconds_total",
        "This is the total number of seconds spent by all discards.",
        0.001,
        Kind::Counter,
    ),
    (
        15,
        "node_disk_flush_requests_total",
        "The total number of flush requests completed successfully",
        1.0,
        Kind::Counter,
    ),
    (
        16,
        "node_disk_flush_requests_time_seconds_total",
        "This is the total number of seconds spent by all flush requests.",
        0.001,
        Kind::Counter,
    ),
];

pub fn collect(s: &HostSettings, cache: &mut Cache, out: &mut Snapshot) -> Result<(), String> {
    let path = s.proc_path.join("diskstats");
    let text = super::read(&path)?;
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 14 {
            continue;
        }
        let (major, minor, device) = (f[0], f[1], f[2]);
        if s.disk_exclude.is_match(device) {
            continue;
        }
        let values: Vec<f64> = f[3..].iter().map(|v| v.parse::<f64>().unwrap_or(0.0)).collect();
        let key = format!("{major}:{minor}");
        if !cache.udev.contains_key(&key) {
            let props = udev_properties(s, major, minor);
            cache.udev.insert(key.clone(), props);
        }
        let info = cache.udev.get(&key).map(Vec::as_slice).unwrap_or_default();
        let get = |k: &str| info.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str()).unwrap_or("");
        out.gauge(
            "node_disk_info",
            "Info of /sys/block/<block_device>.",
            &[
                ("device", device),
                ("major", major),
                ("minor", minor),
                ("model", get("ID_MODEL")),
                ("path", get("ID_PATH")),
                ("revision", get("ID_REVISION")),
                ("serial", get("ID_SERIAL_SHORT")),
                ("wwn", get("ID_WWN")),
            ],
            1.0,
        );
        for (i, name, help, scale, kind) in FIELDS {
            if let Some(v) = values.get(i) {
                out.add(name, help, kind, &[("device", device)], v * scale);
            }
        }
    }
    Ok(())
}

/// `E:KEY=value` lines of the udev database entry of block device `major:minor`.
fn udev_properties(s: &HostSettings, major: &str, minor: &str) -> Vec<(String, String)> {
    let Ok(text) = std::fs::read_to_string(s.udev_data_path.join(format!("b{major}:{minor}"))) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| l.strip_prefix("E:")?.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}
