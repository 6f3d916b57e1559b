//! node_exporter's `netdev` collector: `/proc/net/dev` per interface not excluded (`lo` by
//! default) as `node_network_{receive,transmit}_*_total{device}`, plus
//! `node_network_receive_nohandler_total` from `/sys/class/net/DEV/statistics`.

use super::Snapshot;
use super::collect::{Cache, HostSettings};

const RECEIVE: [&str; 8] = ["bytes", "packets", "errs", "drop", "fifo", "frame", "compressed", "multicast"];
const TRANSMIT: [&str; 8] = ["bytes", "packets", "errs", "drop", "fifo", "colls", "carrier", "compressed"];

pub fn collect(s: &HostSettings, _cache: &mut Cache, out: &mut Snapshot) -> Result<(), String> {
    let text = super::read(&s.proc_path.join("net/dev"))?;
    for line in text.lines().skip(2) {
        let Some((dev, rest)) = line.split_once(':') else { continue };
        let dev = dev.trim();
        if s.netdev_exclude.is_match(dev) {
            continue;
        }
        let v: Vec<f64> = rest.split_whitespace().map(|x| x.parse::<f64>().unwrap_or(0.0)).collect();
        if v.len() < 16 {
            continue;
        }
        for (i, field) in RECEIVE.iter().enumerate() {
            let name = format!("node_network_receive_{field}_total");
            out.counter(&name, &format!("Network device statistic receive_{field}."), &[("device", dev)], v[i]);
        }
        for (i, field) in TRANSMIT.iter().enumerate() {
            let name = format!("node_network_transmit_{field}_total");
            out.counter(&name, &format!("Network device statistic transmit_{field}."), &[("device", dev)], v[8 + i]);
        }
        let nohandler = s.sys_path.join("class/net").join(dev).join("statistics/rx_nohandler");
        if let Ok(t) = std::fs::read_to_string(nohandler)
            && let Ok(n) = t.trim().parse::<f64>()
        {
            out.counter(
                "node_network_receive_nohandler_total",
                "Network device statistic receive_nohandler.",
                &[("device", dev)],
                n,
            );
        }
    }
    Ok(())
}
