//! Unit tests of the strict framing rules.

use super::Refusal;
use super::chunked::Chunked;
use super::framing::{Tracker, Verdict};
use super::head::{BodyFraming, Parsed, RequestHead, parse};

fn framing(head: &str) -> Result<BodyFraming, Refusal> {
    match parse(head.as_bytes())? {
        Parsed::Head(h) => {
            assert_eq!(h.len, head.len());
            Ok(h.framing)
        }
        other => panic!("{other:?}: {head:?}"),
    }
}

fn with(headers: &str) -> Result<BodyFraming, Refusal> {
    framing(&format!("POST / HTTP/1.1\r\nhost: x\r\n{headers}\r\n"))
}

#[test]
fn legal_framings() {
    assert_eq!(with(""), Ok(BodyFraming::None));
    assert_eq!(with("content-length: 5\r\n"), Ok(BodyFraming::Length(5)));
    assert_eq!(with("content-length:  5 \r\n"), Ok(BodyFraming::Length(5)));
    assert_eq!(with("transfer-encoding: chunked\r\n"), Ok(BodyFraming::Chunked));
    assert_eq!(with("Transfer-Encoding: CHUNKED\r\n"), Ok(BodyFraming::Chunked));
    assert_eq!(framing("GET / HTTP/1.1\nhost: x\n\n"), Ok(BodyFraming::None), "bare LF line ends are allowed");
    assert_eq!(parse(b"GET / HTTP/1.1\r\nhost: x\r\n"), Ok(Parsed::Partial));
}

#[test]
fn ambiguous_framings_are_refused() {
    use Refusal::*;
    for (headers, why) in [
        ("content-length: 5\r\ntransfer-encoding: chunked\r\n", ContentLengthWithTransferEncoding),
        ("transfer-encoding: chunked\r\ncontent-length: 5\r\n", ContentLengthWithTransferEncoding),
        ("content-length: 5\r\ncontent-length: 5\r\n", DuplicateContentLength),
        ("content-length: 5\r\ncontent-length: 6\r\n", DuplicateContentLength),
        ("content-length: 5, 5\r\n", InvalidContentLength),
        ("content-length: +5\r\n", InvalidContentLength),
        ("content-length: -5\r\n", InvalidContentLength),
        ("content-length: \r\n", InvalidContentLength),
        ("content-length: 99999999999999999999\r\n", InvalidContentLength),
        ("transfer-encoding: gzip, chunked\r\n", UnsupportedTransferEncoding),
        ("transfer-encoding: chunked, gzip\r\n", UnsupportedTransferEncoding),
        ("transfer-encoding: identity\r\n", UnsupportedTransferEncoding),
        ("transfer-encoding: xchunked\r\n", UnsupportedTransferEncoding),
        ("transfer-encoding: chunked\r\ntransfer-encoding: chunked\r\n", UnsupportedTransferEncoding),
        ("x-a: 1\r\n folded\r\n", MalformedHead),
        ("x-a: 1\r2\r\n", MalformedHead),
        ("x-a: 1\x002\r\n", MalformedHead),
        ("content-length : 5\r\n", MalformedHead),
    ] {
        assert_eq!(with(headers), Err(why), "{headers:?}");
    }
    assert_eq!(framing("GET / HTTP/1.1\rhost: x\r\n\r\n"), Err(MalformedHead));
    assert_eq!(framing("POST / HTTP/1.0\r\ntransfer-encoding: chunked\r\n\r\n"), Err(TransferEncodingInHttp10));
}

fn chunked(body: &[u8]) -> Result<(usize, bool), Refusal> {
    Chunked::default().feed(body)
}

#[test]
fn chunked_bodies_end_where_their_framing_says() {
    let body = b"5\r\nhello\r\n3;a=b\r\nabc\r\n0\r\nx-t: 1\r\n\r\nNEXT";
    assert_eq!(chunked(body), Ok((body.len() - 4, true)));
    assert_eq!(chunked(b"0\r\n\r\n"), Ok((5, true)));
    assert_eq!(chunked(b"A\r\n0123456789\r\n0\r\n\r\n"), Ok((20, true)));
    // Byte by byte: the same end.
    let mut c = Chunked::default();
    for (i, b) in body.iter().enumerate() {
        let (used, done) = c.feed(std::slice::from_ref(b)).unwrap();
        if done {
            assert_eq!((i, used), (body.len() - 5, 1));
            break;
        }
    }
    assert_eq!(chunked(b"5\r\nhel"), Ok((6, false)));
}

#[test]
fn invalid_chunks_are_refused() {
    use Refusal::*;
    for (body, why) in [
        (&b"0x5\r\nhello\r\n0\r\n\r\n"[..], InvalidChunkSize),
        (b"-1\r\nhello\r\n0\r\n\r\n", InvalidChunkSize),
        (b"10000000000000005\r\nhello\r\n", InvalidChunkSize),
        (b"\r\nhello\r\n", InvalidChunkSize),
        (b"5\nhello\r\n", InvalidChunkSize),
        (b"5;a\nhello\r\n", InvalidChunkExtension),
        (b"5;a\rb\r\nhello\r\n", InvalidChunkExtension),
        (b"5;a\x00\r\nhello\r\n", InvalidChunkExtension),
        (b"5\r\nhelloX\r\n", InvalidChunkFraming),
        (b"5\r\nhello\n0\r\n\r\n", InvalidChunkFraming),
        (b"0\r\nx-t: 1\n\r\n", InvalidChunkFraming),
    ] {
        assert_eq!(chunked(body), Err(why), "{:?}", String::from_utf8_lossy(body));
    }
}

#[test]
fn the_tracker_follows_pipelined_and_split_messages() {
    let mut t = Tracker::new(64 * 1024);
    let a = b"POST /a HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\n\r\nabc";
    let b = b"POST /b HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
    let all = [&a[..], &b[..], b"GET /c HTTP/1.1\r\nhost: x\r\n\r\n"].concat();
    assert_eq!(t.feed(&all), Verdict::Pass);
    // The same bytes one at a time.
    let mut t = Tracker::new(64 * 1024);
    for b in &all {
        assert_eq!(t.feed(std::slice::from_ref(b)), Verdict::Pass);
    }
    // A smuggled second request is refused at its own start; the first one passes.
    let mut t = Tracker::new(64 * 1024);
    let bad = b"POST /s HTTP/1.1\r\nhost: x\r\ncontent-length: 1\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n";
    let v = t.feed(&[&a[..], &bad[..]].concat());
    assert_eq!(v, Verdict::Refuse { at: a.len(), head_passed: false, why: Refusal::ContentLengthWithTransferEncoding });
    // A bad chunk in a later read belongs to a message that started earlier.
    let mut t = Tracker::new(64 * 1024);
    assert_eq!(
        t.feed(b"POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n"),
        Verdict::Pass
    );
    assert_eq!(t.feed(b"zz\r\n"), Verdict::Refuse { at: 0, head_passed: true, why: Refusal::InvalidChunkSize });
    // A head completed in this read: hyper has only its start, so a bad chunk right after it
    // still stops the whole message.
    let mut t = Tracker::new(64 * 1024);
    assert_eq!(t.feed(b"POST / HTTP/1.1\r\nhost: "), Verdict::Pass);
    assert_eq!(
        t.feed(b"x\r\ntransfer-encoding: chunked\r\n\r\n-1\r\n"),
        Verdict::Refuse { at: 0, head_passed: false, why: Refusal::InvalidChunkSize }
    );
    // A head split across reads is judged whole.
    let mut t = Tracker::new(64 * 1024);
    assert_eq!(t.feed(b"POST / HTTP/1.1\r\ncontent-len"), Verdict::Pass);
    assert_eq!(
        t.feed(b"gth: 2\r\ncontent-length: 2\r\n\r\nab"),
        Verdict::Refuse { at: 0, head_passed: false, why: Refusal::DuplicateContentLength }
    );
}

#[test]
fn the_tracker_leaves_http2_and_oversized_heads_alone() {
    let mut t = Tracker::new(64 * 1024);
    assert_eq!(t.feed(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00"), Verdict::Pass);
    assert!(t.is_off());
    let mut t = Tracker::new(64 * 1024);
    assert_eq!(t.feed(b"PR"), Verdict::Pass);
    assert_eq!(t.feed(b"I * HTTP/2.0\r\n\r\nSM"), Verdict::Pass);
    assert!(t.is_off(), "a preface split across reads");
    let mut t = Tracker::new(64 * 1024);
    assert_eq!(t.feed(b"P"), Verdict::Pass);
    assert!(matches!(
        t.feed(b"OST / HTTP/1.1\r\ncontent-length: 1\r\ncontent-length: 1\r\n\r\n"),
        Verdict::Refuse { .. }
    ));
    let mut t = Tracker::new(100);
    assert_eq!(t.feed(b"GET / HTTP/1.1\r\n"), Verdict::Pass);
    assert_eq!(t.feed(&[b'x'; 200]), Verdict::Pass);
    assert!(t.is_off(), "hyper answers 431 itself");
}

/// The fuzz target's property (fuzz/fuzz_targets/h1_request.rs) on stable, over legal and
/// ambiguous connections and their byte-level mutations: the verdict does not depend on how
/// the bytes are split into reads.
#[test]
fn verdicts_do_not_depend_on_read_boundaries() {
    let refuses = |reads: &[&[u8]]| {
        let mut t = Tracker::new(64 * 1024);
        reads.iter().any(|r| matches!(t.feed(r), Verdict::Refuse { .. }))
    };
    let corpus: [&[u8]; 6] = [
        b"POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n5;a=b\r\nhello\r\n0\r\nt: 1\r\n\r\nGET / HTTP/1.1\r\n\r\n",
        b"POST / HTTP/1.1\r\ncontent-length: 3\r\n\r\nabcPOST / HTTP/1.1\r\ncontent-length: 1\r\ntransfer-encoding: chunked\r\n\r\n",
        b"GET / HTTP/1.1\nhost: x\n\nGET /b HTTP/1.1\r\nx: 1\r\n folded\r\n\r\n",
        b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n10000000000000000\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        b"POST / HTTP/1.0\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
    ];
    let mut rng = fastrand::Rng::with_seed(12);
    for base in corpus {
        for round in 0..200 {
            let mut bytes = base.to_vec();
            if round > 0 {
                let at = rng.usize(..bytes.len());
                match rng.u8(..3) {
                    0 => bytes[at] = rng.u8(..),
                    1 => bytes.insert(at, *b"\r\n:;0 x".get(rng.usize(..8)).unwrap_or(&b'x')),
                    _ => {
                        bytes.remove(at);
                    }
                }
            }
            let whole = refuses(&[&bytes]);
            for step in 1..=16 {
                let reads: Vec<&[u8]> = bytes.chunks(step).collect();
                assert_eq!(whole, refuses(&reads), "split every {step}: {:?}", String::from_utf8_lossy(&bytes));
            }
        }
    }
}

#[test]
fn a_request_head_is_kept_as_offsets_in_a_reused_buffer() {
    let mut head = RequestHead::default();
    let a = b"GET /a?b=1 HTTP/1.1\r\nhost: x\r\nx-y:  z \r\n\r\n";
    assert!(matches!(head.parse(a), Ok(Parsed::Head(_))));
    assert_eq!(RequestHead::slice(a, &head.method), b"GET");
    assert_eq!(RequestHead::slice(a, &head.target), b"/a?b=1");
    assert_eq!(head.minor_version, 1);
    let pairs: Vec<(&[u8], &[u8])> =
        head.headers.iter().map(|(n, v)| (RequestHead::slice(a, n), RequestHead::slice(a, v))).collect();
    assert_eq!(
        pairs,
        vec![(&b"host"[..], &b"x"[..]), (&b"x-y"[..], &b"z"[..])],
        "values without surrounding whitespace"
    );
    let capacity = head.headers.capacity();
    let b = b"POST / HTTP/1.0\r\ncontent-length: 2\r\n\r\nok";
    assert_eq!(head.parse(b).map(|p| matches!(p, Parsed::Head(h) if h.framing == BodyFraming::Length(2))), Ok(true));
    assert_eq!(head.minor_version, 0);
    assert_eq!(head.headers.len(), 1);
    assert_eq!(head.headers.capacity(), capacity, "no new allocation");
    assert_eq!(head.parse(b"POST / HTTP/1.1\r\ncontent-length: 1, 1\r\n\r\n"), Err(Refusal::InvalidContentLength));
}

/// `feed_normalised` over `reads`: the normal form, and the verdict.
fn normalised(reads: &[&[u8]]) -> (Vec<u8>, Result<bool, Refusal>) {
    let mut c = Chunked::default();
    let mut out = Vec::new();
    for r in reads {
        match c.feed_normalised(r, &mut out) {
            Ok((_, true)) => return (out, Ok(true)),
            Ok(_) => {}
            Err(e) => return (out, Err(e)),
        }
    }
    (out, Ok(false))
}

#[test]
fn chunk_extensions_are_left_out_of_the_normal_form() {
    let body: &[u8] = b"5;a=b;c=\"d\"\r\nhello\r\n6 \t; x\r\n world\r\n0;last\r\nt: 1\r\n\r\n";
    let (out, done) = normalised(&[body]);
    assert_eq!(done, Ok(true));
    assert_eq!(out, b"5\r\nhello\r\n6\r\n world\r\n0\r\nt: 1\r\n\r\n");
    // The same whatever the read boundaries, and the same verdict as `feed`.
    let split: Vec<&[u8]> = body.chunks(3).collect();
    assert_eq!(normalised(&split), (out.clone(), Ok(true)));
    assert_eq!(chunked(body), Ok((body.len(), true)));
    // A body without extensions passes unchanged; data is counted.
    let plain: &[u8] = b"3\r\nabc\r\n0\r\n\r\n";
    let mut c = Chunked::default();
    let mut o = Vec::new();
    assert_eq!(c.feed_normalised(plain, &mut o), Ok((plain.len(), true)));
    assert_eq!((o.as_slice(), c.data_len()), (plain, 3));
    // Invalid framing is refused as `feed` refuses it.
    assert_eq!(normalised(&[b"5;\x01\r\nhello\r\n0\r\n\r\n"]).1, Err(Refusal::InvalidChunkExtension));
    assert_eq!(normalised(&[b"5\r\nhelloX\r\n"]).1, Err(Refusal::InvalidChunkFraming));
}
