//! The gateway's strict HTTP/1 request framing (`signalbox_gateway::h1`): a head parser, a
//! chunked-body checker and the per-connection tracker that runs before hyper; and the HTTP/1
//! fast path's upstream response-head parser (`signalbox_gateway::fast::wire`). None may
//! panic, and the tracker must reach the same verdict (refuse or not) whether a connection's
//! bytes arrive in one read or split at arbitrary points. The chunked checker's normal form
//! (what the fast path forwards: extensions left out) must reach the same verdict as the
//! plain check, and be a valid chunked body with the same data that normalises to itself.
#![no_main]
use signalbox_gateway::h1::chunked::Chunked;
use signalbox_gateway::h1::framing::{Tracker, Verdict};

fn refuses(reads: &[&[u8]]) -> bool {
    let mut t = Tracker::new(64 * 1024);
    reads.iter().any(|r| matches!(t.feed(r), Verdict::Refuse { .. }))
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = signalbox_gateway::h1::head::parse(data);
    let plain = Chunked::default().feed(data);
    let mut checker = Chunked::default();
    let mut normal = Vec::new();
    let normalised = checker.feed_normalised(data, &mut normal);
    assert_eq!(plain, normalised, "feed and feed_normalised agree");
    if let Ok((_, true)) = normalised {
        let mut again = Chunked::default();
        let mut twice = Vec::new();
        assert_eq!(again.feed_normalised(&normal, &mut twice), Ok((normal.len(), true)));
        assert_eq!(twice, normal, "the normal form is stable");
        assert_eq!(again.data_len(), checker.data_len(), "the same data");
    }
    let _ = signalbox_gateway::fast::wire::parse_response(data, data.first().is_some_and(|b| b & 1 == 1));
    let Some((&seed, bytes)) = data.split_first() else { return };
    let whole = refuses(&[bytes]);
    // Split points derived from the seed byte: every `step` bytes.
    let step = usize::from(seed % 16) + 1;
    let reads: Vec<&[u8]> = bytes.chunks(step).collect();
    assert_eq!(whole, refuses(&reads), "split every {step} bytes");
});
