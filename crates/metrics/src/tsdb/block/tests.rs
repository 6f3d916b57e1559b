use super::*;
use crate::storage::{STALE_NAN_BITS, stale_nan};
use crate::tsdb::head::encode_chunks;

fn l(pairs: &[(&str, &str)]) -> Labels {
    let mut v: Labels = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    v.sort();
    v
}

/// Writes series `(labels, samples)` (any order) into a block under `dir`.
fn write_block(dir: &Path, mut series: Vec<(Labels, Vec<(i64, f64)>)>) -> Block {
    series.sort_by(|a, b| a.0.cmp(&b.0));
    let mut w = BlockWriter::new(dir, 1, Vec::new()).unwrap();
    for (labels, samples) in &series {
        w.add_series(labels, &encode_chunks(samples)).unwrap();
    }
    let target = w.target().to_owned();
    let meta = w.finish().unwrap().expect("samples were written");
    let b = Block::open(&target).unwrap();
    assert_eq!(b.meta(), &meta);
    b
}

fn names(got: &[Series]) -> Vec<String> {
    got.iter().map(|s| s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")).collect()
}

#[test]
fn round_trip_with_every_matcher_type() {
    let dir = tempfile::tempdir().unwrap();
    let regular: Vec<(i64, f64)> = (0..300).map(|i| (i * 15_000, i as f64)).collect();
    let b = write_block(
        dir.path(),
        vec![
            (l(&[("__name__", "up"), ("job", "api"), ("instance", "a")]), regular.clone()),
            (l(&[("__name__", "up"), ("job", "api"), ("instance", "b")]), vec![(1000, 1.0), (2000, stale_nan())]),
            (l(&[("__name__", "up"), ("job", "db")]), vec![(5000, 0.0)]),
            (l(&[("__name__", "errors")]), vec![(7000, 3.0)]),
        ],
    );
    let m = b.meta();
    assert_eq!((m.min_time, m.max_time, m.series, m.samples, m.level), (0, 299 * 15_000, 4, 304, 1));
    assert_eq!(m.chunks, 3 + 1 + 1 + 1, "300 samples make three chunks of at most 120");
    let sel = |ms: &[Matcher]| names(&b.select(ms, i64::MIN, i64::MAX).unwrap());
    let eq = |n: &str, v: &str| Matcher::Equal(n.into(), v.into());
    let ne = |n: &str, v: &str| Matcher::NotEqual(n.into(), v.into());
    let re = |n: &str, p: &str, neg: bool| Matcher::regex(n, p, neg).unwrap();
    let a = "__name__=up,instance=a,job=api";
    let bb = "__name__=up,instance=b,job=api";
    let db = "__name__=up,job=db";
    let errors = "__name__=errors";
    assert_eq!(sel(&[eq("job", "api")]), vec![a, bb]);
    assert_eq!(sel(&[eq("instance", "")]), vec![errors, db], "a missing label matches the empty string");
    assert_eq!(sel(&[eq("__name__", "up"), ne("instance", "a")]), vec![bb, db]);
    assert_eq!(sel(&[ne("job", "")]), vec![a, bb, db]);
    assert_eq!(sel(&[re("instance", "a|b", false)]), vec![a, bb]);
    assert_eq!(sel(&[re("instance", "b?", false)]), vec![errors, bb, db], "a regex matching \"\" takes the unlabelled");
    assert_eq!(sel(&[re("job", "a.*", true)]), vec![errors, db]);
    assert_eq!(sel(&[re("job", ".+", false), re("instance", ".*", true)]), Vec::<String>::new());
    assert_eq!(sel(&[eq("job", "nope")]), Vec::<String>::new());
    assert_eq!(sel(&[]).len(), 4);
    let full = b.select(&[eq("instance", "a")], i64::MIN, i64::MAX).unwrap();
    assert_eq!(full[0].samples, regular);
    let window = b.select(&[eq("instance", "a")], 15_000 * 119, 15_000 * 121).unwrap();
    assert_eq!(window[0].samples, vec![(15_000 * 119, 119.0), (15_000 * 120, 120.0), (15_000 * 121, 121.0)]);
    let stale = b.select(&[eq("instance", "b")], 0, 5000).unwrap();
    assert_eq!(stale[0].samples[1].1.to_bits(), STALE_NAN_BITS);
    assert_eq!(b.label_values("job", &[], i64::MIN, i64::MAX).unwrap(), vec!["api", "db"]);
}

#[test]
fn damage_is_reported_not_panicked() {
    let dir = tempfile::tempdir().unwrap();
    let b = write_block(dir.path(), vec![(l(&[("__name__", "m")]), (0..50).map(|i| (i, i as f64)).collect())]);
    let bdir = b.dir().to_owned();
    drop(b);
    // A flipped chunk byte fails the chunk's checksum on read.
    let chunks = bdir.join("chunks");
    let mut bytes = std::fs::read(&chunks).unwrap();
    bytes[12] ^= 1;
    std::fs::write(&chunks, &bytes).unwrap();
    let b = Block::open(&bdir).unwrap();
    assert!(matches!(b.select(&[], 0, 100), Err(StorageError::Corrupt { .. })));
    // A flipped index byte fails the index checksum on open.
    let index = bdir.join("index");
    let mut bytes = std::fs::read(&index).unwrap();
    bytes[10] ^= 1;
    std::fs::write(&index, &bytes).unwrap();
    assert!(matches!(Block::open(&bdir), Err(StorageError::Corrupt { .. })));
}

#[test]
fn writer_enforces_order_and_skips_empty_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = BlockWriter::new(dir.path(), 1, Vec::new()).unwrap();
    w.add_series(&l(&[("__name__", "b")]), &encode_chunks(&[(1, 1.0)])).unwrap();
    assert!(w.add_series(&l(&[("__name__", "a")]), &encode_chunks(&[(1, 1.0)])).is_err());
    let empty = BlockWriter::new(dir.path(), 1, Vec::new()).unwrap();
    assert_eq!(empty.finish().unwrap(), None);
    let meta = w.finish().unwrap().unwrap();
    let left: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(left, vec![meta.id], "no temporary directory is left behind");
}

#[test]
fn any_mutated_index_opens_or_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let b = write_block(
        dir.path(),
        vec![
            (l(&[("__name__", "a"), ("job", "x")]), (0..130).map(|i| (i * 10, i as f64)).collect()),
            (l(&[("__name__", "b"), ("job", "y")]), vec![(5, 1.0)]),
        ],
    );
    let bdir = b.dir().to_owned();
    drop(b);
    let index_path = bdir.join("index");
    let meta_path = bdir.join(META_FILE);
    let good = std::fs::read(&index_path).unwrap();
    let meta: BlockMeta = serde_json::from_slice(&std::fs::read(&meta_path).unwrap()).unwrap();
    let (mut opened, mut refused) = (0, 0);
    for at in INDEX_MAGIC.len()..good.len() - 4 {
        for flip in [0x01u8, 0x80] {
            // Damage the structure, then fix the checksums so the parser itself is tested.
            let mut bad = good[..good.len() - 4].to_vec();
            bad[at] ^= flip;
            let crc = crc32fast::hash(&bad);
            bad.extend_from_slice(&crc.to_le_bytes());
            std::fs::write(&index_path, &bad).unwrap();
            let m = BlockMeta { index_crc32: crc, ..meta.clone() };
            std::fs::write(&meta_path, serde_json::to_vec(&m).unwrap()).unwrap();
            match Block::open(&bdir) {
                Ok(b) => {
                    opened += 1;
                    let _ = b.select(&[], i64::MIN, i64::MAX);
                    let _ = b.select(&[Matcher::regex("job", "x|y", false).unwrap()], 0, 100);
                    let _ = b.label_names(&[], i64::MIN, i64::MAX);
                }
                Err(StorageError::Corrupt { .. }) => refused += 1,
                Err(e) => panic!("byte {at}: unexpected {e}"),
            }
        }
    }
    assert!(opened > 0 && refused > 0, "{opened} opened, {refused} refused");
}
