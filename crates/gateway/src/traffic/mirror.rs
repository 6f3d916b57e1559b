//! Mirroring: a copy of a request goes to an endpoint of the mirror version and its answer
//! is drained and discarded. The copy runs on its own task after the real request has its
//! upstream request ready, so it never delays or fails it; at most `mirror_max_inflight`
//! copies run at once, and one beyond that is dropped and counted rather than queued.
//!
//! Bodies: a request without a body, or whose body was buffered (for retries, or because
//! it is known to be at most `traffic.mirror_max_body` and the request is mirrored), is
//! copied whole; a streamed body is not (the copy is dropped, `reason="body"`), since
//! teeing a stream would tie the real request's pace to the mirror's.

use super::MirrorSlot;
use crate::body::UpstreamBody;
use crate::router::Route;
use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, Request, Uri, Version};
use http_body_util::BodyExt;
use signalbox_core::metrics::{Counter, Registry};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// Why a mirror copy was not sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dropped {
    /// The in-flight budget was full.
    Budget,
    /// The body was streamed, not buffered.
    Body,
    /// The mirror version had no available endpoint.
    NoEndpoint,
}

/// The mirror budget and drop counters, shared by every request.
pub struct Mirrors {
    pub(crate) inflight: Arc<AtomicUsize>,
    max: AtomicUsize,
    dropped: [Counter; 3],
    sent: Counter,
}

impl Mirrors {
    pub fn new(reg: Registry, max_inflight: usize) -> Self {
        let dropped = |reason| {
            reg.counter(
                "signalbox_gateway_mirror_dropped_total",
                "Mirror copies not sent: `budget` (too many in flight), `body` (streamed body), `no_endpoint` (the mirror version had none available).",
                &[("reason", reason)],
            )
        };
        Mirrors {
            inflight: Arc::new(AtomicUsize::new(0)),
            max: AtomicUsize::new(max_inflight),
            dropped: [dropped("budget"), dropped("body"), dropped("no_endpoint")],
            sent: reg.counter("signalbox_gateway_mirror_sent_total", "Mirror copies sent.", &[]),
        }
    }

    /// Changes the in-flight budget (a config reload).
    pub fn set_max_inflight(&self, max: usize) {
        self.max.store(max, Ordering::Relaxed);
    }

    pub fn drop_one(&self, why: Dropped) {
        self.dropped[why as usize].inc();
    }

    fn slot(&self) -> Option<MirrorSlot> {
        let n = self.inflight.fetch_add(1, Ordering::Relaxed);
        let slot = MirrorSlot(self.inflight.clone());
        (n < self.max.load(Ordering::Relaxed)).then_some(slot)
    }
}

/// What a mirror copy sends: the upstream request as the real tries see it.
pub struct MirrorRequest {
    pub method: Method,
    pub headers: HeaderMap,
    pub path_and_query: PathAndQuery,
    pub body: Option<Bytes>,
    pub use_h2: bool,
}

/// Starts a copy of `req` to an endpoint of `version` of the route's service, unless the
/// budget is full. Returns at once.
pub fn launch(mirrors: &Mirrors, route: &Arc<Route>, version: Arc<str>, mut req: MirrorRequest) {
    let Some(slot) = mirrors.slot() else {
        mirrors.drop_one(Dropped::Budget);
        return;
    };
    let upstream = route.upstream.clone();
    let Ok(picked) = upstream.pick_in(Some(&*version), None, None, crate::clock::now()) else {
        mirrors.drop_one(Dropped::NoEndpoint);
        return;
    };
    // The mirror's outcome never reaches breakers or ejection: its permit is given back.
    let ep = picked.endpoint;
    drop(picked.permit);
    mirrors.sent.inc();
    let route = route.clone();
    tokio::spawn(async move {
        let _slot = slot;
        let uri = Uri::builder()
            .scheme(if upstream.tls.is_some() { "https" } else { "http" })
            .authority(ep.authority.clone())
            .path_and_query(req.path_and_query)
            .build();
        let Ok(uri) = uri else { return };
        req.headers.insert("x-signalbox-mirror", HeaderValue::from_static("1"));
        let mut up = Request::new(UpstreamBody::Full(req.body));
        *up.method_mut() = req.method;
        *up.uri_mut() = uri;
        *up.version_mut() = if req.use_h2 { Version::HTTP_2 } else { Version::HTTP_11 };
        *up.headers_mut() = req.headers;
        let use_h2 = req.use_h2;
        let t0 = Instant::now();
        let inflight = ep.start();
        let send =
            upstream.with_clients(route.timeouts.connect, |c| if use_h2 { c.h2.request(up) } else { c.h1.request(up) });
        let exchange = async {
            let resp = send.await.ok()?;
            let status = resp.status().as_u16();
            let mut body = resp.into_body();
            while let Some(frame) = body.frame().await {
                if frame.is_err() {
                    break;
                }
            }
            Some(status)
        };
        let budget = route.timeouts.per_try.min(route.timeouts.request);
        let status = tokio::time::timeout(budget, exchange).await.ok().flatten();
        drop(inflight);
        if let Some(m) = &route.metrics {
            m.mirrors.record(&version, status, t0.elapsed().as_secs_f64());
        }
    });
}
