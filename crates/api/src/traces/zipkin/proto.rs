//! Zipkin's protobuf ingest format (`zipkin.proto3`'s `ListOfSpans`, sent as
//! `application/x-protobuf` by the OpenTelemetry Zipkin protobuf exporters and Brave's
//! protobuf encoder), defined with prost derives (field numbers from zipkin.proto3), and
//! turned into the JSON model's [`ZSpan`] so both formats share one conversion.

use super::{ZAnnotation, ZEndpoint, ZSpan};
use signalbox_core::ids::encode_hex;
use std::net::{Ipv4Addr, Ipv6Addr};

#[derive(Clone, PartialEq, prost::Message)]
pub struct ListOfSpans {
    #[prost(message, repeated, tag = "1")]
    pub spans: Vec<PSpan>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PSpan {
    #[prost(bytes = "vec", tag = "1")]
    pub trace_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub parent_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    pub id: Vec<u8>,
    /// 0 unspecified, 1 CLIENT, 2 SERVER, 3 PRODUCER, 4 CONSUMER.
    #[prost(int32, tag = "4")]
    pub kind: i32,
    #[prost(string, tag = "5")]
    pub name: String,
    /// Epoch microseconds.
    #[prost(fixed64, tag = "6")]
    pub timestamp: u64,
    /// Microseconds.
    #[prost(uint64, tag = "7")]
    pub duration: u64,
    #[prost(message, optional, tag = "8")]
    pub local_endpoint: Option<PEndpoint>,
    #[prost(message, optional, tag = "9")]
    pub remote_endpoint: Option<PEndpoint>,
    #[prost(message, repeated, tag = "10")]
    pub annotations: Vec<PAnnotation>,
    #[prost(map = "string, string", tag = "11")]
    pub tags: std::collections::HashMap<String, String>,
    #[prost(bool, tag = "12")]
    pub debug: bool,
    #[prost(bool, tag = "13")]
    pub shared: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PEndpoint {
    #[prost(string, tag = "1")]
    pub service_name: String,
    /// 4 bytes, network order.
    #[prost(bytes = "vec", tag = "2")]
    pub ipv4: Vec<u8>,
    /// 16 bytes, network order.
    #[prost(bytes = "vec", tag = "3")]
    pub ipv6: Vec<u8>,
    #[prost(int32, tag = "4")]
    pub port: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PAnnotation {
    #[prost(fixed64, tag = "1")]
    pub timestamp: u64,
    #[prost(string, tag = "2")]
    pub value: String,
}

fn endpoint(e: PEndpoint, what: &str) -> Result<ZEndpoint, String> {
    let ipv4 = match e.ipv4.len() {
        0 => None,
        4 => Some(Ipv4Addr::new(e.ipv4[0], e.ipv4[1], e.ipv4[2], e.ipv4[3]).to_string()),
        n => return Err(format!("{what}.ipv4 is {n} bytes, not 4")),
    };
    let ipv6 = match <[u8; 16]>::try_from(e.ipv6.as_slice()) {
        Ok(b) => Some(Ipv6Addr::from(b).to_string()),
        Err(_) if e.ipv6.is_empty() => None,
        Err(_) => return Err(format!("{what}.ipv6 is {} bytes, not 16", e.ipv6.len())),
    };
    Ok(ZEndpoint {
        service_name: Some(e.service_name).filter(|s| !s.is_empty()),
        ipv4,
        ipv6,
        port: (e.port != 0).then_some(e.port.into()),
    })
}

/// A protobuf span in the JSON model (ids as hex; an empty id stays empty and is refused by
/// the conversion with the field's name).
pub(super) fn to_json_model(p: PSpan) -> Result<ZSpan, String> {
    let kind = match p.kind {
        1 => Some("CLIENT"),
        2 => Some("SERVER"),
        3 => Some("PRODUCER"),
        4 => Some("CONSUMER"),
        _ => None,
    };
    Ok(ZSpan {
        trace_id: encode_hex(&p.trace_id),
        id: encode_hex(&p.id),
        parent_id: Some(encode_hex(&p.parent_id)).filter(|s| !s.is_empty()),
        name: Some(p.name),
        kind: kind.map(str::to_owned),
        timestamp: Some(p.timestamp),
        duration: Some(p.duration),
        local_endpoint: p.local_endpoint.map(|e| endpoint(e, "localEndpoint")).transpose()?,
        remote_endpoint: p.remote_endpoint.map(|e| endpoint(e, "remoteEndpoint")).transpose()?,
        tags: p.tags.into_iter().collect(),
        annotations: p
            .annotations
            .into_iter()
            .map(|a| ZAnnotation { timestamp: a.timestamp, value: a.value })
            .collect(),
        debug: Some(p.debug),
        shared: Some(p.shared),
    })
}
