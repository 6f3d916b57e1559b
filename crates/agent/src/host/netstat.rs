//! node_exporter's `netstat` collector (the `/proc/net/netstat`, `/proc/net/snmp` and
//! `/proc/net/snmp6` fields its default `--collector.netstat.fields` selects, such as
//! `node_netstat_Tcp_CurrEstab`, untyped) and `sockstat` collector (`/proc/net/sockstat` and
//! `sockstat6`: sockets in use per protocol, TIME_WAIT and orphaned TCP sockets, memory).
//! node_exporter's `tcpstat` collector (connections per state) is off by default, so it is
//! not reported; established connections come from `Tcp_CurrEstab`.

use super::collect::{Cache, HostSettings};
use super::{Kind, Snapshot};

pub fn collect_netstat(s: &HostSettings, cache: &mut Cache, out: &mut Snapshot) -> Result<(), String> {
    let mut fields: Vec<(String, f64)> = Vec::new();
    for file in ["net/netstat", "net/snmp"] {
        let text = super::read(&s.proc_path.join(file))?;
        // Pairs of lines: `Proto: Name Name...` then `Proto: value value...`.
        let lines: Vec<&str> = text.lines().collect();
        for pair in lines.chunks(2) {
            let [names, values] = pair else { continue };
            let (Some((proto, names)), Some((_, values))) = (names.split_once(':'), values.split_once(':')) else {
                continue;
            };
            for (n, v) in names.split_whitespace().zip(values.split_whitespace()) {
                if let Ok(v) = v.parse::<f64>() {
                    fields.push((format!("{proto}_{n}"), v));
                }
            }
        }
    }
    // IPv6 may be disabled: no snmp6 is not an error.
    if let Ok(text) = std::fs::read_to_string(s.proc_path.join("net/snmp6")) {
        for line in text.lines() {
            let mut f = line.split_whitespace();
            let (Some(key), Some(v)) = (f.next(), f.next()) else { continue };
            let Some(i) = key.find('6') else { continue };
            if let Ok(v) = v.parse::<f64>() {
                fields.push((format!("{}_{}", &key[..=i], &key[i + 1..]), v));
            }
        }
    }
    for (key, v) in fields {
        if super::collect::keep_field(&mut cache.netstat_keep, &s.netstat_fields, &key) {
            let (proto, name) = key.split_once('_').unwrap_or((&key, ""));
            out.add(&format!("node_netstat_{key}"), &format!("Statistic {proto}{name}."), Kind::Untyped, &[], v);
        }
    }
    Ok(())
}

pub fn collect_sockstat(s: &HostSettings, _cache: &mut Cache, out: &mut Snapshot) -> Result<(), String> {
    let page = rustix::param::page_size() as f64;
    let text = super::read(&s.proc_path.join("net/sockstat"))?;
    let six = std::fs::read_to_string(s.proc_path.join("net/sockstat6")).unwrap_or_default();
    for line in text.lines().chain(six.lines()) {
        let Some((proto, rest)) = line.split_once(':') else { continue };
        let f: Vec<&str> = rest.split_whitespace().collect();
        for kv in f.chunks(2) {
            let [k, v] = kv else { continue };
            let Ok(v) = v.parse::<f64>() else { continue };
            let name = format!("node_sockstat_{proto}_{k}");
            out.gauge(&name, &format!("Number of {proto} sockets in state {k}."), &[], v);
            if *k == "mem" && (proto == "TCP" || proto == "UDP") {
                out.gauge(
                    &format!("{name}_bytes"),
                    &format!("Number of {proto} sockets in state mem_bytes."),
                    &[],
                    v * page,
                );
            }
        }
    }
    Ok(())
}
