//! A small HTTP client for tests (HTTP/1.1, or h2c with prior knowledge).

use bytes::Bytes;
use http::{HeaderMap, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::time::Duration;

/// A response read whole.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A pooled client.
#[derive(Clone)]
pub struct Http {
    inner: Client<HttpConnector, Full<Bytes>>,
}

impl Default for Http {
    fn default() -> Self {
        Self::new()
    }
}

impl Http {
    /// HTTP/1.1 with keep-alive.
    pub fn new() -> Self {
        Http { inner: Client::builder(TokioExecutor::new()).build_http() }
    }

    /// HTTP/2 over clear text with prior knowledge.
    pub fn h2() -> Self {
        Http { inner: Client::builder(TokioExecutor::new()).http2_only(true).build_http() }
    }

    /// GET `url`.
    pub async fn get(&self, url: &str) -> Resp {
        self.send(Method::GET, url, &[], Bytes::new()).await
    }

    /// Sends a request and reads the whole response (10 s limit).
    pub async fn send(&self, method: Method, url: &str, headers: &[(&str, &str)], body: impl Into<Bytes>) -> Resp {
        self.try_send(method, url, headers, body).await.unwrap_or_else(|e| panic!("{url}: {e}"))
    }

    /// Like [`send`](Self::send), returning transport errors instead of panicking.
    pub async fn try_send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Result<Resp, String> {
        let mut b = Request::builder().method(method).uri(url);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let req = b.body(Full::new(body.into())).map_err(|e| e.to_string())?;
        let fut = async {
            let resp = self.inner.request(req).await.map_err(|e| format!("{e:?}"))?;
            let (parts, body) = resp.into_parts();
            let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
            Ok(Resp { status: parts.status.as_u16(), headers: parts.headers, body })
        };
        tokio::time::timeout(Duration::from_secs(10), fut).await.map_err(|_| "timed out".to_string())?
    }
}
