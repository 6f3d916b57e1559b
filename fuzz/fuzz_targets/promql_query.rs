//! PromQL: any query text parses or fails with an error, and whatever parses evaluates (as
//! an instant and as a range query) or fails with an error, never a panic.
#![no_main]
use signalbox_metrics::promql::Engine;
use signalbox_metrics::storage::{MemStorage, stale_nan};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(query) = std::str::from_utf8(data) else { return };
    let mut db = MemStorage::default();
    for (i, job) in ["api", "web"].into_iter().enumerate() {
        let labels = vec![("__name__".to_string(), "up".to_string()), ("job".to_string(), job.to_string())];
        for k in 0..10i64 {
            let v = if k == 6 && i == 1 { stale_nan() } else { (k as f64) * (i as f64 + 1.0) };
            db.add(labels.clone(), k * 15_000, v);
        }
    }
    let engine =
        Engine { timeout: std::time::Duration::from_millis(200), max_samples: 100_000, ..Engine::default() };
    let _ = engine.instant(&db, query, 120_000);
    let _ = engine.range(&db, query, 0, 150_000, 15_000);
});
