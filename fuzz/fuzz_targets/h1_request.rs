//! The gateway's strict HTTP/1 request framing (`signalbox_gateway::h1`): a head parser, a
//! chunked-body checker and the per-connection tracker that runs before hyper. None may
//! panic, and the tracker must reach the same verdict (refuse or not) whether a connection's
//! bytes arrive in one read or split at arbitrary points.
#![no_main]
use signalbox_gateway::h1::framing::{Tracker, Verdict};

fn refuses(reads: &[&[u8]]) -> bool {
    let mut t = Tracker::new(64 * 1024);
    reads.iter().any(|r| matches!(t.feed(r), Verdict::Refuse { .. }))
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = signalbox_gateway::h1::head::parse(data);
    let _ = signalbox_gateway::h1::chunked::Chunked::default().feed(data);
    let Some((&seed, bytes)) = data.split_first() else { return };
    let whole = refuses(&[bytes]);
    // Split points derived from the seed byte: every `step` bytes.
    let step = usize::from(seed % 16) + 1;
    let reads: Vec<&[u8]> = bytes.chunks(step).collect();
    assert_eq!(whole, refuses(&reads), "split every {step} bytes");
});
