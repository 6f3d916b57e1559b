//! Trace context on the wire: W3C `traceparent`/`tracestate` and Zipkin's B3 (single `b3`
//! header and the multi-header `X-B3-*` form).
//!
//! The gateway continues an incoming trace when one of these is present (W3C first), or
//! starts a new one. Towards the upstream it always writes `traceparent` (and passes
//! `tracestate` on), and also writes B3 in the form the client used, so services instrumented
//! with either propagator join the same trace.

use http::{HeaderMap, HeaderValue};
use signalbox_core::ids::{SpanId, TraceId};

/// Which header family carried the incoming context.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    None,
    W3c,
    B3Single,
    B3Multi,
}

/// The context of the current request.
#[derive(Clone, Debug)]
pub struct TraceContext {
    pub trace_id: TraceId,
    /// The caller's span, parent of the gateway's server span.
    pub parent: Option<SpanId>,
    /// `Some` when the caller made a sampling decision.
    pub sampled: Option<bool>,
    pub trace_state: Option<HeaderValue>,
    pub format: Format,
}

impl TraceContext {
    /// Extracts the incoming context; malformed headers are ignored (a new trace starts), as
    /// W3C Trace Context requires.
    pub fn extract(h: &HeaderMap) -> Self {
        if let Some(tp) = h.get("traceparent").and_then(|v| v.to_str().ok())
            && let Some((trace_id, parent, flags)) = parse_traceparent(tp)
        {
            return TraceContext {
                trace_id,
                parent: Some(parent),
                sampled: Some(flags & 1 == 1),
                trace_state: h.get("tracestate").cloned(),
                format: Format::W3c,
            };
        }
        if let Some(b3) = h.get("b3").and_then(|v| v.to_str().ok())
            && let Some(ctx) = parse_b3_single(b3)
        {
            return ctx;
        }
        let get = |n: &str| h.get(n).and_then(|v| v.to_str().ok());
        if let (Some(t), Some(s)) = (get("x-b3-traceid"), get("x-b3-spanid"))
            && let (Some(trace_id), Some(span)) = (TraceId::from_hex(t), SpanId::from_hex(s))
        {
            let sampled = match (get("x-b3-flags"), get("x-b3-sampled")) {
                (Some("1"), _) => Some(true),
                (_, Some("1" | "true")) => Some(true),
                (_, Some("0" | "false")) => Some(false),
                _ => None,
            };
            return TraceContext { trace_id, parent: Some(span), sampled, trace_state: None, format: Format::B3Multi };
        }
        TraceContext {
            trace_id: TraceId::random(),
            parent: None,
            sampled: None,
            trace_state: None,
            format: Format::None,
        }
    }

    /// Writes the context for a call whose span is `span` into `h`, replacing what the client
    /// sent.
    pub fn inject(&self, span: SpanId, sampled: bool, h: &mut HeaderMap) {
        // 00-<32 hex>-<16 hex>-<2 hex>, written on the stack (this runs for every try).
        let mut tp = *b"00-00000000000000000000000000000000-0000000000000000-00";
        signalbox_core::ids::hex_into(&self.trace_id.0, &mut tp[3..35]);
        signalbox_core::ids::hex_into(&span.0, &mut tp[36..52]);
        tp[54] = if sampled { b'1' } else { b'0' };
        if let Ok(v) = HeaderValue::from_bytes(&tp) {
            h.insert("traceparent", v);
        }
        match self.format {
            Format::B3Single => {
                let v = format!("{}-{}-{}", self.trace_id, span, if sampled { "1" } else { "0" });
                if let Ok(v) = HeaderValue::from_str(&v) {
                    h.insert("b3", v);
                }
            }
            Format::B3Multi => {
                for (name, value) in [
                    ("x-b3-traceid", self.trace_id.to_hex()),
                    ("x-b3-spanid", span.to_hex()),
                    ("x-b3-sampled", (if sampled { "1" } else { "0" }).to_owned()),
                ] {
                    if let Ok(v) = HeaderValue::from_str(&value) {
                        h.insert(name, v);
                    }
                }
                if let Some(p) = self.parent.and_then(|p| HeaderValue::from_str(&p.to_hex()).ok()) {
                    h.insert("x-b3-parentspanid", p);
                }
                h.remove("x-b3-flags");
            }
            Format::W3c | Format::None => {}
        }
    }
}

/// `version-traceid-parentid-flags`. Versions above 00 are parsed by their 00 prefix, as the
/// spec asks; version ff is invalid.
fn parse_traceparent(s: &str) -> Option<(TraceId, SpanId, u8)> {
    let s = s.trim();
    let b = s.as_bytes();
    if b.len() < 55 || b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
        return None;
    }
    let hex = |r: std::ops::Range<usize>| b[r].iter().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c));
    if !(hex(0..2) && hex(3..35) && hex(36..52) && hex(53..55)) {
        return None;
    }
    let version = u8::from_str_radix(&s[0..2], 16).ok()?;
    let exact = b.len() == 55;
    if version == 0xff || (version == 0 && !exact) || (!exact && b[55] != b'-') {
        return None;
    }
    let trace = TraceId::from_hex(&s[3..35])?;
    let span = SpanId::from_hex(&s[36..52])?;
    let flags = u8::from_str_radix(&s[53..55], 16).ok()?;
    Some((trace, span, flags))
}

/// `traceid-spanid[-sampled[-parentspanid]]`, or a bare sampling state `0`, `1`, `d`.
fn parse_b3_single(s: &str) -> Option<TraceContext> {
    let mut parts = s.trim().split('-');
    let first = parts.next()?;
    let Some(second) = parts.next() else {
        // A bare decision carries no ids; start a trace that honours the decision.
        let sampled = match first {
            "0" => Some(false),
            "1" | "d" => Some(true),
            _ => return None,
        };
        return Some(TraceContext {
            trace_id: TraceId::random(),
            parent: None,
            sampled,
            trace_state: None,
            format: Format::B3Single,
        });
    };
    let trace_id = TraceId::from_hex(first)?;
    let span = SpanId::from_hex(second)?;
    let sampled = match parts.next() {
        Some("1" | "d") => Some(true),
        Some("0") => Some(false),
        None => None,
        Some(_) => return None,
    };
    Some(TraceContext { trace_id, parent: Some(span), sampled, trace_state: None, format: Format::B3Single })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn w3c_round_trip() {
        let h = headers(&[
            ("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            ("tracestate", "congo=t61rcWkgMzE"),
        ]);
        let ctx = TraceContext::extract(&h);
        assert_eq!(ctx.format, Format::W3c);
        assert_eq!(ctx.trace_id.to_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(ctx.sampled, Some(true));
        let mut out = HeaderMap::new();
        let span = SpanId::from_hex("1111111111111111").unwrap();
        ctx.inject(span, true, &mut out);
        assert_eq!(out["traceparent"], "00-4bf92f3577b34da6a3ce929d0e0e4736-1111111111111111-01");
    }

    #[test]
    fn rejects_malformed_traceparent() {
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "garbage",
        ] {
            let ctx = TraceContext::extract(&headers(&[("traceparent", bad)]));
            assert_eq!(ctx.format, Format::None, "{bad}");
        }
        let future = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra";
        assert_eq!(TraceContext::extract(&headers(&[("traceparent", future)])).format, Format::W3c);
    }

    #[test]
    fn b3_single_and_multi() {
        let ctx = TraceContext::extract(&headers(&[(
            "b3",
            "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1-05e3ac9a4f6e3b90",
        )]));
        assert_eq!(ctx.format, Format::B3Single);
        assert_eq!(ctx.parent.unwrap().to_hex(), "e457b5a2e4d86bd1");
        let ctx = TraceContext::extract(&headers(&[
            ("x-b3-traceid", "463ac35c9f6413ad"),
            ("x-b3-spanid", "a2fb4a1d1a96d312"),
            ("x-b3-sampled", "0"),
        ]));
        assert_eq!(ctx.format, Format::B3Multi);
        assert_eq!(ctx.sampled, Some(false));
        let mut out = HeaderMap::new();
        ctx.inject(SpanId::from_hex("1111111111111111").unwrap(), false, &mut out);
        assert_eq!(out["x-b3-traceid"], "0000000000000000463ac35c9f6413ad");
        assert_eq!(out["x-b3-spanid"], "1111111111111111");
        assert_eq!(out["x-b3-parentspanid"], "a2fb4a1d1a96d312");
    }
}
