//! Block files of both schemas: opening, loading and reading every column of arbitrary bytes
//! never panics.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("sbx-fuzz-block-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("b.blk");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    if let Ok(b) = signalbox_events::spans::block::open(&path)
        && let Ok(l) = b.load()
    {
        let all: Vec<usize> = (0..l.n.min(1 << 16)).collect();
        let _ = l.spans(&all);
        let _ = l.spans_range(0..l.n.min(1 << 16));
        let _ = l.attributes();
        let _ = l.trace_ids();
    }
    if let Ok(b) = signalbox_events::logs::block::Block::read(&path) {
        let _ = b.records();
    }
});
