use super::*;

fn l(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn appends_select_by_postings_and_regex() {
    let h = Head::new(60_000, 1000);
    for i in 0..300 {
        h.append(l(&[("__name__", "up"), ("job", "api"), ("instance", "a")]), i * 15_000, 1.0).unwrap();
        h.append(l(&[("instance", "b"), ("__name__", "up"), ("job", "api")]), i * 15_000, (i % 2) as f64).unwrap();
        h.append(l(&[("__name__", "up"), ("job", "db"), ("instance", "c")]), i * 15_000, 0.0).unwrap();
    }
    assert_eq!(h.series_count(), 3);
    let api = h.select(
        &[Matcher::Equal("__name__".into(), "up".into()), Matcher::Equal("job".into(), "api".into())],
        0,
        i64::MAX,
    );
    assert_eq!(api.len(), 2);
    assert_eq!(api[0].samples.len(), 300, "chunks are cut at 120 samples and read back whole");
    let re = regex::Regex::new("^(a|c)$").unwrap();
    let sel = h.select(
        &[Matcher::Regex("instance".into(), re), Matcher::NotEqual("job".into(), "db".into())],
        15_000,
        30_000,
    );
    assert_eq!(sel.len(), 1);
    assert_eq!(sel[0].samples, vec![(15_000, 1.0), (30_000, 1.0)]);
    assert!(h.label_values()["instance"].contains("b"));
    assert!(h.chunk_bytes() < 3 * 300 * 3, "a few bits per regular sample");
}

#[test]
fn out_of_order_within_the_window_duplicates_and_limits() {
    let h = Head::new(10_000, 2);
    let s = l(&[("__name__", "m")]);
    h.append(s.clone(), 100_000, 1.0).unwrap();
    h.append(s.clone(), 95_000, 0.5).unwrap();
    h.append(s.clone(), 98_000, 0.8).unwrap();
    assert_eq!(h.append(s.clone(), 80_000, 0.1), Err(Rejected::TooOld));
    assert_eq!(h.append(s.clone(), 98_000, 0.8), Ok(()), "the same sample again is a no-op");
    assert_eq!(h.append(s.clone(), 98_000, 0.9), Err(Rejected::Duplicate));
    let got = h.select(&[Matcher::Equal("__name__".into(), "m".into())], 0, i64::MAX);
    assert_eq!(got[0].samples, vec![(95_000, 0.5), (98_000, 0.8), (100_000, 1.0)]);
    h.append(l(&[("__name__", "n")]), 1, 1.0).unwrap();
    assert_eq!(h.append(l(&[("__name__", "o")]), 1, 1.0), Err(Rejected::TooManySeries));
}

#[test]
fn cut_moves_old_samples_out_and_drops_empty_series() {
    let h = Head::new(60_000, 100);
    let a = l(&[("__name__", "a")]);
    let b = l(&[("__name__", "b")]);
    for t in 0..10 {
        h.append(a.clone(), t * 1000, t as f64).unwrap();
    }
    h.append(b.clone(), 2000, 7.0).unwrap();
    h.append(a.clone(), 3500, 3.5).unwrap(); // out of order
    assert_eq!(h.time_range(), Some((0, 9000)));
    let cut = h.collect_before(5000);
    assert_eq!(h.series_count(), 2, "collecting leaves the head as it was");
    h.truncate(5000);
    assert_eq!(cut.len(), 2);
    assert_eq!(cut[0].labels, a);
    let first: Vec<(i64, f64)> = cut[0].chunks.iter().flat_map(|c| c.iter()).collect();
    assert_eq!(first.len(), 6, "0..5 s and the out-of-order 3.5 s");
    assert!(first.is_sorted_by_key(|s| s.0));
    assert_eq!(h.series_count(), 1, "b had nothing left");
    assert_eq!(h.time_range(), Some((5000, 9000)));
    let left = h.select(&[], 0, i64::MAX);
    assert_eq!(left[0].samples.first(), Some(&(5000, 5.0)));
    // The surviving series still appends in order and finds its labels.
    h.append(a.clone(), 10_000, 10.0).unwrap();
    assert_eq!(h.append(a.clone(), 9000, 1.0), Err(Rejected::Duplicate));
    h.append(b.clone(), 20_000, 1.0).unwrap();
    assert_eq!(h.series_count(), 2);
}

#[test]
fn snapshot_replays_into_an_equal_head() {
    let h = Head::new(60_000, 100);
    for i in 0..5 {
        let s = l(&[("__name__", "m"), ("i", &i.to_string())]);
        for t in 0..200 {
            h.append(s.clone(), t * 10, if t == 7 { crate::storage::stale_nan() } else { t as f64 }).unwrap();
        }
        h.append(s, 1005, 1.0).unwrap();
    }
    let copy = Head::new(60_000, 100);
    let mut refs = HashMap::new();
    for s in h.snapshot() {
        assert_eq!(copy.replay(Record::Series(vec![(s.ref_id, s.labels)]), &mut refs), 0);
        for (count, bytes) in s.chunks {
            assert_eq!(copy.replay(Record::Chunk { series: s.ref_id, count, bytes }, &mut refs), 0);
        }
    }
    let (x, y) = (h.select(&[], 0, i64::MAX), copy.select(&[], 0, i64::MAX));
    assert_eq!(format!("{x:?}"), format!("{y:?}"), "NaNs compare by their debug form");
    assert!(crate::storage::is_stale(y[0].samples[7].1));
    assert_eq!(copy.replay(Record::Samples(vec![(999, 1, 1.0)]), &mut refs), 1, "an unknown ref is skipped");
}

#[test]
fn truncate_keeps_whole_chunks_and_reencodes_only_the_straddling_one() {
    let h = Head::new(1_000_000, 10);
    let s = l(&[("__name__", "m")]);
    for t in 0..300 {
        h.append(s.clone(), t, t as f64).unwrap();
    }
    h.append(s.clone(), 100, 100.0).unwrap();
    h.append(s.clone(), 50_000, 1.0).unwrap();
    h.append(s.clone(), 400, 4.0).unwrap(); // out of order, after the gap
    h.truncate(150);
    let got = h.select(&[], i64::MIN, i64::MAX);
    let times: Vec<i64> = got[0].samples.iter().map(|x| x.0).collect();
    let want: Vec<i64> = (150..300).chain([400, 50_000]).collect();
    assert_eq!(times, want);
    assert_eq!(h.time_range(), Some((150, 50_000)));
    h.append(s.clone(), 50_001, 2.0).unwrap();
    assert_eq!(h.append(s, 50_000, 9.0), Err(Rejected::Duplicate));
    h.truncate(1_000_000);
    assert_eq!((h.series_count(), h.time_range()), (0, None));
}
