//! HTTP/1.1 heads on the wire: the request head sent upstream, the upstream's response head
//! parsed (`httparse`) into its status, headers and body framing, and the response head
//! written to the client in one buffer.

use crate::h1::head::BodyFraming;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};
use std::cell::RefCell;

/// Most header lines an upstream response may have.
const MAX_RESPONSE_HEADERS: usize = 128;

/// How a response's body is framed on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RespFraming {
    /// No body (HEAD, 1xx, 204, 304).
    None,
    Length(u64),
    Chunked,
    /// Until the upstream closes the connection.
    Close,
}

/// An upstream response head.
pub struct ResponseHead {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// Bytes of the head in the read buffer.
    pub len: usize,
    pub framing: RespFraming,
    /// The upstream keeps the connection open after this response.
    pub keep_alive: bool,
}

/// Why an upstream response head is refused (the try counts as a reset).
#[derive(Debug, PartialEq, Eq)]
pub struct BadResponse;

/// Parses the response head at the start of `buf` (`Ok(None)`: not complete yet).
pub fn parse_response(buf: &[u8], head_request: bool) -> Result<Option<ResponseHead>, BadResponse> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
    let mut resp = httparse::Response::new(&mut slots);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(BadResponse),
    };
    let status = StatusCode::from_u16(resp.code.unwrap_or(0)).map_err(|_| BadResponse)?;
    let mut keep_alive = resp.version == Some(1);
    let mut length: Option<u64> = None;
    let mut chunked = None;
    let mut headers = HeaderMap::with_capacity(resp.headers.len());
    for h in resp.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| BadResponse)?;
        let value = HeaderValue::from_bytes(h.value).map_err(|_| BadResponse)?;
        if name == header::CONTENT_LENGTH {
            let n = std::str::from_utf8(h.value).ok().and_then(|v| v.trim().parse::<u64>().ok()).ok_or(BadResponse)?;
            if length.is_some_and(|l| l != n) {
                return Err(BadResponse);
            }
            length = Some(n);
        } else if name == header::TRANSFER_ENCODING {
            let last = h.value.rsplit(|b| *b == b',').next().unwrap_or_default();
            chunked = Some(last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if name == header::CONNECTION {
            for token in h.value.split(|b| *b == b',') {
                let t = token.trim_ascii();
                if t.eq_ignore_ascii_case(b"close") {
                    keep_alive = false;
                } else if t.eq_ignore_ascii_case(b"keep-alive") && resp.version == Some(0) {
                    keep_alive = true;
                }
            }
        }
        headers.append(name, value);
    }
    let code = status.as_u16();
    let framing = if head_request || status.is_informational() || code == 204 || code == 304 {
        RespFraming::None
    } else {
        match (chunked, length) {
            (Some(true), l) => {
                // Content-Length beside chunked: chunked wins (RFC 9112 §6.3), and the
                // connection is not trusted further.
                if l.is_some() {
                    keep_alive = false;
                }
                RespFraming::Chunked
            }
            (Some(false), _) => RespFraming::Close,
            (None, Some(n)) => RespFraming::Length(n),
            (None, None) => RespFraming::Close,
        }
    };
    if framing == RespFraming::Close {
        keep_alive = false;
    }
    Ok(Some(ResponseHead { status, headers, len, framing, keep_alive }))
}

/// Appends the request head for the upstream: the request line, `headers` (framing headers
/// excepted) and the body's framing.
pub(crate) fn request_head(out: &mut Vec<u8>, method: &Method, target: &str, headers: &HeaderMap, body: BodyFraming) {
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers {
        if name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING || name == header::EXPECT {
            continue;
        }
        push_header(out, name.as_str().as_bytes(), value.as_bytes());
    }
    match body {
        BodyFraming::None => {}
        BodyFraming::Length(n) => {
            let mut digits = itoa_buf();
            push_header(out, b"content-length", format_u64(&mut digits, n));
        }
        BodyFraming::Chunked => push_header(out, b"transfer-encoding", b"chunked"),
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends the response head for the client. `close`: the connection closes after it.
pub(crate) fn response_head(
    out: &mut Vec<u8>,
    status: StatusCode,
    headers: &HeaderMap,
    framing: RespFraming,
    close: bool,
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("Unknown").as_bytes());
    out.extend_from_slice(b"\r\n");
    let keep_length = framing == RespFraming::None;
    for (name, value) in headers {
        if name == header::TRANSFER_ENCODING
            || name == header::CONNECTION
            || (name == header::CONTENT_LENGTH && !keep_length)
        {
            continue;
        }
        push_header(out, name.as_str().as_bytes(), value.as_bytes());
    }
    match framing {
        RespFraming::None | RespFraming::Close => {}
        RespFraming::Length(n) => {
            let mut digits = itoa_buf();
            push_header(out, b"content-length", format_u64(&mut digits, n));
        }
        RespFraming::Chunked => push_header(out, b"transfer-encoding", b"chunked"),
    }
    if close || framing == RespFraming::Close {
        push_header(out, b"connection", b"close");
    }
    if !headers.contains_key(header::DATE) {
        DATE.with(|d| {
            let mut d = d.borrow_mut();
            let now = std::time::SystemTime::now();
            let secs = now.duration_since(std::time::UNIX_EPOCH).map_or(0, |t| t.as_secs());
            if d.0 != secs {
                *d = (secs, httpdate::fmt_http_date(now));
            }
            push_header(out, b"date", d.1.as_bytes());
        });
    }
    out.extend_from_slice(b"\r\n");
}

thread_local! {
    /// The `Date` header, formatted once a second per worker.
    static DATE: RefCell<(u64, String)> = const { RefCell::new((0, String::new())) };
}

fn push_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

fn itoa_buf() -> [u8; 20] {
    [0u8; 20]
}

fn format_u64(buf: &mut [u8; 20], mut n: u64) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

/// Whether a request's `Connection` header asks to close (HTTP/1.1).
pub(crate) fn wants_close(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .any(|v| v.as_bytes().split(|b| *b == b',').any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close")))
}

/// Whether a request asks for `100 Continue` before sending its body.
pub(crate) fn expects_continue(headers: &HeaderMap) -> bool {
    headers.get(header::EXPECT).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

#[cfg(test)]
mod tests;
