//! Prints per-column sizes of trace blocks: `cargo run --release -p signalbox-events --example blockstat -- DIR`.
fn main() -> Result<(), String> {
    let dir = std::env::args().nth(1).ok_or("usage: blockstat DATA/traces/blocks")?;
    let list = |d: &std::path::Path| std::fs::read_dir(d).map_err(|e| format!("cannot read {}: {e}", d.display()));
    let mut files = Vec::new();
    for p in list(dir.as_ref())?.flatten() {
        let p = p.path();
        if p.is_dir() {
            files.extend(list(&p)?.flatten().map(|b| b.path()));
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
        "rows",
        "origin",
        "links",
    ];
    let mut raw = [0u64; 15];
    let mut comp = [0u64; 15];
    let mut spans = 0u64;
    let mut total = 0u64;
    for f in files.iter().take(50) {
        let corrupt = |_| format!("{} is not a readable block", f.display());
        let b = signalbox_events::spans::block::open(f).map_err(corrupt)?;
        spans += b.meta.spans as u64;
        total += b.meta.file_bytes;
        let l = b.load().map_err(corrupt)?;
        for ((c, r), (comp, raw)) in l.sizes().into_iter().zip(comp.iter_mut().zip(raw.iter_mut())) {
            *comp += c as u64;
            *raw += r as u64;
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
    Ok(())
}
