//! A request head, parsed by `httparse` with header slots on the stack and checked into the
//! framing of the body that follows.

use super::Refusal;
use std::mem::MaybeUninit;
use std::ops::Range;

/// Most header lines a head may have; more is left to hyper (which answers 431).
pub const MAX_HEADERS: usize = 256;

/// How the request's body is framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body (neither Content-Length nor Transfer-Encoding).
    None,
    Length(u64),
    Chunked,
}

/// A checked request head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    /// Bytes of the head, including its final empty line.
    pub len: usize,
    pub framing: BodyFraming,
    /// The request asks to switch protocols (`Upgrade` or `CONNECT`); what follows may not be
    /// HTTP/1.
    pub upgrade: bool,
}

/// What [`parse`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// The head is not complete yet.
    Partial,
    /// More header lines than [`MAX_HEADERS`]: not judged here.
    TooManyHeaders,
    Head(Head),
}

/// A parsed request head as offsets into the connection's read buffer, kept between requests
/// so parsing allocates nothing once the header list has grown to its working size: the
/// fast path's view of a request (issue 12). Not wired into serving yet.
#[derive(Debug, Default)]
pub struct RequestHead {
    pub method: Range<usize>,
    pub target: Range<usize>,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    /// (name, value) of each header line, in order.
    pub headers: Vec<(Range<usize>, Range<usize>)>,
}

impl RequestHead {
    /// Parses and checks the head at the start of `buf` into `self` (previous contents are
    /// replaced).
    pub fn parse(&mut self, buf: &[u8]) -> Result<Parsed, Refusal> {
        self.headers.clear();
        parse_inner(buf, Some(self))
    }

    /// The bytes of `range` in the buffer the head was parsed from.
    pub fn slice<'a>(buf: &'a [u8], range: &Range<usize>) -> &'a [u8] {
        buf.get(range.clone()).unwrap_or_default()
    }
}

/// Where `part` (a slice of `buf`) lies in `buf`.
fn offsets(buf: &[u8], part: &[u8]) -> Range<usize> {
    let start = (part.as_ptr() as usize).saturating_sub(buf.as_ptr() as usize);
    start..start + part.len()
}

/// Parses and checks the request head at the start of `buf`.
pub fn parse(buf: &[u8]) -> Result<Parsed, Refusal> {
    parse_inner(buf, None)
}

fn parse_inner(buf: &[u8], mut into: Option<&mut RequestHead>) -> Result<Parsed, Refusal> {
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(buf, &mut slots) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(Parsed::Partial),
        Err(httparse::Error::TooManyHeaders) => return Ok(Parsed::TooManyHeaders),
        Err(_) => return Err(Refusal::MalformedHead),
    };
    let http10 = req.version == Some(0);
    let mut length: Option<u64> = None;
    let mut transfer_encoding = false;
    let mut upgrade = req.method.is_some_and(|m| m.eq_ignore_ascii_case("CONNECT"));
    if let Some(out) = into.as_deref_mut() {
        out.method = offsets(buf, req.method.unwrap_or_default().as_bytes());
        out.target = offsets(buf, req.path.unwrap_or_default().as_bytes());
        out.minor_version = req.version.unwrap_or(1);
    }
    for h in req.headers.iter() {
        if let Some(out) = into.as_deref_mut() {
            out.headers.push((offsets(buf, h.name.as_bytes()), offsets(buf, h.value)));
        }
        if h.name.eq_ignore_ascii_case("content-length") {
            if length.is_some() {
                return Err(Refusal::DuplicateContentLength);
            }
            length = Some(content_length(h.value)?);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            if transfer_encoding || !trim(h.value).eq_ignore_ascii_case(b"chunked") {
                return Err(Refusal::UnsupportedTransferEncoding);
            }
            transfer_encoding = true;
        } else if h.name.eq_ignore_ascii_case("upgrade") {
            upgrade = true;
        }
    }
    let framing = match (length, transfer_encoding) {
        (Some(_), true) => return Err(Refusal::ContentLengthWithTransferEncoding),
        (_, true) if http10 => return Err(Refusal::TransferEncodingInHttp10),
        (_, true) => BodyFraming::Chunked,
        (Some(n), false) => BodyFraming::Length(n),
        (None, false) => BodyFraming::None,
    };
    Ok(Parsed::Head(Head { len, framing, upgrade }))
}

/// `1*DIGIT` (RFC 9110 §8.6), at most 19 digits so it fits a u64; no sign, no list.
fn content_length(v: &[u8]) -> Result<u64, Refusal> {
    let v = trim(v);
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return Err(Refusal::InvalidContentLength);
    }
    Ok(v.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
}

fn trim(v: &[u8]) -> &[u8] {
    let start = v.iter().position(|b| !matches!(b, b' ' | b'\t')).unwrap_or(v.len());
    let end = v.iter().rposition(|b| !matches!(b, b' ' | b'\t')).map_or(start, |e| e + 1);
    &v[start..end]
}
