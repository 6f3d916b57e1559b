//! What the two front ends do differently, behind one trait: the request body, the tries'
//! transport and the upstream's response. The phases around it are the same for both.

use super::admit::Admitted;
use super::context::RequestCtx;
use super::upstream_request::Prepared;
use crate::body::Fault;
use crate::error::GatewayError;
use crate::router::Route;
use crate::upstream::Endpoint;
use http::{HeaderMap, Request, Response, StatusCode};
use std::future::Future;
use std::sync::Arc;

/// How a try ended without a response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TryFailure {
    Timeout,
    ConnectFailed,
    /// The connection broke before a whole response head arrived.
    Reset,
}

/// The head of an upstream response, as the phases read and change it.
pub(crate) trait UpstreamHead {
    fn status(&self) -> StatusCode;
    fn headers(&self) -> &HeaderMap;
    fn headers_mut(&mut self) -> &mut HeaderMap;
}

impl<B> UpstreamHead for Response<B> {
    fn status(&self) -> StatusCode {
        Response::status(self)
    }
    fn headers(&self) -> &HeaderMap {
        Response::headers(self)
    }
    fn headers_mut(&mut self) -> &mut HeaderMap {
        Response::headers_mut(self)
    }
}

/// One request's body and transport, as a front end provides them.
pub(crate) trait Exchange: Send {
    type Response: UpstreamHead + Send;

    /// Gets the body ready for the tries: buffered when
    /// [`super::upstream_request::should_buffer`] says a retry may need it again, else left
    /// to stream with the first try.
    fn prepare_body(
        &mut self,
        ctx: &mut RequestCtx,
        route: &Route,
        admitted: &Admitted,
        prepared: &Prepared,
    ) -> impl Future<Output = Result<(), GatewayError>> + Send;

    /// Whether the body can be sent again (buffered or empty).
    fn replayable(&self) -> bool;

    /// The buffered body (`Some(None)`: empty), or `None` when it streams; a mirror sends
    /// a copy of a buffered body only.
    fn buffered_body(&self) -> Option<Option<bytes::Bytes>>;

    /// Sends one try to `ep` (the request's URI carries the endpoint's authority) and reads
    /// the response head. The caller bounds it with the per-try timeout.
    fn send(
        &mut self,
        route: &Route,
        ep: &Arc<Endpoint>,
        req: Request<()>,
    ) -> impl Future<Output = Result<Self::Response, TryFailure>> + Send;

    /// How the client's body failed, if it did (the client is then blamed, not the upstream).
    fn client_fault(&self) -> Option<Fault>;

    /// The client went away while a try was in flight: the request ends with no outcome
    /// recorded, as when hyper drops the future of a request whose connection closed.
    fn abandoned(&self) -> bool {
        false
    }
}
