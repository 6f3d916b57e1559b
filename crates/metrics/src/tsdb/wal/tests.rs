use super::*;
use crate::storage::{STALE_NAN_BITS, stale_nan};

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn series_rec(id: u64, l: &Labels) -> Vec<u8> {
    let mut b = Vec::new();
    encode_series(&mut b, std::iter::once((id, l)));
    b
}

fn samples_rec(s: &[(u64, i64, f64)]) -> Vec<u8> {
    let mut b = Vec::new();
    encode_samples(&mut b, s);
    b
}

fn read_all(dir: &Path) -> (Vec<Record>, Replayed) {
    let mut got = Vec::new();
    let r = replay(dir, |rec| got.push(rec)).unwrap();
    (got, r)
}

#[test]
fn records_round_trip_with_staleness_bits_and_replay_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let l = labels(&[("__name__", "up"), ("job", "a")]);
    let mut w = WalWriter::open(dir.path(), 1 << 20).unwrap();
    let s = series_rec(7, &l);
    let samples = samples_rec(&[(7, 1_000, 1.5), (7, 2_000, stale_nan()), (7, -5, f64::NAN)]);
    let seq = w.write(&[&s, &samples]).unwrap();
    assert_eq!(seq, 2);
    let gc = GroupCommit::default();
    gc.wait(seq, || w.sync_target(), Duration::from_secs(5)).unwrap();
    let (got, r) = read_all(dir.path());
    assert_eq!(r.records, 2);
    assert_eq!(r.damaged_files, 0);
    assert_eq!(got[0], Record::Series(vec![(7, l)]));
    let Record::Samples(back) = &got[1] else { panic!("a samples record: {:?}", got[1]) };
    assert_eq!(back[0], (7, 1_000, 1.5));
    assert_eq!(back[1].2.to_bits(), STALE_NAN_BITS, "the staleness marker keeps its bits");
    assert_eq!(back[2].1, -5);
    assert_eq!(back[2].2.to_bits(), f64::NAN.to_bits());
}

#[test]
fn torn_tail_ends_its_segment_only_and_damage_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    let l = labels(&[("__name__", "m")]);
    {
        let mut w = WalWriter::open(dir.path(), 1 << 20).unwrap();
        w.write(&[&series_rec(1, &l), &samples_rec(&[(1, 10, 1.0)])]).unwrap();
        w.write(&[&samples_rec(&[(1, 20, 2.0)])]).unwrap();
    }
    let seg = segment_path(dir.path(), 1);
    let good = std::fs::read(&seg).unwrap();
    // A crash mid-write: half a frame at the end.
    let mut torn = good.clone();
    torn.extend_from_slice(&[40, 0, 0, 0, 1, 2, 3]);
    std::fs::write(&seg, &torn).unwrap();
    // The restart writes a new segment after the torn one.
    {
        let mut w = WalWriter::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(w.segment(), 2);
        w.write(&[&samples_rec(&[(1, 30, 3.0)])]).unwrap();
    }
    let (got, r) = read_all(dir.path());
    assert_eq!(r.damaged_files, 1);
    assert_eq!(got.len(), 4, "three records before the tear and the one after the restart");
    assert_eq!(got[3], Record::Samples(vec![(1, 30, 3.0)]));
    // Any flipped byte or truncation yields a prefix of the records.
    let (all, _) = {
        std::fs::write(&seg, &good).unwrap();
        read_all(dir.path())
    };
    for at in 0..good.len() {
        let mut bad = good.clone();
        bad[at] ^= 0x21;
        std::fs::write(&seg, &bad).unwrap();
        let mut first = Vec::new();
        read_file(&seg, |r| first.push(r)).unwrap();
        assert!(first.len() < 3 && first.iter().zip(&all).all(|(a, b)| a == b), "flip at {at}");
        std::fs::write(&seg, &good[..at]).unwrap();
        let mut prefix = Vec::new();
        let end = read_file(&seg, |r| prefix.push(r)).unwrap();
        assert_eq!(end.clean, at == 0 || end.valid_bytes == at as u64);
        assert!(prefix.iter().zip(&all).all(|(a, b)| a == b));
    }
}

#[test]
fn checkpoint_replaces_older_segments() {
    let dir = tempfile::tempdir().unwrap();
    let a = labels(&[("__name__", "a")]);
    let b = labels(&[("__name__", "b")]);
    let mut w = WalWriter::open(dir.path(), 64).unwrap();
    w.write(&[&series_rec(1, &a), &series_rec(2, &b)]).unwrap();
    for t in 0..20 {
        w.write(&[&samples_rec(&[(1, t, 1.0), (2, t, 2.0)])]).unwrap();
    }
    assert!(segments(dir.path()).unwrap().len() > 3, "small segments rotate");
    let last = w.rotate().unwrap();
    // Only `b` is still active; its recent samples go into the checkpoint.
    let mut chunk = crate::tsdb::chunk::Chunk::new();
    chunk.append(18, 1.0).unwrap();
    chunk.append(19, 2.0).unwrap();
    let mut chunk_rec = Vec::new();
    encode_chunk(&mut chunk_rec, 2, 2, chunk.bytes());
    let cp = [series_rec(2, &b), chunk_rec];
    write_checkpoint(dir.path(), last, cp.iter().map(|r| r.as_slice())).unwrap();
    assert_eq!(segments(dir.path()).unwrap(), vec![last + 1]);
    w.write(&[&samples_rec(&[(2, 20, 2.5)])]).unwrap();
    let (got, r) = read_all(dir.path());
    assert_eq!(r.checkpoint, Some(last));
    assert_eq!(
        got,
        vec![
            Record::Series(vec![(2, b)]),
            Record::Chunk { series: 2, count: 2, bytes: chunk.bytes().to_vec() },
            Record::Samples(vec![(2, 20, 2.5)])
        ]
    );
    // A crash mid-checkpoint leaves a temp file that the next open removes.
    std::fs::write(dir.path().join("checkpoint.00000099.tmp"), b"partial").unwrap();
    let w2 = WalWriter::open(dir.path(), 64).unwrap();
    assert!(w2.segment() > last + 1);
    assert!(!dir.path().join("checkpoint.00000099.tmp").exists());
}

#[test]
fn concurrent_appenders_share_syncs() {
    let dir = tempfile::tempdir().unwrap();
    let w = Mutex::new(WalWriter::open(dir.path(), 1 << 30).unwrap());
    let gc = GroupCommit::default();
    let per_thread = 50;
    std::thread::scope(|s| {
        for th in 0..8u64 {
            let (w, gc) = (&w, &gc);
            s.spawn(move || {
                for i in 0..per_thread {
                    let rec = samples_rec(&[(th, i, i as f64)]);
                    let seq = w.lock().unwrap().write(&[&rec]).unwrap();
                    gc.wait(seq, || w.lock().unwrap().sync_target(), Duration::from_secs(30)).unwrap();
                }
            });
        }
    });
    let (got, _) = read_all(dir.path());
    assert_eq!(got.len(), 8 * per_thread as usize);
    println!("{} appends, {} fdatasync calls", got.len(), gc.syncs());
    assert!(gc.syncs() <= got.len() as u64);
}

#[test]
fn mutated_payloads_decode_or_fail_without_panicking() {
    let l = labels(&[("__name__", "up"), ("job", "api")]);
    let mut chunk = Vec::new();
    encode_chunk(&mut chunk, 3, 2, &[1, 2, 3, 4]);
    for good in [series_rec(3, &l), samples_rec(&[(3, 10, 1.0), (4, -20, 2.0)]), chunk] {
        assert!(decode(&good).is_some());
        for at in 0..good.len() {
            for flip in [0x01u8, 0x7f, 0x80, 0xff] {
                let mut bad = good.clone();
                bad[at] ^= flip;
                let _ = decode(&bad);
            }
            assert_eq!(decode(&good[..at]), None, "a truncated record is refused");
        }
    }
}
