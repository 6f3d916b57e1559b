//! The log phase: the request's telemetry record ([`Finish`]: RED metrics, spans, the
//! access-log line). It is opened once the request is routed, travels with the response body
//! and completes when the body ends, or at once when the gateway answers an error itself.

use super::Downstream;
use super::context::RequestCtx;
use crate::router::Route;
use crate::telemetry::{Finish, Telemetry};
use http::{Request, StatusCode, Version, header};
use signalbox_core::ids::SpanId;
use std::sync::Arc;

/// Opens the record of a request (`route` is `None` when nothing matched).
pub(super) fn new_finish<B>(
    tel: &Arc<Telemetry>,
    route: Option<&Arc<Route>>,
    req: &Request<B>,
    host: &str,
    peer: &Downstream,
    ctx: &RequestCtx,
) -> Box<Finish> {
    let (route_name, service, metrics): (Arc<str>, Arc<str>, _) = match route {
        Some(r) => (r.name.clone(), r.upstream.name.clone(), r.metrics.clone()),
        None => ("-".into(), "-".into(), None),
    };
    Box::new(Finish {
        tel: tel.clone(),
        route_name,
        service,
        metrics: if tel.metrics { metrics } else { None },
        started: ctx.started,
        start_unix: signalbox_core::time::unix_nanos().saturating_sub(ctx.started.elapsed().as_nanos() as u64),
        method: req.method().clone(),
        path: req.uri().path().to_owned(),
        host: host.to_owned(),
        client: peer.addr.ip().to_string(),
        user_agent: req.headers().get(header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned(),
        protocol: match req.version() {
            Version::HTTP_2 => "2",
            Version::HTTP_10 => "1.0",
            _ => "1.1",
        },
        request_id: ctx.request_id.to_str().unwrap_or("").to_owned(),
        trace: ctx.trace.clone(),
        server_span: SpanId::random(),
        sampled: ctx.sampled,
        status: 0,
        error_code: None,
        endpoint: None,
        version: None,
        tries: Vec::new(),
        grpc: ctx.grpc,
        grpc_status: None,
        identity: None,
    })
}

/// Completes the record of a request the gateway answered itself.
pub(super) fn complete_failed(ctx: &mut RequestCtx, status: StatusCode, code: &'static str) {
    if let Some(mut f) = ctx.finish.take() {
        f.status = status.as_u16();
        f.error_code = Some(code);
        f.complete(0, None, None);
    }
}
