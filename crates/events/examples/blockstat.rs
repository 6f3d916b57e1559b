//! Prints per-column sizes of trace blocks: `cargo run --release -p signalbox-events --example blockstat -- DIR`.
fn main() {
    let dir = std::env::args().nth(1).expect("a blocks directory");
    let mut files = Vec::new();
    for p in std::fs::read_dir(&dir).unwrap() {
        let p = p.unwrap().path();
        if p.is_dir() {
            for b in std::fs::read_dir(&p).unwrap() {
                files.push(b.unwrap().path());
            }
        }
    }
    let names = [
        "trace",
        "span",
        "parent",
        "start",
        "duration",
        "service",
        "name",
        "flags",
        "text",
        "attrs",
        "events",
        "parent-ext",
    ];
    let mut raw = [0u64; 12];
    let mut comp = [0u64; 12];
    let mut spans = 0u64;
    let mut total = 0u64;
    for f in files.iter().take(50) {
        let b = signalbox_events::block::open(f).unwrap();
        spans += b.meta.spans as u64;
        total += b.meta.file_bytes;
        let l = b.load().unwrap();
        for (i, (c, r)) in l.sizes().into_iter().enumerate() {
            comp[i] += c as u64;
            raw[i] += r as u64;
        }
    }
    println!("{} blocks, {spans} spans, {:.1} B/span on disk", files.len().min(50), total as f64 / spans as f64);
    for i in 0..names.len() {
        println!(
            "{:10} raw {:6.1} B/span  compressed {:6.1} B/span",
            names[i],
            raw[i] as f64 / spans as f64,
            comp[i] as f64 / spans as f64
        );
    }
}
