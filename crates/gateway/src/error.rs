//! Errors the gateway answers itself, with the side that failed and whether a retry is
//! allowed, and their rendering: a JSON body `{error, code, trace_id}` for HTTP clients, and
//! a trailers-only response with `grpc-status` for gRPC clients.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use std::time::Duration;

/// Which side of the proxy failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The client sent something unacceptable.
    Downstream,
    /// An upstream endpoint failed or is unavailable.
    Upstream,
    /// The gateway itself: its policy (rate limits, circuits) or its own failure.
    Internal,
}

/// Whether a failed try may be sent again, as far as the failure tells; the route's retry
/// policy, the retry budget and the request's body decide the rest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retry {
    /// Not retryable (the failure is final, or the route does not retry this condition).
    Never,
    /// The request may have reached the upstream: retry only a method safe to repeat (or a
    /// route that retries any method).
    IfIdempotent,
    /// The request never left the gateway (a connect failure): retry whatever the method.
    Always,
}

/// An error answered by the gateway.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct GatewayError {
    pub status: StatusCode,
    /// Stable machine-readable code.
    pub code: &'static str,
    pub message: String,
    pub side: Side,
    /// Whether the gateway may retry the failed try.
    pub retry: Retry,
    pub retry_after: Option<Duration>,
}

impl GatewayError {
    pub fn new(status: StatusCode, code: &'static str, side: Side, message: impl Into<String>) -> Self {
        GatewayError { status, code, message: message.into(), side, retry: Retry::Never, retry_after: None }
    }

    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "route_not_found", Side::Downstream, "no route matches this request")
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", Side::Downstream, message)
    }
    /// A request whose framing is ambiguous (request smuggling), refused before routing.
    pub fn bad_framing(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_framing", Side::Downstream, message)
    }
    pub fn headers_too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "headers_too_large", Side::Downstream, message)
    }
    pub fn uri_too_long() -> Self {
        Self::new(StatusCode::URI_TOO_LONG, "uri_too_long", Side::Downstream, "the request target is too long")
    }
    pub fn body_too_large(limit: u64) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            Side::Downstream,
            format!("request body exceeds the route limit of {limit} bytes"),
        )
    }
    /// The client's request body broke off (disconnect, reset, invalid chunked framing).
    pub fn request_body_broken() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "request_body_incomplete",
            Side::Downstream,
            "the request body ended abruptly or was not valid chunked framing",
        )
    }
    /// The client stopped sending its request body.
    pub fn request_body_timeout() -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_body_timeout",
            Side::Downstream,
            "the request body did not arrive in time",
        )
    }
    pub fn unauthorized(message: &str) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", Side::Downstream, message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", Side::Downstream, message)
    }
    pub fn rate_limited(retry_after: Duration) -> Self {
        GatewayError {
            retry_after: Some(retry_after),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", Side::Internal, "rate limit exceeded")
        }
    }
    /// A connection over the listener's connection cap (answered before any request is read).
    pub fn too_many_connections() -> Self {
        GatewayError {
            retry_after: Some(Duration::from_secs(1)),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too_many_connections",
                Side::Internal,
                "the gateway is at its connection limit",
            )
        }
    }
    pub fn circuit_open(circuit: &str, retry_after: Duration) -> Self {
        GatewayError {
            retry_after: Some(retry_after),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "circuit_open",
                Side::Internal,
                format!("circuit `{circuit}` is open"),
            )
        }
    }
    pub fn no_endpoint(service: &str) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_healthy_endpoint",
            Side::Upstream,
            format!("service `{service}` has no available endpoint"),
        )
    }
    pub fn connect_failed(service: &str) -> Self {
        GatewayError {
            retry: Retry::Always,
            ..Self::new(
                StatusCode::BAD_GATEWAY,
                "upstream_connect_failed",
                Side::Upstream,
                format!("could not connect to service `{service}`"),
            )
        }
    }
    pub fn upstream_reset(service: &str) -> Self {
        GatewayError {
            retry: Retry::IfIdempotent,
            ..Self::new(
                StatusCode::BAD_GATEWAY,
                "upstream_reset",
                Side::Upstream,
                format!("service `{service}` closed the connection without a response"),
            )
        }
    }
    pub fn upstream_timeout(service: &str) -> Self {
        GatewayError {
            retry: Retry::IfIdempotent,
            ..Self::new(
                StatusCode::GATEWAY_TIMEOUT,
                "upstream_timeout",
                Side::Upstream,
                format!("service `{service}` did not answer in time"),
            )
        }
    }

    /// The same error with the retry allowance replaced (a route that does not retry a
    /// condition turns it into [`Retry::Never`]).
    pub fn with_retry(self, retry: Retry) -> Self {
        GatewayError { retry, ..self }
    }

    /// The error with its retry allowance kept only when `allowed`.
    pub fn retry_if(self, allowed: bool) -> Self {
        if allowed { self } else { self.with_retry(Retry::Never) }
    }

    /// gRPC status code with the same meaning.
    fn grpc_status(&self) -> u32 {
        match self.status.as_u16() {
            400 | 413 | 414 | 431 => 3, // INVALID_ARGUMENT
            401 => 16,                  // UNAUTHENTICATED
            403 => 7,                   // PERMISSION_DENIED
            404 => 12,                  // UNIMPLEMENTED
            429 => 8,                   // RESOURCE_EXHAUSTED
            504 => 4,                   // DEADLINE_EXCEEDED
            _ => 14,                    // UNAVAILABLE
        }
    }

    /// The JSON body `{error, code, trace_id}` of the HTTP answer.
    pub fn json_body(&self, trace_id: &str) -> String {
        serde_json::json!({ "error": self.message, "code": self.code, "trace_id": trace_id }).to_string()
    }

    /// The response the client sees (its body, if any, is the JSON document).
    pub fn to_response(&self, trace_id: &str, request_id: Option<&HeaderValue>, grpc: bool) -> Response<Option<Bytes>> {
        let mut b = Response::builder();
        if grpc {
            b = b
                .status(StatusCode::OK)
                .header("content-type", "application/grpc")
                .header("grpc-status", self.grpc_status())
                .header("grpc-message", percent_encode(&self.message));
        } else {
            b = b.status(self.status).header("content-type", "application/json");
        }
        b = b.header("x-signalbox-error", self.code);
        if let Some(id) = request_id {
            b = b.header("x-request-id", id.clone());
        }
        if let Some(ra) = self.retry_after {
            b = b.header("retry-after", ra.as_secs_f64().ceil().max(1.0) as u64);
        }
        let body = if grpc { None } else { Some(Bytes::from(self.json_body(trace_id))) };
        // The builder only fails on invalid parts, and every part above is valid by
        // construction; fall back to a bare status rather than panic.
        b.body(body).unwrap_or_else(|_| {
            let mut r = Response::new(None);
            *r.status_mut() = self.status;
            r
        })
    }
}

/// grpc-message is percent-encoded per the gRPC HTTP/2 spec.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
