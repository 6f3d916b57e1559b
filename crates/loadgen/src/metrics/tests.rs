use super::*;
use signalbox_metrics::exposition::{Limits, MetricType, parse};
use signalbox_metrics::remote_write::decode;

fn shape() -> ReplayShape {
    ReplayShape {
        series: 250,
        samples_per_series: 3,
        per_host: 100,
        start_ms: 1_700_000_000_000,
        spacing_ms: 15_000,
        batch: 200,
        shards: 2,
    }
}

#[test]
fn the_layout_splits_a_host_into_histograms_counters_and_gauges() {
    let l = Layout::new(2000).unwrap();
    let kinds: Vec<Kind> = (0..2000).map(|j| l.kind(j)).collect();
    let hist = kinds.iter().filter(|k| matches!(k, Kind::Histogram { .. })).count();
    let counters = kinds.iter().filter(|k| matches!(k, Kind::Counter(_))).count();
    assert_eq!(hist, 46 * 13);
    assert_eq!(counters, (2000 - 46 * 13) / 2);
    assert_eq!(kinds.iter().filter(|k| matches!(k, Kind::Gauge(_))).count(), 2000 - 46 * 13 - 701);
    assert!(Layout::new(5).is_err());
}

#[test]
fn the_exposition_parses_with_types_and_consistent_histograms() {
    let l = Layout::new(200).unwrap();
    let text = l.exposition(3, 1234);
    let e = parse(&text, false, Limits::default()).unwrap();
    assert_eq!(e.samples.len(), 200);
    assert_eq!(e.types.get("bench_request_duration_seconds"), Some(&MetricType::Histogram));
    assert_eq!(e.types.get("bench_requests_total"), Some(&MetricType::Counter));
    assert_eq!(e.types.get("bench_resident_bytes"), Some(&MetricType::Gauge));
    // Histogram 0: buckets rise and +Inf equals _count.
    let h0: Vec<f64> = e.samples[..13].iter().map(|s| s.value).collect();
    assert!(h0[..11].windows(2).all(|w| w[0] <= w[1]), "{h0:?}");
    assert_eq!(h0[10], h0[12]);
    assert_eq!(e.samples[10].labels, vec![("handler".into(), "/api/h0".into()), ("le".into(), "+Inf".into())]);
    // The same host and step give the same text; the next step differs.
    assert_eq!(text, l.exposition(3, 1234));
    assert_ne!(text, l.exposition(3, 1235));
}

#[test]
fn counters_and_histogram_counts_never_go_down() {
    let l = Layout::new(100).unwrap();
    for j in 0..100 {
        if matches!(l.kind(j), Kind::Gauge(_)) {
            continue;
        }
        let vals: Vec<f64> = (0..200).map(|k| l.value(7, j, k)).collect();
        assert!(vals.windows(2).all(|w| w[0] <= w[1]), "series {j}: {vals:?}");
        assert!(vals[199] > vals[0], "series {j} does not rise");
    }
}

#[test]
fn the_replay_decodes_as_remote_write_each_shard_in_step_order() {
    let s = shape();
    let l = Layout::new(s.per_host).unwrap();
    let reqs: Vec<ReplayRequest> = replay_requests(s).unwrap().collect();
    assert_eq!(reqs.iter().map(|r| u64::from(r.samples)).sum::<u64>(), 750);
    // Two shards of 125 series × 3 steps = 375 samples each: batches of 200 and 175, alternating.
    assert_eq!(
        reqs.iter().map(|r| (r.shard, r.samples)).collect::<Vec<_>>(),
        vec![(0, 200), (1, 200), (0, 175), (1, 175)]
    );
    let mut seen = std::collections::HashSet::new();
    for shard in 0..2u64 {
        let mut samples = Vec::new();
        for r in reqs.iter().filter(|r| u64::from(r.shard) == shard) {
            let d = decode(&r.body).unwrap();
            assert_eq!(d.samples.len(), r.samples as usize);
            samples.extend(d.samples);
        }
        for (i, (labels, t, v)) in samples.iter().enumerate() {
            let (k, series) = (i as u64 / 125, shard * 125 + i as u64 % 125);
            assert_eq!(labels, &l.replay_labels(series), "shard {shard} sample {i}");
            assert_eq!(*t, s.timestamp(series, k));
            assert_eq!(*v, l.value(series / 100, (series % 100) as usize, k));
            assert!(*t < s.end_ms());
            assert!(seen.insert((series, k)), "{series} at step {k} twice");
        }
    }
    assert_eq!(seen.len(), 750);
    // Deterministic: the same shape gives the same bytes.
    assert_eq!(reqs, replay_requests(s).unwrap().collect::<Vec<_>>());
}

#[test]
fn replay_labels_carry_job_instance_pod_and_region() {
    let l = Layout::new(100).unwrap();
    let labels = l.replay_labels(250);
    let get = |n: &str| labels.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone()).unwrap();
    assert_eq!(get("job"), "replay");
    assert_eq!(get("instance"), "host-2:9100");
    assert_eq!(get("region"), "r2");
    assert!(get("pod").starts_with("api-"));
    assert!(labels.windows(2).all(|w| w[0].0 < w[1].0));
}

#[test]
fn a_bad_replay_shape_is_an_error() {
    assert!(replay_requests(ReplayShape { batch: 0, ..shape() }).is_err());
    assert!(replay_requests(ReplayShape { per_host: 3, ..shape() }).is_err());
    assert!(replay_requests(ReplayShape { shards: 0, ..shape() }).is_err());
    assert!(replay_requests(ReplayShape { shards: 251, ..shape() }).is_err());
}

#[test]
fn query_values_are_percent_encoded() {
    assert_eq!(urlencode("sum by (le) (x{a=~\"b.*\"})"), "sum%20by%20%28le%29%20%28x%7Ba%3D~%22b.%2A%22%7D%29");
}
