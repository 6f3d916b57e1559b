//! OTLP/gRPC trace export (`opentelemetry.proto.collector.trace.v1.TraceService/Export`).
//!
//! Written against tonic's building blocks rather than the generated server so that the
//! message is checked before it is decoded: the codec scans the protobuf, refuses requests
//! over the limits and reserves their decode memory ([`crate::ingest`]). Status codes follow
//! the OTLP specification: INVALID_ARGUMENT for what must not be retried as is (too large,
//! malformed), RESOURCE_EXHAUSTED with a `google.rpc.RetryInfo` for overload, which clients
//! retry after the delay.

use super::{MAX_MESSAGE, convert};
use crate::AppState;
use crate::auth::check_ingest;
use crate::ingest::{self, Refused};
use axum::http::{HeaderMap, HeaderValue};
use bytes::{Buf, Bytes};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use signalbox_events::spans::pipeline::WriteError;
use std::time::Duration;
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EnabledCompressionEncodings};
use tonic::{Code, Status};

/// The gRPC method path.
pub const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// A decoded request with its share of the decode budget.
pub struct Checked<T> {
    pub req: T,
    _budget: tokio::sync::SemaphorePermit<'static>,
}

impl<T> Checked<T> {
    /// The request, giving its decode budget back.
    pub fn into_inner(self) -> T {
        self.req
    }
}

/// How a request's wire bytes are counted before decoding.
pub type Scan = fn(&[u8]) -> Result<ingest::Counts, Refused>;

/// Prost encoding for responses; a checked decode for requests.
struct CheckedCodec<Req, Resp> {
    scan: Scan,
    _types: std::marker::PhantomData<fn() -> (Req, Resp)>,
}

impl<Req, Resp> Codec for CheckedCodec<Req, Resp>
where
    Req: Message + Default + Send + 'static,
    Resp: Message + Send + 'static,
{
    type Encode = Resp;
    type Decode = Checked<Req>;
    type Encoder = tonic_prost::ProstEncoder<Resp>;
    type Decoder = CheckedDecoder<Req>;

    fn encoder(&mut self) -> Self::Encoder {
        tonic_prost::ProstEncoder::default()
    }
    fn decoder(&mut self) -> Self::Decoder {
        CheckedDecoder { scan: self.scan, _type: std::marker::PhantomData }
    }
}

struct CheckedDecoder<Req> {
    scan: Scan,
    _type: std::marker::PhantomData<fn() -> Req>,
}

impl<Req: Message + Default> Decoder for CheckedDecoder<Req> {
    type Item = Checked<Req>;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Checked<Req>>, Status> {
        let bytes: Bytes = src.copy_to_bytes(src.remaining());
        let counts = (self.scan)(&bytes).map_err(refused)?;
        counts.check().map_err(refused)?;
        let budget = ingest::reserve(ingest::estimate(bytes.len(), counts.items)).map_err(refused)?;
        let req = Req::decode(bytes).map_err(|e| Status::invalid_argument(format!("invalid OTLP protobuf: {e}")))?;
        Ok(Some(Checked { req, _budget: budget }))
    }
}

/// The status for a refused request.
pub fn refused(r: Refused) -> Status {
    match r {
        Refused::Invalid(m) | Refused::TooLarge(m) => Status::invalid_argument(m),
        Refused::Busy => {
            retry_later("the node is decoding as much as it can hold; retry later", Duration::from_secs(1))
        }
    }
}

/// RESOURCE_EXHAUSTED with a `google.rpc.RetryInfo`: the only form of it OTLP clients retry.
pub fn retry_later(message: &str, delay: Duration) -> Status {
    #[derive(Clone, PartialEq, prost::Message)]
    struct ProtoDuration {
        #[prost(int64, tag = "1")]
        seconds: i64,
        #[prost(int32, tag = "2")]
        nanos: i32,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    struct RetryInfo {
        #[prost(message, optional, tag = "1")]
        retry_delay: Option<ProtoDuration>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    struct Any {
        #[prost(string, tag = "1")]
        type_url: String,
        #[prost(bytes = "vec", tag = "2")]
        value: Vec<u8>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    struct RpcStatus {
        #[prost(int32, tag = "1")]
        code: i32,
        #[prost(string, tag = "2")]
        message: String,
        #[prost(message, repeated, tag = "3")]
        details: Vec<Any>,
    }
    let info = RetryInfo {
        retry_delay: Some(ProtoDuration { seconds: delay.as_secs() as i64, nanos: delay.subsec_nanos() as i32 }),
    };
    let status = RpcStatus {
        code: Code::ResourceExhausted as i32,
        message: message.to_owned(),
        details: vec![Any { type_url: "type.googleapis.com/google.rpc.RetryInfo".into(), value: info.encode_to_vec() }],
    };
    let mut s = Status::with_details(Code::ResourceExhausted, message, Bytes::from(status.encode_to_vec()));
    // Also as plain metadata, for clients that read only that.
    if let Ok(v) = delay.as_secs().max(1).to_string().parse() {
        s.metadata_mut().insert("retry-after", v);
    }
    s
}

#[derive(Clone)]
struct Export {
    state: AppState,
}

impl tonic::server::UnaryService<Checked<ExportTraceServiceRequest>> for Export {
    type Response = ExportTraceServiceResponse;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<tonic::Response<ExportTraceServiceResponse>, Status>> + Send>,
    >;

    fn call(&mut self, request: tonic::Request<Checked<ExportTraceServiceRequest>>) -> Self::Future {
        let state = self.state.clone();
        Box::pin(async move { export(state, request).await })
    }
}

async fn export(
    state: AppState,
    request: tonic::Request<Checked<ExportTraceServiceRequest>>,
) -> Result<tonic::Response<ExportTraceServiceResponse>, Status> {
    let mut headers = HeaderMap::new();
    if let Some(v) = request
        .metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| HeaderValue::from_str(v).ok())
    {
        headers.insert(http::header::AUTHORIZATION, v);
    }
    check_ingest(&state, &headers).map_err(|d| d.grpc())?;
    let Some(traces) = &state.traces else {
        return Err(Status::unavailable("trace ingest is not enabled on this node"));
    };
    let c = convert(request.into_inner().into_inner());
    super::write(&state, traces, c.spans).await.map_err(|e| match e {
        WriteError::Busy(b) => {
            retry_later("the trace pipeline is busy; retry later", b.retry_after.max(Duration::from_secs(1)))
        }
        WriteError::Failed(f) => Status::unavailable(f.0),
    })?;
    Ok(tonic::Response::new(ExportTraceServiceResponse {
        partial_success: (c.rejected > 0)
            .then_some(ExportTracePartialSuccess { rejected_spans: c.rejected, error_message: c.error }),
    }))
}

/// The OTLP/gRPC trace endpoint, as a route of the OTLP/gRPC router (port 4317).
pub fn router(state: AppState) -> axum::Router {
    axum::Router::new().route_service(EXPORT_PATH, UnaryEndpoint::new(Export { state }, ingest::scan_otlp_traces))
}

/// A unary gRPC method served with a checked decode and the OTLP specification's codes.
pub struct UnaryEndpoint<S, Req, Resp> {
    svc: S,
    scan: Scan,
    _types: std::marker::PhantomData<fn() -> (Req, Resp)>,
}

impl<S: Clone, Req, Resp> Clone for UnaryEndpoint<S, Req, Resp> {
    fn clone(&self) -> Self {
        UnaryEndpoint { svc: self.svc.clone(), scan: self.scan, _types: std::marker::PhantomData }
    }
}

impl<S, Req, Resp> UnaryEndpoint<S, Req, Resp> {
    pub fn new(svc: S, scan: Scan) -> Self {
        UnaryEndpoint { svc, scan, _types: std::marker::PhantomData }
    }
}

impl<S, Req, Resp> tower_service::Service<http::Request<axum::body::Body>> for UnaryEndpoint<S, Req, Resp>
where
    S: tonic::server::UnaryService<Checked<Req>, Response = Resp> + Clone + Send + 'static,
    S::Future: Send + 'static,
    Req: Message + Default + Send + 'static,
    Resp: Message + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<axum::body::Body>) -> Self::Future {
        let svc = self.svc.clone();
        let codec: CheckedCodec<Req, Resp> = CheckedCodec { scan: self.scan, _types: std::marker::PhantomData };
        Box::pin(async move {
            let mut accept = EnabledCompressionEncodings::default();
            accept.enable(CompressionEncoding::Gzip);
            let mut grpc = tonic::server::Grpc::new(codec)
                .apply_compression_config(accept, EnabledCompressionEncodings::default())
                .apply_max_message_size_config(Some(MAX_MESSAGE), None);
            let mut resp = grpc.unary(svc, req).await;
            spec_codes(resp.headers_mut());
            Ok(resp)
        })
    }
}

/// tonic's framing answers a message over the size limit with OUT_OF_RANGE (or
/// RESOURCE_EXHAUSTED while inflating), which OTLP clients retry forever, and a bad frame
/// with INTERNAL: all are the client's to fix, INVALID_ARGUMENT. Only overload, which
/// carries a RetryInfo, stays RESOURCE_EXHAUSTED.
fn spec_codes(h: &mut HeaderMap) {
    let code = h.get("grpc-status").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<i32>().ok());
    let retry_info = h.contains_key("grpc-status-details-bin");
    let client_fault = match code {
        Some(c) if c == Code::OutOfRange as i32 || c == Code::Internal as i32 => true,
        Some(c) if c == Code::ResourceExhausted as i32 => !retry_info,
        _ => false,
    };
    if client_fault {
        h.insert("grpc-status", HeaderValue::from(Code::InvalidArgument as i32));
    }
}
