//! The exchange of requests hyper's server parsed: the body is hyper's `Incoming` (wrapped
//! in the route's size limit and idle timeout), tries go through this worker's pooled
//! hyper clients (HTTP/1.1 or HTTP/2), and an upgrade's client side is kept for the tunnel.

use super::admit::Admitted;
use super::context::RequestCtx;
use super::exchange::{Exchange, TryFailure};
use super::headers::is_upgrade;
use super::upstream_request::{Prepared, should_buffer};
use crate::body::{ClientFault, Fault, Guard, UpstreamBody, Watched};
use crate::error::GatewayError;
use crate::router::Route;
use crate::upstream::Endpoint;
use bytes::Bytes;
use http::{Request, Response, Version};
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use std::sync::Arc;

/// The request's body as the tries see it.
enum BodyState {
    /// Not prepared yet.
    Unread(Option<Incoming>),
    /// Buffered (or empty): every try sends it again.
    Replay(Option<Bytes>),
    /// Streamed: only the first try can send it.
    Stream(Option<Box<Watched>>),
}

pub(super) struct HyperExchange {
    body: BodyState,
    fault: Arc<ClientFault>,
    use_h2: bool,
    /// The client side of an upgrade, taken by the front end when the upstream answers 101.
    pub on_upgrade: Option<OnUpgrade>,
}

impl HyperExchange {
    pub fn new(body: Incoming, req: &mut Request<()>) -> Self {
        let on_upgrade = is_upgrade(req).then(|| hyper::upgrade::on(req));
        HyperExchange {
            body: BodyState::Unread(Some(body)),
            fault: Arc::new(ClientFault::default()),
            use_h2: false,
            on_upgrade,
        }
    }
}

impl Exchange for HyperExchange {
    type Response = Response<Incoming>;

    async fn prepare_body(
        &mut self,
        _ctx: &mut RequestCtx,
        route: &Route,
        admitted: &Admitted,
        prepared: &Prepared,
    ) -> Result<(), GatewayError> {
        self.use_h2 = prepared.use_h2;
        let BodyState::Unread(body) = &mut self.body else { return Ok(()) };
        let Some(body) = body.take() else { return Ok(()) };
        let guard = Guard { limit: route.max_body, idle: route.timeouts.idle, fault: Some(self.fault.clone()) };
        self.body = if body.is_end_stream() {
            BodyState::Replay(None)
        } else if should_buffer(route, admitted, prepared) {
            let collect = Watched::new(body, guard, None).collect();
            match tokio::time::timeout(route.timeouts.request, collect).await {
                Ok(Ok(c)) => BodyState::Replay(Some(c.to_bytes())),
                Ok(Err(crate::body::BodyError::TooLarge(l))) => return Err(GatewayError::body_too_large(l)),
                Ok(Err(crate::body::BodyError::Hyper(_))) => return Err(GatewayError::request_body_broken()),
                _ => return Err(GatewayError::request_body_timeout()),
            }
        } else {
            BodyState::Stream(Some(Box::new(Watched::new(body, guard, None))))
        };
        Ok(())
    }

    fn replayable(&self) -> bool {
        matches!(self.body, BodyState::Replay(_))
    }

    fn buffered_body(&self) -> Option<Option<Bytes>> {
        match &self.body {
            BodyState::Replay(b) => Some(b.clone()),
            BodyState::Unread(_) | BodyState::Stream(_) => None,
        }
    }

    async fn send(
        &mut self,
        route: &Route,
        _ep: &Arc<Endpoint>,
        req: Request<()>,
    ) -> Result<Self::Response, TryFailure> {
        let body = match &mut self.body {
            BodyState::Replay(b) => UpstreamBody::Full(b.clone()),
            BodyState::Stream(s) => match s.take() {
                Some(w) => UpstreamBody::Stream(w),
                None => return Err(TryFailure::Reset),
            },
            BodyState::Unread(_) => UpstreamBody::Full(None),
        };
        let use_h2 = self.use_h2;
        let mut up_req = req.map(|()| body);
        *up_req.version_mut() = if use_h2 { Version::HTTP_2 } else { Version::HTTP_11 };
        let fut = route
            .upstream
            .with_clients(route.timeouts.connect, |c| if use_h2 { c.h2.request(up_req) } else { c.h1.request(up_req) });
        match fut.await {
            Ok(r) => Ok(r),
            Err(e) if e.is_connect() => Err(TryFailure::ConnectFailed),
            Err(_) => Err(TryFailure::Reset),
        }
    }

    fn client_fault(&self) -> Option<Fault> {
        self.fault.get()
    }
}
