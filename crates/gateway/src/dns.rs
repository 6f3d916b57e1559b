//! DNS as a source of endpoints: A/AAAA records of a name (with a configured port) or SRV
//! records (each target's port and addresses), re-resolved when the shortest TTL expires.
//!
//! A small stub resolver over UDP (falling back to TCP for truncated answers) against the
//! configured name server or the first one in `/etc/resolv.conf`. A failed lookup keeps
//! the last known endpoints and retries with backoff: a DNS hiccup must not empty a load
//! balancer.

use signalbox_core::discovery::{EndpointInfo, EndpointSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

const TYPE_A: u16 = 1;
const TYPE_AAAA: u16 = 28;
const TYPE_SRV: u16 = 33;
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// What to resolve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// A and AAAA records of `name`, each with `port`.
    Host { name: String, port: u16 },
    /// SRV records of `name` (like `_http._tcp.orders.internal`).
    Srv { name: String },
}

/// Resolver settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsSettings {
    pub lookup: Lookup,
    pub nameserver: SocketAddr,
    pub min_ttl: Duration,
    pub max_ttl: Duration,
}

/// The first `nameserver` of `/etc/resolv.conf`, port 53.
pub fn system_nameserver() -> Option<SocketAddr> {
    let text = std::fs::read_to_string("/etc/resolv.conf").ok()?;
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|a| a.trim().parse::<IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .next()
}

/// A resolved record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    Addr(IpAddr),
    Srv { priority: u16, weight: u16, port: u16, target: String },
}

/// A record with its owner name and TTL.
pub type Answer = (String, Record, u32);

/// Why a lookup failed.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("no answer from {0} within {QUERY_TIMEOUT:?}")]
    Timeout(SocketAddr),
    #[error("network error: {0}")]
    Io(#[from] std::io::Error),
    #[error("malformed DNS message")]
    Malformed,
    #[error("server answered with rcode {0}")]
    Rcode(u8),
}

/// Encodes a query for `name` and `qtype`.
pub fn encode_query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut q = Vec::with_capacity(32 + name.len());
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&0x0100u16.to_be_bytes()); // recursion desired
    q.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // one question
    for label in name.trim_end_matches('.').split('.').filter(|l| !l.is_empty()) {
        let l = &label.as_bytes()[..label.len().min(63)];
        q.push(l.len() as u8);
        q.extend_from_slice(l);
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes()); // class IN
    q
}

/// Reads a possibly compressed name at `pos`; returns it and the position after it.
fn read_name(msg: &[u8], mut pos: usize) -> Result<(String, usize), DnsError> {
    let mut name = String::new();
    let mut end = None;
    for _ in 0..128 {
        let len = *msg.get(pos).ok_or(DnsError::Malformed)? as usize;
        if len == 0 {
            return Ok((name, end.unwrap_or(pos + 1)));
        }
        if len & 0xC0 == 0xC0 {
            let lo = *msg.get(pos + 1).ok_or(DnsError::Malformed)? as usize;
            end.get_or_insert(pos + 2);
            pos = ((len & 0x3F) << 8) | lo;
            continue;
        }
        let label = msg.get(pos + 1..pos + 1 + len).ok_or(DnsError::Malformed)?;
        if !name.is_empty() {
            name.push('.');
        }
        name.push_str(&String::from_utf8_lossy(label));
        pos += 1 + len;
    }
    Err(DnsError::Malformed)
}

fn u16_at(msg: &[u8], pos: usize) -> Result<u16, DnsError> {
    msg.get(pos..pos + 2).map(|b| u16::from_be_bytes([b[0], b[1]])).ok_or(DnsError::Malformed)
}

/// Decodes the answer and additional sections: records with their TTLs (additional A/AAAA
/// records are returned keyed by owner name so SRV targets resolve without another query).
pub fn decode(msg: &[u8], id: u16) -> Result<(bool, Vec<Answer>), DnsError> {
    if msg.len() < 12 || u16_at(msg, 0)? != id {
        return Err(DnsError::Malformed);
    }
    let flags = u16_at(msg, 2)?;
    let truncated = flags & 0x0200 != 0;
    let rcode = (flags & 0x000F) as u8;
    if rcode != 0 && rcode != 3 {
        return Err(DnsError::Rcode(rcode));
    }
    let (qd, an, ns, ar) = (u16_at(msg, 4)?, u16_at(msg, 6)?, u16_at(msg, 8)?, u16_at(msg, 10)?);
    let mut pos = 12;
    for _ in 0..qd {
        pos = read_name(msg, pos)?.1 + 4;
    }
    let mut out = Vec::new();
    for i in 0..(an as usize + ns as usize + ar as usize) {
        let (owner, p) = read_name(msg, pos)?;
        let rtype = u16_at(msg, p)?;
        let ttl =
            msg.get(p + 4..p + 8).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]])).ok_or(DnsError::Malformed)?;
        let rdlen = u16_at(msg, p + 8)? as usize;
        let rdata = p + 10;
        let data = msg.get(rdata..rdata + rdlen).ok_or(DnsError::Malformed)?;
        let authority = i >= an as usize && i < an as usize + ns as usize;
        if !authority {
            match rtype {
                TYPE_A if rdlen == 4 => {
                    out.push((owner, Record::Addr(IpAddr::V4(Ipv4Addr::new(data[0], data[1], data[2], data[3]))), ttl))
                }
                TYPE_AAAA if rdlen == 16 => {
                    let mut b = [0u8; 16];
                    b.copy_from_slice(data);
                    out.push((owner, Record::Addr(IpAddr::V6(Ipv6Addr::from(b))), ttl));
                }
                TYPE_SRV if rdlen >= 7 => {
                    let (target, _) = read_name(msg, rdata + 6)?;
                    out.push((
                        owner,
                        Record::Srv {
                            priority: u16_at(msg, rdata)?,
                            weight: u16_at(msg, rdata + 2)?,
                            port: u16_at(msg, rdata + 4)?,
                            target,
                        },
                        ttl,
                    ));
                }
                _ => {}
            }
        }
        pos = rdata + rdlen;
    }
    Ok((truncated, out))
}

/// One query to `server`, over UDP, then TCP if the answer was truncated.
pub async fn query(server: SocketAddr, name: &str, qtype: u16) -> Result<Vec<Answer>, DnsError> {
    let id = fastrand::u16(..);
    let q = encode_query(id, name, qtype);
    let bind: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0".parse().map_err(|_| DnsError::Malformed)?
    } else {
        "[::]:0".parse().map_err(|_| DnsError::Malformed)?
    };
    let sock = tokio::net::UdpSocket::bind(bind).await?;
    sock.connect(server).await?;
    sock.send(&q).await?;
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(QUERY_TIMEOUT, sock.recv(&mut buf)).await.map_err(|_| DnsError::Timeout(server))??;
    let (truncated, records) = decode(&buf[..n], id)?;
    if !truncated {
        return Ok(records);
    }
    let tcp = async {
        let mut s = tokio::net::TcpStream::connect(server).await?;
        let mut framed = (q.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&q);
        s.write_all(&framed).await?;
        let len = s.read_u16().await? as usize;
        let mut msg = vec![0u8; len];
        s.read_exact(&mut msg).await?;
        Ok::<_, DnsError>(msg)
    };
    let msg = tokio::time::timeout(QUERY_TIMEOUT, tcp).await.map_err(|_| DnsError::Timeout(server))??;
    Ok(decode(&msg, id)?.1)
}

/// A and AAAA records of `name`. One family failing is fine (some servers refuse AAAA
/// queries for names they hold only A records for); both failing is an error.
async fn addresses(server: SocketAddr, name: &str) -> Result<Vec<(IpAddr, u32)>, DnsError> {
    let (a, aaaa) = tokio::join!(query(server, name, TYPE_A), query(server, name, TYPE_AAAA));
    if let (Err(e), Err(_)) = (&a, &aaaa) {
        return Err(DnsError::Io(std::io::Error::other(e.to_string())));
    }
    Ok(a.into_iter()
        .chain(aaaa)
        .flatten()
        .filter_map(|(_, r, t)| if let Record::Addr(ip) = r { Some((ip, t)) } else { None })
        .collect())
}

fn join(ip: IpAddr, port: u16) -> String {
    SocketAddr::new(ip, port).to_string()
}

/// Resolves once: the endpoints and the TTL to wait before the next lookup.
pub async fn resolve(s: &DnsSettings) -> Result<(Vec<EndpointInfo>, Duration), DnsError> {
    let mut min_ttl = u32::MAX;
    let mut eps = Vec::new();
    match &s.lookup {
        Lookup::Host { name, port } => {
            for (ip, ttl) in addresses(s.nameserver, name).await? {
                min_ttl = min_ttl.min(ttl);
                eps.push(EndpointInfo::new(join(ip, *port)));
            }
        }
        Lookup::Srv { name } => {
            let records = query(s.nameserver, name, TYPE_SRV).await?;
            let srvs: Vec<(u16, u16, u16, String, u32)> = records
                .iter()
                .filter_map(|(_, r, ttl)| match r {
                    Record::Srv { priority, weight, port, target } => {
                        Some((*priority, *weight, *port, target.clone(), *ttl))
                    }
                    _ => None,
                })
                .collect();
            // Only the best (lowest) priority is used; the others are fallbacks that DNS
            // clients try when the best are gone.
            let best = srvs.iter().map(|s| s.0).min();
            for (priority, weight, port, target, ttl) in srvs.iter().filter(|s| Some(s.0) == best) {
                let _ = priority;
                min_ttl = min_ttl.min(*ttl);
                let mut addrs: Vec<(IpAddr, u32)> = records
                    .iter()
                    .filter(|(owner, _, _)| owner.eq_ignore_ascii_case(target))
                    .filter_map(|(_, r, t)| if let Record::Addr(ip) = r { Some((*ip, *t)) } else { None })
                    .collect();
                if addrs.is_empty() {
                    addrs = addresses(s.nameserver, target).await?;
                }
                for (ip, t) in addrs {
                    min_ttl = min_ttl.min(t);
                    let mut e = EndpointInfo::new(join(ip, *port));
                    e.id = format!("{target}:{port}");
                    e.weight = (*weight).max(1) as u32;
                    eps.push(e);
                }
            }
        }
    }
    eps.sort_by(|a, b| a.address.cmp(&b.address));
    eps.dedup_by(|a, b| a.address == b.address);
    let ttl = if min_ttl == u32::MAX { s.min_ttl } else { Duration::from_secs(min_ttl as u64) };
    Ok((eps, ttl.clamp(s.min_ttl, s.max_ttl)))
}

/// Starts following `s`: the channel holds the current endpoints (empty until the first
/// answer) and is kept current until every receiver is gone.
pub fn follow(s: DnsSettings, service: String) -> watch::Receiver<EndpointSet> {
    let (tx, rx) = watch::channel(Arc::new(Vec::new()));
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(200);
        loop {
            let wait = match resolve(&s).await {
                Ok((eps, ttl)) => {
                    backoff = Duration::from_millis(200);
                    tx.send_if_modified(|cur| {
                        if **cur != eps {
                            tracing::info!(service, endpoints = eps.len(), "DNS endpoints changed");
                            *cur = Arc::new(eps);
                            true
                        } else {
                            false
                        }
                    });
                    ttl
                }
                Err(e) => {
                    tracing::warn!(service, error = %e, "DNS lookup failed; keeping the last known endpoints");
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                    backoff
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = tx.closed() => return,
            }
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_compressed_answers() {
        // A response to a query for a.example (A), with the answer's name compressed.
        let mut m = encode_query(7, "a.example", TYPE_A);
        m[2] = 0x81;
        m[3] = 0x80; // response, recursion available
        m[7] = 1; // one answer
        m.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4, 10, 0, 0, 7]);
        let (tc, r) = decode(&m, 7).unwrap();
        assert!(!tc);
        assert_eq!(r, vec![("a.example".to_string(), Record::Addr("10.0.0.7".parse().unwrap()), 30)]);
        assert!(decode(&m, 8).is_err(), "id mismatch");
        assert!(decode(&m[..20], 7).is_err(), "truncated message");
        let mut loopy = m.clone();
        let at = loopy.len() - 16;
        loopy[at] = 0xC0;
        loopy[at + 1] = at as u8;
        assert!(decode(&loopy, 7).is_err(), "a pointer loop is malformed, not a hang");
    }
}
