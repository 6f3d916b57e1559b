//! Response heads parsed into their framing, and heads written.

use super::*;

fn parse(raw: &str) -> ResponseHead {
    parse_response(raw.as_bytes(), false).unwrap().expect("complete head")
}

#[test]
fn a_response_head_gives_its_framing_and_whether_the_connection_stays() {
    let h = parse("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello");
    assert_eq!((h.framing, h.keep_alive, h.len), (RespFraming::Length(5), true, 38));
    let h = parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
    assert_eq!((h.framing, h.keep_alive), (RespFraming::Chunked, true));
    let h = parse("HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n");
    assert_eq!(h.framing, RespFraming::Chunked);
    let h = parse("HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n");
    assert_eq!((h.framing, h.keep_alive), (RespFraming::Close, false), "a body that ends with the connection");
    let h = parse("HTTP/1.1 200 OK\r\n\r\n");
    assert_eq!((h.framing, h.keep_alive), (RespFraming::Close, false));
    let h = parse("HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n");
    assert_eq!((h.framing, h.keep_alive), (RespFraming::Chunked, false), "chunked wins; not reused");
    let h = parse("HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
    assert_eq!((h.framing, h.keep_alive), (RespFraming::Length(2), false));
    let h = parse("HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok");
    assert!(!h.keep_alive, "HTTP/1.0 closes by default");
    let h = parse("HTTP/1.0 200 OK\r\ncontent-length: 2\r\nconnection: keep-alive\r\n\r\nok");
    assert!(h.keep_alive);
    for status in ["204 No Content", "304 Not Modified", "100 Continue"] {
        let h = parse(&format!("HTTP/1.1 {status}\r\ncontent-length: 9\r\n\r\n"));
        assert_eq!(h.framing, RespFraming::None, "{status}");
    }
    let h = parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n", true).unwrap().unwrap();
    assert_eq!((h.framing, h.keep_alive), (RespFraming::None, true), "the answer to HEAD has no body");
}

#[test]
fn incomplete_and_invalid_heads() {
    assert!(parse_response(b"HTTP/1.1 200 OK\r\ncontent-le", false).unwrap().is_none());
    for bad in [
        "HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\n",
        "HTTP/1.1 200 OK\r\ncontent-length: five\r\n\r\n",
        "HTTP/1.1 2000 OK\r\n\r\n",
        "HTTP/1.1 200 OK\r\nbad header\r\n\r\n",
        "NOT HTTP\r\n\r\n",
    ] {
        assert!(parse_response(bad.as_bytes(), false).is_err(), "{bad:?}");
    }
    // Equal repeated lengths are tolerated (RFC 9112 §6.3 allows a recipient to).
    assert_eq!(
        parse("HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 5\r\n\r\n").framing,
        RespFraming::Length(5)
    );
}

#[test]
fn heads_are_written_with_the_framing_they_announce() {
    let mut headers = HeaderMap::new();
    headers.insert("content-length", HeaderValue::from_static("999"));
    headers.insert("connection", HeaderValue::from_static("keep-alive"));
    headers.insert("x-a", HeaderValue::from_static("1"));
    headers.insert("date", HeaderValue::from_static("Wed, 02 Dec 2026 10:00:00 GMT"));
    let mut out = Vec::new();
    response_head(&mut out, StatusCode::OK, &headers, RespFraming::Length(5), false);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "HTTP/1.1 200 OK\r\nx-a: 1\r\ndate: Wed, 02 Dec 2026 10:00:00 GMT\r\ncontent-length: 5\r\n\r\n"
    );
    let mut out = Vec::new();
    response_head(&mut out, StatusCode::NOT_FOUND, &HeaderMap::new(), RespFraming::Chunked, true);
    let text = String::from_utf8(out).unwrap();
    assert!(text.starts_with("HTTP/1.1 404 Not Found\r\ntransfer-encoding: chunked\r\nconnection: close\r\ndate: "));
    assert!(text.ends_with(" GMT\r\n\r\n"), "{text}");
    let mut out = Vec::new();
    response_head(&mut out, StatusCode::OK, &headers, RespFraming::None, false);
    assert!(String::from_utf8(out).unwrap().contains("content-length: 999\r\n"), "a HEAD answer keeps its length");

    let mut out = Vec::new();
    let mut h = HeaderMap::new();
    h.insert("host", HeaderValue::from_static("x"));
    h.insert("content-length", HeaderValue::from_static("7"));
    h.insert("expect", HeaderValue::from_static("100-continue"));
    request_head(&mut out, &Method::POST, "/a?b", &h, BodyFraming::Length(12345678901));
    assert_eq!(String::from_utf8(out).unwrap(), "POST /a?b HTTP/1.1\r\nhost: x\r\ncontent-length: 12345678901\r\n\r\n");
    let mut out = Vec::new();
    request_head(&mut out, &Method::GET, "/", &HeaderMap::new(), BodyFraming::Chunked);
    assert_eq!(String::from_utf8(out).unwrap(), "GET / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n");
}

#[test]
fn connection_and_expect_tokens() {
    let mut h = HeaderMap::new();
    h.append("connection", HeaderValue::from_static("keep-alive, Close"));
    assert!(wants_close(&h));
    h.clear();
    h.append("connection", HeaderValue::from_static("keep-alive"));
    assert!(!wants_close(&h));
    h.insert("expect", HeaderValue::from_static("100-Continue"));
    assert!(expects_continue(&h));
}
