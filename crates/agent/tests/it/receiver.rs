//! A real log receiver on loopback: it serves `POST /api/logs` (gzip NDJSON) and
//! `POST /v1/logs` (gzip OTLP protobuf), records what it accepts, can be stopped and started
//! again on the same port, and can answer 503/429 or refuse lines on demand.

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use opentelemetry_proto::tonic::collector::logs::v1::{ExportLogsServiceRequest, ExportLogsServiceResponse};
use prost::Message;
use serde_json::Value;
use signalbox_testkit::upstream::{self, Upstream};
use std::io::Read;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// How the receiver answers.
#[derive(Clone, Debug)]
pub enum Mode {
    Accept,
    /// This status, with `Retry-After` seconds if set.
    Status(u16, Option<u64>),
    /// Lines whose body contains this text are invalid, answered as the node does: 200
    /// `{"accepted": N, "rejected": [{"line": L, "error": "..."}]}` (lines from 1) keeping
    /// the others, or, when none is valid, 400 `{"error", "code", "field": "line L"}`.
    RefuseContaining(String),
    /// 413 for requests of more lines than this.
    MaxLines(usize),
}

#[derive(Default)]
struct State {
    lines: Mutex<Vec<Value>>,
    otlp: Mutex<Vec<ExportLogsServiceRequest>>,
    headers: Mutex<Vec<http::HeaderMap>>,
    refused: Mutex<u64>,
    mode: Mutex<Option<Mode>>,
}

pub struct Receiver {
    pub addr: SocketAddr,
    state: Arc<State>,
    server: Mutex<Option<Upstream>>,
    tls: bool,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let state = Arc::new(State::default());
        let up = upstream::serve(handler(state.clone())).await;
        Receiver { addr: up.addr, state, server: Mutex::new(Some(up)), tls: false }
    }

    /// Over TLS, with testkit's certificate for `localhost`.
    pub async fn start_tls() -> Receiver {
        let state = Arc::new(State::default());
        let up = upstream::serve_tls(handler(state.clone())).await;
        Receiver { addr: up.addr, state, server: Mutex::new(Some(up)), tls: true }
    }

    pub fn url(&self) -> String {
        if self.tls { format!("https://localhost:{}", self.addr.port()) } else { format!("http://{}", self.addr) }
    }

    /// Closes the listener and every connection, as a crashed node would.
    pub fn stop(&self) {
        self.server.lock().unwrap().take();
    }

    /// Listens again on the same port.
    pub async fn restart(&self) {
        let up = upstream::serve_at(self.addr, handler(self.state.clone())).await;
        *self.server.lock().unwrap() = Some(up);
    }

    pub fn set_mode(&self, m: Mode) {
        *self.state.mode.lock().unwrap() = Some(m);
    }

    /// Every NDJSON line accepted, in arrival order.
    pub fn lines(&self) -> Vec<Value> {
        self.state.lines.lock().unwrap().clone()
    }

    pub fn otlp(&self) -> Vec<ExportLogsServiceRequest> {
        self.state.otlp.lock().unwrap().clone()
    }

    pub fn headers(&self) -> Vec<http::HeaderMap> {
        self.state.headers.lock().unwrap().clone()
    }

    /// Requests answered with an error status.
    pub fn refused(&self) -> u64 {
        *self.state.refused.lock().unwrap()
    }
}

fn handler(
    state: Arc<State>,
) -> impl Fn(Request<Bytes>) -> std::future::Ready<Response<Full<Bytes>>> + Send + Sync + 'static {
    move |req| std::future::ready(answer(&state, req))
}

fn respond(status: u16, ctype: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    Response::builder().status(status).header("content-type", ctype).body(Full::new(body.into())).unwrap()
}

fn answer(state: &State, req: Request<Bytes>) -> Response<Full<Bytes>> {
    let gz = req.headers().get("content-encoding").is_some_and(|v| v == "gzip");
    let mut raw = Vec::new();
    if gz {
        if flate2::read::GzDecoder::new(&req.body()[..]).read_to_end(&mut raw).is_err() {
            return respond(400, "application/json", r#"{"error":"bad gzip","code":"bad_body"}"#);
        }
    } else {
        raw = req.body().to_vec();
    }
    let mode = state.mode.lock().unwrap().clone().unwrap_or(Mode::Accept);
    if let Mode::Status(code, retry_after) = &mode {
        *state.refused.lock().unwrap() += 1;
        let mut r = respond(*code, "application/json", r#"{"error":"busy","code":"overloaded"}"#);
        if let Some(s) = retry_after {
            r.headers_mut().insert("retry-after", s.to_string().parse().unwrap());
        }
        return r;
    }
    state.headers.lock().unwrap().push(req.headers().clone());
    match req.uri().path() {
        "/api/logs" => {
            let mut lines = Vec::new();
            for (i, l) in raw.split(|b| *b == b'\n').filter(|l| !l.is_empty()).enumerate() {
                match serde_json::from_slice::<Value>(l) {
                    Ok(v) => lines.push(v),
                    Err(_) => {
                        let e = format!(r#"{{"error":"not JSON","code":"bad_line","field":"lines[{i}]"}}"#);
                        return respond(400, "application/json", e);
                    }
                }
            }
            if let Mode::MaxLines(max) = &mode
                && lines.len() > *max
            {
                *state.refused.lock().unwrap() += 1;
                return respond(413, "application/json", r#"{"error":"too large","code":"too_large"}"#);
            }
            let mut rejected = Vec::new();
            if let Mode::RefuseContaining(text) = &mode {
                let (bad, good): (Vec<_>, Vec<_>) = lines
                    .into_iter()
                    .enumerate()
                    .partition(|(_, v)| v["body"].as_str().is_some_and(|b| b.contains(text.as_str())));
                if good.is_empty() {
                    *state.refused.lock().unwrap() += 1;
                    let line = bad.first().map_or(1, |(i, _)| i + 1);
                    let e = serde_json::json!({
                        "error": format!("line {line}: body is not allowed"),
                        "code": "invalid_field",
                        "field": format!("line {line}"),
                    });
                    return respond(400, "application/json", e.to_string());
                }
                rejected = bad
                    .iter()
                    .map(|(i, _)| serde_json::json!({"line": i + 1, "error": "body is not allowed"}))
                    .collect();
                lines = good.into_iter().map(|(_, v)| v).collect();
            }
            let n = lines.len();
            state.lines.lock().unwrap().extend(lines);
            let answer = serde_json::json!({"accepted": n, "rejected": rejected});
            respond(200, "application/json", answer.to_string())
        }
        "/v1/logs" => match ExportLogsServiceRequest::decode(&raw[..]) {
            Ok(r) => {
                state.otlp.lock().unwrap().push(r);
                respond(200, "application/x-protobuf", ExportLogsServiceResponse::default().encode_to_vec())
            }
            Err(_) => respond(400, "application/json", r#"{"error":"bad protobuf"}"#),
        },
        _ => respond(404, "application/json", r#"{"error":"not found"}"#),
    }
}
