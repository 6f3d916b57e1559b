//! Strict HTTP/1.1 request framing: the rules that keep the gateway and its upstreams from
//! disagreeing about where a request ends (request smuggling), checked before hyper parses
//! anything, and the groundwork of an HTTP/1 fast path (issue 12).
//!
//! A request is refused, and nothing of it forwarded, when its framing is ambiguous:
//! Content-Length together with Transfer-Encoding, more than one Content-Length (even equal
//! ones) or one that is not plain digits, a Transfer-Encoding other than a single `chunked`
//! (HTTP/1.0 may not use one at all), obs-fold, a bare CR or NUL in the head, an invalid chunk
//! size or chunk extension, a chunk without its CRLF. hyper alone accepts some of these
//! (it reads Content-Length plus `chunked` as chunked, `gzip, chunked` as chunked, and
//! duplicate equal lengths); nginx refuses them, and so does the gateway. The matrix and the
//! results against nginx are in docs/security.md ("Request smuggling").
//!
//! # Layout
//! - [`head`]: a request head checked with `httparse` (header slots on the stack, no
//!   allocation) into its body framing, or the reason it is refused; [`head::RequestHead`]
//!   keeps the parsed head as offsets into the read buffer, reused across requests, for the
//!   fast path to build on.
//! - [`chunked`]: a byte-at-a-time chunked-body checker that finds where a body ends.
//! - [`framing`]: follows a connection's byte stream message by message with both, so the
//!   server can refuse a request before hyper sees it.

pub mod chunked;
pub mod framing;
pub mod head;

/// Why a request's framing is refused. Every variant answers `400 Bad Request`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The head is not valid HTTP/1 (bare CR, NUL, obs-fold, a bad token or line).
    MalformedHead,
    ContentLengthWithTransferEncoding,
    DuplicateContentLength,
    InvalidContentLength,
    /// A Transfer-Encoding other than a single `chunked`.
    UnsupportedTransferEncoding,
    TransferEncodingInHttp10,
    InvalidChunkSize,
    InvalidChunkExtension,
    /// A chunk's data not followed by CRLF, or a bad trailer line.
    InvalidChunkFraming,
}

impl Refusal {
    /// The message in the gateway's JSON answer.
    pub fn message(self) -> &'static str {
        match self {
            Refusal::MalformedHead => "the request is not valid HTTP",
            Refusal::ContentLengthWithTransferEncoding => {
                "the request carries both Content-Length and Transfer-Encoding (ambiguous framing)"
            }
            Refusal::DuplicateContentLength => "the request carries more than one Content-Length",
            Refusal::InvalidContentLength => "Content-Length is not a decimal number",
            Refusal::UnsupportedTransferEncoding => "Transfer-Encoding must be exactly `chunked`",
            Refusal::TransferEncodingInHttp10 => "an HTTP/1.0 request cannot use Transfer-Encoding",
            Refusal::InvalidChunkSize => "a chunk size is not a valid hexadecimal number",
            Refusal::InvalidChunkExtension => "a chunk extension is not valid",
            Refusal::InvalidChunkFraming => "the chunked body is not validly framed",
        }
    }
}

#[cfg(test)]
mod tests;
