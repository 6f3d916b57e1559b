//! The event store's span encoding and write-ahead log records: reading arbitrary bytes
//! never panics or allocates without bound.
#![no_main]
use signalbox_events::container::wal;
use signalbox_events::spans::codec::{Origins, Reader, decode_batch, get_span, get_span_v1};
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // Format 1 spans, then format 2: dictionaries and spans naming them.
    let mut r = Reader::new(data);
    while !r.done() {
        if get_span_v1(&mut r).is_err() {
            break;
        }
    }
    let mut r = Reader::new(data);
    if let Ok((resources, scopes)) = Origins::get(&mut r) {
        while !r.done() {
            if get_span(&mut r, &resources, &scopes).is_err() {
                break;
            }
        }
    }
    let dir = std::env::temp_dir().join(format!("sbx-fuzz-wal-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("seg-0000000000000001.wal");
    if std::fs::write(&path, data).is_ok()
        && let Ok(batches) = wal::read_segment(&dir, 1)
    {
        for (count, payload) in batches {
            let _ = decode_batch(count, &payload);
        }
    }
});
