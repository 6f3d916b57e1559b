//! A server-sent-events client for tests: connects, then yields `(event, data)` pairs as
//! they arrive.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::mpsc;

/// Opens `url` (with optional headers) and streams its events. The stream ends when the
/// server closes it or the receiver is dropped.
pub async fn connect(url: &str, headers: &[(&str, &str)]) -> mpsc::Receiver<(String, String)> {
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut b = http::Request::get(url).header("accept", "text/event-stream");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let resp = client.request(b.body(Empty::new()).expect("request")).await.expect("SSE connect");
    assert_eq!(resp.status(), 200, "SSE status");
    let (tx, rx) = mpsc::channel(1024);
    let mut body = resp.into_body();
    tokio::spawn(async move {
        let mut buf = String::new();
        while let Some(Ok(frame)) = body.frame().await {
            let Some(data) = frame.data_ref() else { continue };
            buf.push_str(&String::from_utf8_lossy(data));
            while let Some(end) = buf.find("\n\n") {
                let block: String = buf.drain(..end + 2).collect();
                let mut event = "message".to_owned();
                let mut payload = String::new();
                for line in block.lines() {
                    if let Some(e) = line.strip_prefix("event:") {
                        event = e.trim().to_owned();
                    } else if let Some(d) = line.strip_prefix("data:") {
                        if !payload.is_empty() {
                            payload.push('\n');
                        }
                        payload.push_str(d.strip_prefix(' ').unwrap_or(d));
                    }
                }
                if payload.is_empty() && event == "message" {
                    continue; // keep-alive comment
                }
                if tx.send((event, payload)).await.is_err() {
                    return;
                }
            }
        }
    });
    rx
}
