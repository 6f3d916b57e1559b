//! The per-request context every phase reads and fills, and the gateway's own answer when a
//! phase fails.

use crate::body::ClientBody;
use crate::circuit::Permit;
use crate::error::GatewayError;
use crate::ratelimit::Decision;
use crate::telemetry::Finish;
use crate::tracectx::TraceContext;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Response, StatusCode};
use signalbox_core::ids::TraceId;
use std::time::Instant;

pub(super) static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The tightest rate limit a request passed (or the one that refused it), for the
/// `RateLimit-*` headers.
pub(crate) struct RateLimitSeen {
    pub decision: Decision,
    pub rate: f64,
    pub burst: u32,
}

/// What the phases know about one request.
pub(crate) struct RequestCtx {
    pub started: Instant,
    pub trace: TraceContext,
    pub request_id: HeaderValue,
    pub grpc: bool,
    /// Whether the request's spans are stored (decided once routed).
    pub sampled: bool,
    /// The telemetry record, completed by the log phase.
    pub finish: Option<Box<Finish>>,
    /// The authenticated client, when the route has auth.
    pub identity: Option<String>,
    pub rate_limit: Option<RateLimitSeen>,
    /// The service circuit's permit, recorded once the tries are over; dropped unrecorded
    /// (released) if the request is abandoned.
    pub service_permit: Option<Permit>,
    /// The circuit that refused the request, named in `x-signalbox-circuit`.
    pub refused_by_circuit: Option<HeaderValue>,
}

impl RequestCtx {
    pub fn new(headers: &HeaderMap) -> Self {
        let request_id = match headers.get(&X_REQUEST_ID) {
            Some(v) if !v.is_empty() && v.len() <= 128 => v.clone(),
            _ => new_request_id(),
        };
        RequestCtx {
            started: Instant::now(),
            trace: TraceContext::extract(headers),
            request_id,
            grpc: super::headers::is_grpc(headers),
            sampled: false,
            finish: None,
            identity: None,
            rate_limit: None,
            service_permit: None,
            refused_by_circuit: None,
        }
    }

    /// The gateway's own answer to `e`, with the telemetry record completed.
    pub fn fail(&mut self, e: GatewayError) -> Response<ClientBody> {
        let mut resp =
            e.to_response(&self.trace.trace_id.to_hex(), Some(&self.request_id), self.grpc).map(ClientBody::Full);
        let h = resp.headers_mut();
        match e.status {
            StatusCode::UNAUTHORIZED => {
                h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            StatusCode::TOO_MANY_REQUESTS => {
                if let Some(r) = &self.rate_limit {
                    super::headers::rate_limit_headers(h, &r.decision, r.rate, r.burst);
                }
            }
            _ => {}
        }
        if let Some(c) = self.refused_by_circuit.take() {
            h.insert("x-signalbox-circuit", c);
        }
        super::log::complete_failed(self, resp.status(), e.code);
        resp
    }
}

fn new_request_id() -> HeaderValue {
    let mut buf = [0u8; 32];
    signalbox_core::ids::hex_into(&TraceId::random().0, &mut buf);
    // 32 hex digits are always a valid header value.
    HeaderValue::from_bytes(&buf).unwrap_or(HeaderValue::from_static("0"))
}
