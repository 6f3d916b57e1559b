use super::*;
use crate::container::block::write_atomic;
use crate::logs::eval::{Fields, matches};
use crate::logs::lang::parse;
use crate::logs::page::Page;
use signalbox_core::ids::{SpanId, TraceId};
use signalbox_core::log::Severity;
use signalbox_core::span::KeyValue;

/// A deterministic generator (xorshift), so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const WORDS: &[&str] = &["timeout", "Reset", "ünïcode", "cart", "GET", "payment", "declined", "ok", "retry", "db"];

/// Records with every shape the format must keep: missing ids, duplicate and case-variant
/// attribute keys, rare keys, every value type, resource attributes, equal timestamps.
fn corpus(n: usize, seed: u64) -> Vec<LogRecord> {
    let mut g = Rng(seed);
    (0..n)
        .map(|i| {
            let mut attributes = Vec::new();
            if g.below(10) < 9 {
                attributes.push(KeyValue::str("user_id", format!("u{}", g.below(50))));
            }
            attributes.push(KeyValue::int("status", [200, 200, 404, 500][g.below(4) as usize]));
            if g.below(3) == 0 {
                attributes.push(KeyValue { key: "ratio".into(), value: AttrValue::Float(g.below(4) as f64 / 4.0) });
            }
            if g.below(5) == 0 {
                attributes.push(KeyValue { key: "cached".into(), value: AttrValue::Bool(g.below(2) == 0) });
            }
            if g.below(20) == 0 {
                // A second value of a columned key, and a key that differs only by case.
                attributes.push(KeyValue::str("user_id", "dup"));
                attributes.push(KeyValue::str("User_Id", "upper"));
            }
            if g.below(50) == 0 {
                attributes.push(KeyValue::str(format!("rare_{}", g.below(3)), format!("v{i}")));
            }
            let resource = if g.below(4) == 0 {
                vec![KeyValue::str("host.name", format!("node-{}", g.below(3))), KeyValue::str("user_id", "from-res")]
            } else {
                Vec::new()
            };
            let body = (0..1 + g.below(6)).map(|_| WORDS[g.below(WORDS.len() as u64) as usize]).collect::<Vec<_>>();
            LogRecord {
                unix_nanos: 1_796_205_600_000_000_000 + (i as u64 / 2) * 1_000_000 + g.below(3),
                observed_unix_nanos: 1_796_205_600_000_000_000 + g.below(1 << 40),
                severity: Severity([0, 5, 9, 13, 17, 21][g.below(6) as usize]),
                severity_text: ["", "INFO", "warn", "E"][g.below(4) as usize].into(),
                body: format!("{} {i}", body.join(" ")),
                service: ["checkout", "payments", "cart"][g.below(3) as usize].into(),
                instance: format!("i-{}", g.below(4)),
                resource,
                attributes,
                trace_id: (g.below(4) != 0).then_some(TraceId([
                    (i / 3) as u8,
                    (i / 768) as u8,
                    7,
                    7,
                    7,
                    7,
                    7,
                    7,
                    7,
                    7,
                    7,
                    7,
                    7,
                    7,
                    7,
                    1,
                ])),
                span_id: (g.below(3) != 0).then(|| SpanId((i as u64 + 1).to_be_bytes())),
            }
        })
        .collect()
}

fn write(records: &[LogRecord], page: usize) -> (tempfile::TempDir, Block) {
    let bytes = encode(records, page).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.blk");
    write_atomic(&path, &bytes).unwrap();
    let b = Block::read(&path).unwrap();
    (dir, b)
}

#[test]
fn records_round_trip_through_pages_and_columns() {
    let recs = corpus(1000, 7);
    let mut sorted = recs.clone();
    sorted.sort_by_key(|r| r.unix_nanos);
    let (_dir, b) = write(&recs, 64);
    assert_eq!(b.count, 1000);
    assert_eq!(b.pages.len(), 16);
    assert!(b.attr_columns.contains(&"user_id".to_string()) && b.attr_columns.contains(&"status".to_string()));
    assert!(!b.attr_columns.iter().any(|k| k.starts_with("rare_")), "rare keys stay in rest");
    assert_eq!(b.records().unwrap(), sorted);
    for (p, m) in b.pages.iter().enumerate() {
        let chunk = &sorted[p * 64..(p * 64 + 64).min(1000)];
        assert_eq!(
            (m.count, m.min_ts, m.max_ts),
            (chunk.len(), chunk[0].unix_nanos, chunk[chunk.len() - 1].unix_nanos)
        );
    }
}

#[test]
fn column_first_evaluation_agrees_with_the_record_path() {
    let recs = corpus(600, 11);
    let (_dir, b) = write(&recs, 50);
    let all = b.records().unwrap();
    let queries = [
        "timeout",
        "ünïcode reset",
        "\"payment declined\"",
        "user_id:u7",
        "User_Id:upper",
        "user_id:from-res",
        "status:>=404",
        "status:500 OR cached:true",
        "ratio:0.5",
        "host.name:node-1",
        "level:>=warn",
        "level:info",
        "level:e",
        "service:payments -instance:i-2",
        "trace_id:*",
        "NOT span_id:*",
        "rare_1:*",
        "cart*",
        "user_id:~\"u1[0-9]\"",
    ];
    let names =
        ["user_id", "User_Id", "status", "ratio", "cached", "host.name", "rare_2", "service", "trace_id", "body"];
    let file = b.open().unwrap();
    let mut k = 0;
    for p in 0..b.pages.len() {
        let page = Page::new(&b, &file, p);
        for i in 0..page.len() {
            let (row, rec) = (page.row(i), &all[k]);
            for q in queries {
                let f = parse(q).unwrap().filter;
                assert_eq!(matches(&f, &row), matches(&f, rec), "{q} on record {k}");
            }
            for n in names {
                assert_eq!(row.field(n), rec.field(n), "field {n} of record {k}");
            }
            k += 1;
        }
        assert!(!page.damaged());
    }
    assert_eq!(k, 600);
}

#[test]
fn a_needle_touches_only_the_pages_that_hold_it() {
    let recs = corpus(2048, 3);
    let (_dir, b) = write(&recs, 128);
    let all = b.records().unwrap();
    let mut wrong = 0;
    for (k, r) in all.iter().enumerate().step_by(97) {
        let Some(t) = r.trace_id else { continue };
        let keys = query_keys(&[], &[("trace_id".into(), t.to_hex())]);
        let pages: Vec<usize> = (0..b.pages.len()).filter(|&p| b.page_may_match(p, &keys)).collect();
        assert!(pages.contains(&(k / 128)), "the page holding record {k} may match");
        wrong += pages.len()
            - pages.iter().filter(|&&p| all[p * 128..(p + 1) * 128].iter().any(|x| x.trace_id == Some(t))).count();
    }
    assert!(wrong <= 8, "{wrong} of ~330 page checks let through by a false positive");
    // Absent words pass no page: the common bloom's false positives would pass them all.
    let mut passed = 0;
    for k in 0..2000 {
        let keys = query_keys(&[format!("absent{k}")], &[]);
        passed += (0..b.pages.len()).filter(|&p| b.page_may_match(p, &keys)).count();
    }
    assert!(passed <= 450, "{passed} of 32,000 page checks passed an absent word (1 % expected)");
    // A word in every page is in the common bloom; an absent one passes no page.
    assert!((0..b.pages.len()).all(|p| b.page_may_match(p, &query_keys(&["timeout".into()], &[]))));
    assert!(!b.may_match(&query_keys(&["neverseen".into()], &[])));
    assert!(!b.may_match(&query_keys(&[], &[("user_id".into(), "u999".into())])));
    assert!(b.may_match(&query_keys(&[], &[("STATUS".into(), "404".into())])), "numbers and key case too");
}

#[test]
fn damage_is_an_error_never_a_panic() {
    let recs = corpus(200, 5);
    let mut sorted = recs.clone();
    sorted.sort_by_key(|r| r.unix_nanos);
    let bytes = encode(&recs, 32).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut g = Rng(99);
    for round in 0..300 {
        let mut bad = bytes.clone();
        let at = g.below(bad.len() as u64) as usize;
        bad[at] ^= 1 << g.below(8);
        if round % 3 == 0 {
            bad.truncate(g.below(bad.len() as u64) as usize);
        }
        let path = dir.path().join("bad.blk");
        write_atomic(&path, &bad).unwrap();
        // The header's crc and each frame's crc32 catch a flip or a cut in what is read; a
        // flip in a column no record refers to (an attribute column of a page none of whose
        // records has the key) is never read and changes nothing.
        if let Ok(read) = Block::read(&path).and_then(|b| b.records()) {
            assert_eq!(read, sorted, "round {round}: a flipped bit at {at} changed the records unnoticed");
        }
    }
}

#[test]
fn pages_are_container_columns_and_other_layouts_are_refused() {
    let recs = corpus(300, 13);
    let (dir, b) = write(&recs, 100);
    let ncols = col::FIXED + b.attr_columns.len();
    let (framed, parts) = Framed::open(&b.path, MAGIC).unwrap();
    assert_eq!(b.pages.len(), 3);
    assert_eq!(framed.columns.len(), b.pages.len() * ncols, "every column of every page is a container column");
    assert_eq!(parts.len(), 2 + b.pages.len(), "summary, common bloom, a bloom per page");
    let file = b.open().unwrap();
    for p in 0..b.pages.len() {
        let sum: u64 = (0..ncols).map(|c| b.column_bytes(p, c)).sum();
        assert_eq!(sum, b.pages[p].bytes());
        assert!(b.read_column(&file, p, ncols).is_err(), "past the page's columns");
    }
    assert!(b.read_column(&file, b.pages.len(), 0).is_err(), "past the last page");
    // The unpaged container layout (`SBXLOGB3`: a summary and one bloom) is another magic.
    let old = dir.path().join("old.blk");
    let bloom = Bloom::with_capacity(1).to_bytes();
    let mut summary = Vec::new();
    for v in [1u64, 5, 5] {
        put_varint(&mut summary, v);
    }
    let (bytes, _) = framing::encode(b"SBXLOGB3", &[&summary, &bloom], &vec![vec![1u8]; 7]).unwrap();
    write_atomic(&old, &bytes).unwrap();
    assert!(Block::read(&old).is_err());
    // Its parts under this magic: no page count, so refused rather than misread.
    let (bytes, _) = framing::encode(MAGIC, &[&summary, &bloom], &vec![vec![1u8]; 7]).unwrap();
    write_atomic(&old, &bytes).unwrap();
    assert!(Block::read(&old).is_err());
}
