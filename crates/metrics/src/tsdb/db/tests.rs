use super::*;
use crate::storage::{STALE_NAN_BITS, stale_nan};
use std::io::{BufRead, Write};

fn l(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn opts(block_range_ms: i64) -> TsdbOptions {
    TsdbOptions {
        block_range_ms,
        max_block_range_ms: block_range_ms * 9,
        ooo_window_ms: block_range_ms * 2,
        retention_ms: 0,
        ..TsdbOptions::default()
    }
}

fn all(db: &Tsdb) -> Vec<Series> {
    db.select(&[], i64::MIN, i64::MAX).unwrap()
}

/// Debug form: compares NaNs (staleness markers) by what they print.
fn dump(s: &[Series]) -> String {
    format!("{s:?}")
}

fn wal_dir(dir: &Path) -> PathBuf {
    dir.join("wal")
}

#[test]
fn tsdb_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Tsdb>();
    check::<Arc<Tsdb>>();
}

#[test]
fn appended_samples_replay_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let up_a = l(&[("job", "api"), ("__name__", "up"), ("instance", "a")]);
    let before = {
        let db = Tsdb::open(dir.path(), opts(3_600_000)).unwrap();
        let out =
            db.append(&[(up_a.clone(), 1000, 1.0), (l(&[("__name__", "up"), ("instance", "b")]), 1000, 0.0)]).unwrap();
        assert_eq!(out, AppendOutcome { accepted: 2, ..Default::default() });
        db.append(&[(up_a.clone(), 2000, stale_nan()), (up_a.clone(), 3000, 3.0)]).unwrap();
        let ooo = db.append(&[(up_a.clone(), 1500, 1.5)]).unwrap();
        assert_eq!(ooo.accepted, 1, "inside the out-of-order window");
        let out = db.append(&[(up_a.clone(), 3000, 9.0), (up_a.clone(), -10_000_000, 1.0), (up_a.clone(), 3000, 3.0)]);
        assert_eq!(out.unwrap(), AppendOutcome { accepted: 1, too_old: 1, duplicate: 1, series_limit: 0 });
        assert_eq!(db.stats().samples_appended, 5);
        all(&db)
    };
    assert_eq!(before.len(), 2);
    let (db, report) = Tsdb::open_with_report(dir.path(), opts(3_600_000)).unwrap();
    assert_eq!(report.skipped_samples, 0);
    assert!(report.wal.records >= 4);
    let after = all(&db);
    assert_eq!(dump(&after), dump(&before));
    let a = db.select(&[Matcher::Equal("instance".into(), "a".into())], 0, 10_000).unwrap();
    let times: Vec<i64> = a[0].samples.iter().map(|s| s.0).collect();
    assert_eq!(times, vec![1000, 1500, 2000, 3000]);
    assert_eq!(a[0].samples[2].1.to_bits(), STALE_NAN_BITS, "the staleness marker survives the WAL");
    // The replayed head keeps refusing what it refused before.
    assert_eq!(db.append(&[(up_a, 3000, 7.0)]).unwrap().duplicate, 1);
}

#[test]
fn bad_input_and_a_second_opener_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let db = Tsdb::open(dir.path(), opts(1000)).unwrap();
    let err = db.append(&[(l(&[("__name__", "ok")]), 1, 1.0), (l(&[("job", "")]), 1, 1.0)]).unwrap_err();
    assert!(matches!(err, TsdbError::InvalidSample { index: 1, .. }), "{err}");
    let err = db.append(&[(l(&[("a", "1"), ("a", "2")]), 1, 1.0)]).unwrap_err();
    assert!(err.to_string().contains("repeated"), "{err}");
    let huge = "x".repeat(MAX_LABEL_BYTES);
    let err = db.append(&[(l(&[("__name__", "m"), ("big", &huge)]), 1, 1.0)]).unwrap_err();
    assert!(err.to_string().contains("64 KiB"), "{err}");
    let err = db.append(&[(l(&[("__name__", "m")]), i64::MIN, 1.0)]).unwrap_err();
    assert!(err.to_string().contains("timestamp"), "{err}");
    assert!(all(&db).is_empty(), "a failed batch stores nothing");
    // Empty values are dropped, as Prometheus does.
    db.append(&[(l(&[("__name__", "m"), ("empty", "")]), 1, 1.0)]).unwrap();
    assert_eq!(all(&db)[0].labels, l(&[("__name__", "m")]));
    // Extreme but valid times neither overflow nor stall maintenance.
    let far = MAX_ABS_TIME_MS;
    db.append(&[(l(&[("__name__", "far")]), -far, 1.0), (l(&[("__name__", "far")]), far, 2.0)]).unwrap();
    db.maintain(0).unwrap();
    let got = db.select(&[Matcher::Equal("__name__".into(), "far".into())], i64::MIN, i64::MAX).unwrap();
    assert_eq!(got[0].samples, vec![(-far, 1.0), (far, 2.0)]);
    assert!(matches!(Tsdb::open(dir.path(), opts(1000)), Err(TsdbError::Locked(_))));
    let bad = TsdbOptions { block_range_ms: 0, ..TsdbOptions::default() };
    assert!(matches!(Tsdb::open(dir.path(), bad), Err(TsdbError::InvalidOption { field: "block_range_ms", .. })));
}

#[test]
fn a_torn_wal_tail_loses_only_the_torn_record() {
    let dir = tempfile::tempdir().unwrap();
    let m = l(&[("__name__", "m")]);
    {
        let db = Tsdb::open(dir.path(), opts(3_600_000)).unwrap();
        for t in 0..10 {
            db.append(&[(m.clone(), t * 1000, t as f64)]).unwrap();
        }
    }
    let seg = *wal::segments(&wal_dir(dir.path())).unwrap().last().unwrap();
    let path = wal_dir(dir.path()).join(format!("{seg:08}"));
    let mut bytes = std::fs::read(&path).unwrap();
    // The last record half-written, as a crash mid-append leaves it.
    bytes.truncate(bytes.len() - 5);
    std::fs::write(&path, &bytes).unwrap();
    {
        let (db, report) = Tsdb::open_with_report(dir.path(), opts(3_600_000)).unwrap();
        assert_eq!(report.wal.damaged_files, 1);
        assert_eq!(all(&db)[0].samples.len(), 9);
        db.append(&[(m.clone(), 20_000, 20.0)]).unwrap();
    }
    let db = Tsdb::open(dir.path(), opts(3_600_000)).unwrap();
    let s = &all(&db)[0].samples;
    assert_eq!(s.len(), 10, "the segment written after the tear is replayed too");
    assert_eq!(s.last(), Some(&(20_000, 20.0)));
}

/// 10 series sampled every 100 ms over `[from, to)`; series `gone` stops at 1000 ms.
fn fill(db: &Tsdb, from: i64, to: i64) {
    let mut batch: Vec<(Labels, i64, f64)> = Vec::new();
    for t in (from..to).step_by(100) {
        batch.extend((0..10).map(|i| (l(&[("__name__", "g"), ("i", &i.to_string())]), t, (t + i) as f64)));
        if t < 1000 {
            batch.push((l(&[("__name__", "gone")]), t, 1.0));
        }
    }
    let out = db.append(&batch).unwrap();
    assert_eq!(out.rejected(), 0, "{out:?}");
}

#[test]
fn cut_checkpoint_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let before = {
        let db = Tsdb::open(dir.path(), TsdbOptions { wal_segment_bytes: 1024, ..opts(1000) }).unwrap();
        for t in (0..2500).step_by(100) {
            fill(&db, t, t + 100);
        }
        assert_eq!(db.stats().active_series, 11);
        let segments_before = wal::segments(&wal_dir(dir.path())).unwrap().len();
        assert!(segments_before > 2);
        let r = db.maintain(2500).unwrap();
        assert_eq!(r.blocks_cut, 1, "the head spanned 2.4 ranges: [0, 1000) is cut");
        let st = db.stats();
        assert_eq!(st.blocks, 1);
        assert_eq!(st.active_series, 10, "the series that stopped left the head");
        assert_eq!(st.head_time_range, Some((1000, 2400)));
        assert_eq!(wal::checkpoints(&wal_dir(dir.path())).unwrap().len(), 1);
        assert_eq!(wal::segments(&wal_dir(dir.path())).unwrap().len(), 1, "older segments are gone");
        fill(&db, 2500, 2700);
        let b = &db.blocks()[0];
        assert_eq!((b.min_time, b.max_time, b.series, b.level), (0, 900, 11, 1));
        all(&db)
    };
    assert_eq!(before.len(), 11);
    assert_eq!(before.iter().map(|s| s.samples.len()).sum::<usize>(), 10 * 27 + 10);
    let (db, report) = Tsdb::open_with_report(dir.path(), opts(1000)).unwrap();
    assert!(report.wal.checkpoint.is_some());
    assert_eq!(db.stats().active_series, 10, "only the checkpoint's active series are in the head");
    assert_eq!(dump(&all(&db)), dump(&before));
    let gone = db.select(&[Matcher::Equal("__name__".into(), "gone".into())], 0, 5000).unwrap();
    assert_eq!(gone[0].samples.len(), 10, "served from the block");
    // The label APIs read the block's index and the head without decoding samples.
    assert_eq!(db.label_values("__name__", &[], 0, 5000).unwrap(), vec!["g", "gone"]);
    assert_eq!(db.label_values("__name__", &[], 1000, 5000).unwrap(), vec!["g"], "gone stopped at 900");
    assert_eq!(db.label_names(&[Matcher::Equal("__name__".into(), "gone".into())], 0, 5000).unwrap(), vec!["__name__"]);
    let re = Matcher::regex("i", "[0-3]", false).unwrap();
    assert_eq!(db.label_values("i", &[re], 0, 500).unwrap(), vec!["0", "1", "2", "3"]);
}

#[test]
fn samples_appended_while_a_block_is_written_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let g0 = l(&[("__name__", "g"), ("i", "0")]);
    let late = l(&[("__name__", "late")]);
    {
        let db = Tsdb::open(dir.path(), opts(1000)).unwrap();
        fill(&db, 0, 2000);
        let cut = db.begin_cut(1000).unwrap();
        // The range is copied; now, before it leaves the head, samples arrive for it: one
        // for a series with newer samples, one for a series with nothing newer.
        db.append(&[(g0.clone(), 950, -1.0), (late.clone(), 500, 5.0)]).unwrap();
        assert!(db.finish_cut(cut).unwrap());
        assert_eq!(db.blocks().len(), 1);
        let got = db.select(&[], 0, 999).unwrap();
        let g = got.iter().find(|s| s.labels == g0).unwrap();
        assert!(g.samples.contains(&(950, -1.0)) && g.samples.contains(&(900, 900.0)));
        assert_eq!(got.iter().find(|s| s.labels == late).unwrap().samples, vec![(500, 5.0)]);
        // The late series keeps its WAL ref, so what follows replays against it.
        db.append(&[(late.clone(), 2500, 6.0)]).unwrap();
    }
    let db = Tsdb::open(dir.path(), opts(1000)).unwrap();
    let got = db.select(&[Matcher::Equal("__name__".into(), "late".into())], 0, 5000).unwrap();
    assert_eq!(got[0].samples, vec![(500, 5.0), (2500, 6.0)]);
    let g = db.select(&[Matcher::Equal("i".into(), "0".into())], 0, 5000).unwrap();
    assert_eq!(g[0].samples.len(), 21);
}

#[test]
fn compaction_merges_aligned_blocks_and_out_of_order_samples_survive() {
    let dir = tempfile::tempdir().unwrap();
    let db = Tsdb::open(dir.path(), opts(1000)).unwrap();
    for end in (500..=8000).step_by(500) {
        fill(&db, end - 500, end);
        db.maintain(end).unwrap();
    }
    let levels: Vec<(i64, i64, u32)> = db.blocks().iter().map(|b| (b.min_time, b.max_time, b.level)).collect();
    assert!(levels.contains(&(0, 2900, 2)), "three 1 s blocks became one 3 s block: {levels:?}");
    // Out-of-order samples into a range already persisted (within the window of 2 s).
    let g0 = l(&[("__name__", "g"), ("i", "0")]);
    let ooo = db.append(&[(g0.clone(), 6050, -1.0), (g0.clone(), 6150, -2.0), (g0.clone(), 6000, 99.0)]).unwrap();
    // 6000 is persisted already (with 6000.0); the head cannot see blocks, so the new value
    // is accepted and the later write wins when blocks and head are merged.
    assert_eq!(ooo.accepted, 3, "{ooo:?}");
    fill(&db, 8000, 10_000);
    db.maintain(10_000).unwrap();
    let check = |db: &Tsdb| {
        let s = db.select(&[Matcher::Equal("i".into(), "0".into())], 0, i64::MAX).unwrap();
        assert_eq!(s.len(), 1);
        let samples = &s[0].samples;
        assert_eq!(samples.len(), 100 + 2, "every in-order sample once, plus two out-of-order ones");
        assert!(samples.windows(2).all(|w| w[0].0 < w[1].0), "sorted, no duplicates");
        assert!(samples.contains(&(6050, -1.0)) && samples.contains(&(6150, -2.0)));
        assert!(samples.contains(&(6000, 99.0)) && !samples.contains(&(6000, 6000.0)));
    };
    check(&db);
    for b in db.blocks() {
        let overlapping = db.blocks().iter().filter(|c| c.min_time <= b.max_time && c.max_time >= b.min_time).count();
        assert_eq!(overlapping, 1, "compaction leaves no overlapping blocks: {:?}", db.blocks());
    }
    drop(db);
    let db = Tsdb::open(dir.path(), opts(1000)).unwrap();
    check(&db);
    assert!(db.blocks().iter().any(|b| b.level >= 2));
}

#[test]
fn retention_deletes_old_blocks_by_time_then_size() {
    let dir = tempfile::tempdir().unwrap();
    let db = Tsdb::open(dir.path(), TsdbOptions { max_block_range_ms: 1000, ..opts(1000) }).unwrap();
    for end in (500..=6000).step_by(500) {
        fill(&db, end - 500, end);
        db.maintain(end).unwrap();
    }
    let n = db.blocks().len();
    assert!(n >= 4, "{:?}", db.blocks());
    drop(db);
    let time = TsdbOptions { retention_ms: 2500, max_block_range_ms: 1000, ..opts(1000) };
    let db = Tsdb::open(dir.path(), time).unwrap();
    let r = db.maintain(6000).unwrap();
    assert!(db.blocks().iter().all(|b| b.max_time >= 3500), "{:?}", db.blocks());
    assert_eq!(r.blocks_deleted, n - db.blocks().len());
    assert!(db.select(&[], 0, 2999).unwrap().is_empty());
    assert!(!db.select(&[], 0, 3000).unwrap().is_empty(), "the block holding 3000..3900 is younger than the cutoff");
    let kept = db.blocks().len();
    assert!(kept >= 2);
    drop(db);
    let one_block = TsdbOptions { retention_bytes: 1, max_block_range_ms: 1000, ..opts(1000) };
    let db = Tsdb::open(dir.path(), one_block).unwrap();
    let r = db.maintain(6000).unwrap();
    assert_eq!(r.blocks_deleted, kept, "the WAL alone exceeds one byte: every block goes");
    assert!(db.stats().head_time_range.is_some(), "the head is not touched by retention");
    let stats = db.stats();
    assert_eq!((stats.blocks, stats.block_bytes), (0, 0));
    let left = std::fs::read_dir(dir.path().join("blocks")).unwrap().count();
    assert_eq!(left, 0);
}

#[test]
fn concurrent_appenders_share_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(Tsdb::open(dir.path(), opts(3_600_000)).unwrap());
    let threads: Vec<_> = (0..8)
        .map(|th| {
            let db = db.clone();
            std::thread::spawn(move || {
                for t in 0..40 {
                    db.append(&[(l(&[("__name__", "c"), ("th", &th.to_string())]), t, t as f64)]).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let st = db.stats();
    println!("{} samples appended with {} fsyncs", st.samples_appended, st.wal_syncs);
    assert_eq!(st.samples_appended, 320);
    assert!(st.wal_syncs <= 320);
    assert_eq!(all(&db).iter().map(|s| s.samples.len()).sum::<usize>(), 320);
}

#[test]
fn appends_racing_maintenance_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let o = TsdbOptions { wal_segment_bytes: 4096, ooo_window_ms: 2000, ..opts(200) };
    let db = Arc::new(Tsdb::open(dir.path(), o.clone()).unwrap());
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let maintainer = {
        let (db, done) = (db.clone(), done.clone());
        std::thread::spawn(move || {
            let mut runs = 0;
            while !done.load(Ordering::Relaxed) {
                db.maintain(0).unwrap();
                runs += 1;
                std::thread::sleep(Duration::from_millis(2));
            }
            runs
        })
    };
    let writers: Vec<_> = (0..4)
        .map(|th| {
            let db = db.clone();
            std::thread::spawn(move || {
                let labels = l(&[("__name__", "race"), ("th", &th.to_string())]);
                let mut expected = Vec::new();
                for n in 0..150i64 {
                    let mut batch = vec![(labels.clone(), n * 20, n as f64)];
                    // Every third batch also carries an out-of-order sample 690 ms back.
                    if n % 3 == 0 && n * 20 >= 690 {
                        batch.push((labels.clone(), n * 20 - 690, -(n as f64)));
                    }
                    let out = db.append(&batch).unwrap();
                    assert_eq!(out.rejected(), 0, "{out:?}");
                    expected.extend(batch.into_iter().map(|(_, t, v)| (t, v)));
                }
                expected.sort_by_key(|s| s.0);
                (labels, expected)
            })
        })
        .collect();
    let expected: Vec<(Labels, Vec<(i64, f64)>)> = writers.into_iter().map(|w| w.join().unwrap()).collect();
    done.store(true, Ordering::Relaxed);
    let runs = maintainer.join().unwrap();
    let check = |db: &Tsdb| {
        for (labels, samples) in &expected {
            let got = db.select(&[Matcher::Equal("th".into(), labels[1].1.clone())], i64::MIN, i64::MAX).unwrap();
            assert_eq!(&got[0].samples, samples, "{labels:?}");
        }
    };
    check(&db);
    let blocks = db.blocks().len();
    println!("{runs} maintenance runs raced the appends; {blocks} blocks");
    assert!(blocks > 0);
    drop(db);
    check(&Tsdb::open(dir.path(), o).unwrap());
}

#[test]
fn head_memory_per_series_stays_well_under_a_kilobyte() {
    let dir = tempfile::tempdir().unwrap();
    let db = Tsdb::open(dir.path(), opts(3_600_000)).unwrap();
    let series = 100_000;
    let samples_per_series = 4;
    for round in 0..samples_per_series {
        // 20 000 new series per batch: their WAL series record is split in two.
        for start in (0..series).step_by(20_000) {
            let batch: Vec<(Labels, i64, f64)> = (start..start + 20_000)
                .map(|i| {
                    let labels = l(&[
                        ("__name__", "http_requests_total"),
                        ("instance", &format!("10.0.{}.{}:8080", i / 250, i % 250)),
                        ("job", "api"),
                        ("path", &format!("/orders/{}", i % 5000)),
                    ]);
                    (labels, round * 15_000, (i * round) as f64)
                })
                .collect();
            db.append(&batch).unwrap();
        }
    }
    let st = db.stats();
    assert_eq!(st.active_series, series as usize);
    let per_series = st.head_heap_bytes as f64 / series as f64;
    println!(
        "{} series x {} samples: head heap {} bytes ({per_series:.0} per series), chunks {} bytes, WAL {} bytes",
        st.active_series, samples_per_series, st.head_heap_bytes, st.head_chunk_bytes, st.wal_bytes
    );
    assert!(per_series < 1024.0, "{per_series} bytes per series");
    drop(db);
    let (db, report) = Tsdb::open_with_report(dir.path(), opts(3_600_000)).unwrap();
    assert_eq!((report.skipped_samples, report.wal.damaged_files), (0, 0));
    let again = db.stats();
    assert_eq!(again.active_series, st.active_series);
    assert_eq!(again.head_chunk_bytes, st.head_chunk_bytes, "the replayed head holds the same chunks");
}

const CHILD_DIR_ENV: &str = "SIGNALBOX_TSDB_KILL9_CHILD_DIR";
const SERIES_PER_BATCH: i64 = 20;

fn kill9_options() -> TsdbOptions {
    TsdbOptions { wal_segment_bytes: 8192, ..opts(10_000) }
}

/// The child side: appends batch after batch, printing each acknowledged batch number,
/// and cuts/compacts now and then so checkpoints and blocks are exercised too.
fn kill9_child(dir: &str) {
    let db = Tsdb::open(Path::new(dir), kill9_options()).unwrap();
    let mut out = std::io::stdout().lock();
    for n in 0..200_000i64 {
        let batch: Vec<(Labels, i64, f64)> = (0..SERIES_PER_BATCH)
            .map(|i| (l(&[("__name__", "k"), ("i", &i.to_string())]), n * 1000, n as f64))
            .collect();
        db.append(&batch).unwrap();
        writeln!(out, "ack {n}").unwrap();
        out.flush().unwrap();
        if n % 7 == 0 {
            db.maintain(n * 1000).unwrap();
        }
    }
}

/// Kills the child however the parent test ends, so a failure leaves no process behind.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn acknowledged_batches_survive_kill_9() {
    if let Ok(dir) = std::env::var(CHILD_DIR_ENV) {
        kill9_child(&dir);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut child = KillOnDrop(
        std::process::Command::new(exe)
            .args([
                "--exact",
                "tsdb::db::tests::acknowledged_batches_survive_kill_9",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DIR_ENV, dir.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::sync_channel::<i64>(1 << 16);
    let reader = std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(n) = line.strip_prefix("ack ").and_then(|n| n.parse().ok())
                && tx.send(n).is_err()
            {
                break;
            }
        }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let mut acked = -1i64;
    while acked < 200 {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(n) => acked = acked.max(n),
            Err(e) => panic!("the child acknowledged only {acked} batches: {e}"),
        }
    }
    // SIGKILL mid-stream: no destructors, no flushes.
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    reader.join().unwrap();
    while let Ok(n) = rx.try_recv() {
        acked = acked.max(n);
    }
    let db = Tsdb::open(dir.path(), kill9_options()).unwrap();
    let got = db.select(&[Matcher::Equal("__name__".into(), "k".into())], i64::MIN, i64::MAX).unwrap();
    assert_eq!(got.len(), SERIES_PER_BATCH as usize);
    for s in &got {
        for n in 0..=acked {
            assert!(
                s.samples.binary_search_by_key(&(n * 1000), |x| x.0).is_ok(),
                "{:?}: batch {n} of {acked} lost",
                s.labels
            );
        }
        assert!(s.samples.windows(2).all(|w| w[0].0 < w[1].0));
    }
    println!("{} acknowledged batches all found after SIGKILL; {} blocks", acked + 1, db.blocks().len());
    assert!(!db.blocks().is_empty(), "the child cut blocks before it was killed");
}
