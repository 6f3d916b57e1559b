//! node_exporter's `tcpstat` collector: `node_tcp_connection_states{state}`, the number of
//! IPv4 and IPv6 TCP sockets in each state (only the states that have any), and, as two more
//! `state` values, the bytes queued on them: `rx_queued_bytes` and `tx_queued_bytes`.
//!
//! Read as node_exporter 1.5 reads it, with a sock_diag netlink dump (rustix's safe socket
//! calls) rather than from `/proc/net/tcp`: the dump is binary rather than text to parse,
//! and its queue figures are the ones node_exporter sums (for a listening socket the kernel
//! reports the accept backlog and its limit, a limit `/proc/net/tcp` does not show). node_exporter leaves this collector off by default
//! because of its cost on machines with very many sockets; the agent runs it by default,
//! as the issue asks for connection states, and `collectors` can leave it out.

use super::Snapshot;
use super::collect::{Cache, HostSettings};
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType, netlink};
use std::time::{Duration, Instant};

/// TCP states by their kernel number (1 = `TCP_ESTABLISHED` ... 11 = `TCP_CLOSING`), named
/// as node_exporter names them.
const STATES: [&str; 12] = [
    "",
    "established",
    "syn_sent",
    "syn_recv",
    "fin_wait1",
    "fin_wait2",
    "time_wait",
    "close",
    "close_wait",
    "last_ack",
    "listen",
    "closing",
];

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const IPPROTO_TCP: u8 = 6;
/// Length of `struct nlmsghdr`.
const HEADER: usize = 16;
/// Length of `struct inet_diag_msg` up to and including `idiag_wqueue`.
const DIAG_MSG_MIN: usize = 64;
/// Longest a dump may take (each receive waits at most this long too).
const DUMP_TIMEOUT: Duration = Duration::from_secs(5);

/// Socket counts by state number and the queued bytes, summed over the families dumped.
#[derive(Debug, Default, PartialEq)]
pub struct TcpStats {
    pub by_state: [u64; STATES.len()],
    pub rx_queued: u64,
    pub tx_queued: u64,
}

pub fn collect(s: &HostSettings, _cache: &mut Cache, out: &mut Snapshot) -> Result<(), String> {
    let mut stats = TcpStats::default();
    dump(AddressFamily::INET, &mut stats)?;
    // IPv6 only where the kernel has it (node_exporter's test too).
    if s.proc_path.join("net/tcp6").exists() {
        dump(AddressFamily::INET6, &mut stats)?;
    }
    report(&stats, out);
    Ok(())
}

pub fn report(stats: &TcpStats, out: &mut Snapshot) {
    const HELP: &str = "TCP sockets in each state, and the bytes queued on them.";
    for (n, name) in STATES.iter().enumerate().skip(1) {
        if stats.by_state[n] > 0 {
            out.gauge("node_tcp_connection_states", HELP, &[("state", name)], stats.by_state[n] as f64);
        }
    }
    out.gauge("node_tcp_connection_states", HELP, &[("state", "rx_queued_bytes")], stats.rx_queued as f64);
    out.gauge("node_tcp_connection_states", HELP, &[("state", "tx_queued_bytes")], stats.tx_queued as f64);
}

/// The dump request: `struct nlmsghdr` then `struct inet_diag_req_v2` asking for every TCP
/// socket of `family` in states 0 to 11 and no extensions.
fn request(family: AddressFamily) -> [u8; HEADER + 56] {
    let mut r = [0u8; HEADER + 56];
    r[0..4].copy_from_slice(&((HEADER + 56) as u32).to_ne_bytes());
    r[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    r[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    r[8..12].copy_from_slice(&1u32.to_ne_bytes()); // sequence number
    r[HEADER] = family.as_raw() as u8;
    r[HEADER + 1] = IPPROTO_TCP;
    r[HEADER + 4..HEADER + 8].copy_from_slice(&0xfffu32.to_ne_bytes()); // states
    r
}

fn dump(family: AddressFamily, stats: &mut TcpStats) -> Result<(), String> {
    let err = |what: &str, e: rustix::io::Errno| format!("sock_diag netlink {what}: {e}");
    let fd = rustix::net::socket_with(
        AddressFamily::NETLINK,
        SocketType::DGRAM,
        SocketFlags::CLOEXEC,
        Some(netlink::SOCK_DIAG),
    )
    .map_err(|e| err("socket", e))?;
    rustix::net::sockopt::set_socket_timeout(&fd, rustix::net::sockopt::Timeout::Recv, Some(DUMP_TIMEOUT))
        .map_err(|e| err("timeout", e))?;
    rustix::net::sendto(&fd, &request(family), SendFlags::empty(), &netlink::SocketAddrNetlink::new(0, 0))
        .map_err(|e| err("send", e))?;
    let deadline = Instant::now() + DUMP_TIMEOUT;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if Instant::now() > deadline {
            return Err(format!("sock_diag netlink dump took more than {DUMP_TIMEOUT:?}"));
        }
        let (n, _) = rustix::net::recv(&fd, &mut buf[..], RecvFlags::empty()).map_err(|e| err("receive", e))?;
        if n == 0 {
            return Err("sock_diag netlink dump ended without NLMSG_DONE".into());
        }
        if parse(&buf[..n], stats)? {
            return Ok(());
        }
    }
}

/// Adds one datagram of the dump to `stats`; true when it holds the dump's end.
pub fn parse(mut data: &[u8], stats: &mut TcpStats) -> Result<bool, String> {
    let u16_at = |d: &[u8], i: usize| u16::from_ne_bytes([d[i], d[i + 1]]);
    let u32_at = |d: &[u8], i: usize| u32::from_ne_bytes([d[i], d[i + 1], d[i + 2], d[i + 3]]);
    while data.len() >= HEADER {
        let len = u32_at(data, 0) as usize;
        if len < HEADER || len > data.len() {
            return Err(format!("sock_diag netlink message of {len} bytes in {} received", data.len()));
        }
        let body = &data[HEADER..len];
        match u16_at(data, 4) {
            NLMSG_DONE => return Ok(true),
            NLMSG_ERROR => {
                let code = if body.len() >= 4 { i32::from_ne_bytes([body[0], body[1], body[2], body[3]]) } else { 0 };
                let e = std::io::Error::from_raw_os_error(code.saturating_neg());
                return Err(format!("sock_diag netlink dump refused: {e}"));
            }
            SOCK_DIAG_BY_FAMILY if body.len() >= DIAG_MSG_MIN => {
                let state = body[1] as usize;
                if let Some(count) = stats.by_state.get_mut(state).filter(|_| state > 0) {
                    *count += 1;
                }
                stats.rx_queued += u64::from(u32_at(body, 56));
                stats.tx_queued += u64::from(u32_at(body, 60));
            }
            _ => {}
        }
        // Messages are aligned to 4 bytes.
        data = &data[len.next_multiple_of(4).min(data.len())..];
    }
    Ok(false)
}
