use super::*;
use crate::logs::lang::parse;
use signalbox_core::ids::TraceId;
use signalbox_core::log::Severity;
use signalbox_core::span::KeyValue;

fn rec(i: u64) -> LogRecord {
    LogRecord {
        unix_nanos: 1_796_205_600_000_000_000 + i * 1_000_000,
        observed_unix_nanos: 1_796_205_600_000_000_000 + i * 1_000_000,
        severity: if i.is_multiple_of(10) { Severity::ERROR } else { Severity::INFO },
        severity_text: String::new(),
        body: format!("request {i} done{}", if i.is_multiple_of(10) { " with timeout" } else { "" }),
        service: if i.is_multiple_of(2) { "checkout".into() } else { "payments".into() },
        instance: format!("i-{}", i % 3),
        resource: vec![KeyValue::str("host.name", "node-7")],
        attributes: vec![KeyValue::int("n", i as i64), KeyValue::str("request_id", format!("req-{i}"))],
        trace_id: Some(TraceId([(i % 250) as u8 + 1; 16])),
        span_id: None,
    }
}

fn cfg(dir: &std::path::Path) -> LogStoreConfig {
    LogStoreConfig {
        dir: dir.to_path_buf(),
        block_records: 100,
        seal_after: Duration::from_secs(3600),
        retention_age: Duration::from_secs(365 * 86_400 * 100),
        retention_bytes: u64::MAX,
        queue_batches: 64,
        max_query_bytes: u64::MAX,
        query_timeout: Duration::from_secs(30),
    }
}

fn search(logs: &Logs, q: &str, limit: usize) -> (Vec<LogRecord>, ScanStats) {
    logs.search(&Search {
        filter: parse(q).unwrap().filter,
        start: 0,
        end: u64::MAX >> 1,
        limit,
        forward: false,
        max_bytes: u64::MAX,
        timeout: Duration::from_secs(30),
    })
    .unwrap()
}

async fn wait_sealed(logs: &Logs, blocks: usize) {
    for _ in 0..200 {
        if logs.sizes().1 >= blocks {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("not sealed: {:?}", logs.sizes());
}

#[tokio::test]
async fn writes_are_searchable_from_the_head_and_from_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let logs = Logs::open(cfg(dir.path())).unwrap();
    for b in 0..5 {
        logs.write((b * 50..b * 50 + 50).map(rec).collect()).await.unwrap();
    }
    wait_sealed(&logs, 2).await;
    let (hits, _) = search(&logs, "timeout service:checkout", 1000);
    assert_eq!(hits.len(), 25, "every 10th record, all even: checkout");
    assert!(hits.windows(2).all(|w| w[0].unix_nanos >= w[1].unix_nanos), "newest first");
    let (hits, stats) = search(&logs, "request_id:req-7", 10);
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].attributes[1], KeyValue::str("request_id", "req-7"));
    assert!(stats.blocks_skipped >= 1, "the bloom skipped blocks without req-7: {stats:?}");
    let (hits, _) = search(&logs, "", 7);
    assert_eq!(hits.len(), 7);
    assert_eq!(hits[0].body, "request 249 done");
    let (hits, stats) = search(&logs, "neverseen", 10);
    assert!(hits.is_empty());
    assert_eq!(stats.blocks_read, 0, "a word in no block opens no block");
    logs.close();
}

#[tokio::test]
async fn a_restart_keeps_everything_once() {
    let dir = tempfile::tempdir().unwrap();
    let logs = Logs::open(cfg(dir.path())).unwrap();
    logs.write((0..150).map(rec).collect()).await.unwrap();
    wait_sealed(&logs, 1).await;
    logs.write((150..170).map(rec).collect()).await.unwrap();
    // A crash now: copy the files as they are while the store runs (what kill -9 leaves).
    let crash = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), crash.path());
    logs.close();
    for d in [dir.path(), crash.path()] {
        let again = Logs::open(cfg(d)).unwrap();
        let (hits, _) = search(&again, "", 10_000);
        assert_eq!(hits.len(), 170, "{}", d.display());
        let mut ids: Vec<u64> = hits.iter().map(|r| r.unix_nanos).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 170, "no record twice");
        // And once more after this run seals what it replayed.
        again.flush().await;
        again.close();
        let third = Logs::open(cfg(d)).unwrap();
        assert_eq!(search(&third, "", 10_000).0.len(), 170);
        third.close();
    }
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

#[tokio::test]
async fn retention_by_size_and_the_scan_budget() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(dir.path());
    c.retention_bytes = 1;
    let logs = Logs::open(c).unwrap();
    logs.write((0..100).map(rec).collect()).await.unwrap();
    wait_sealed(&logs, 1).await;
    let err = logs
        .search(&Search {
            filter: parse("done").unwrap().filter,
            start: 0,
            end: u64::MAX >> 1,
            limit: 10,
            forward: false,
            max_bytes: 10,
            timeout: Duration::from_secs(5),
        })
        .unwrap_err();
    assert!(matches!(err, SearchError::TooMuchData(10)));
    // An hour later: a second partition.
    let later = (0..100).map(|i| LogRecord { unix_nanos: rec(i).unix_nanos + 3_600_000_000_000, ..rec(i) });
    logs.write(later.collect()).await.unwrap();
    wait_sealed(&logs, 2).await;
    retention(&logs.inner);
    assert_eq!(logs.sizes().1, 1, "over the size budget: the older partition removed, never the newest");
    assert!(search(&logs, "done", 1000).0.iter().all(|r| r.unix_nanos >= rec(0).unix_nanos + 3_600_000_000_000));
    logs.close();
}

#[tokio::test]
async fn live_tail_sees_new_records() {
    let dir = tempfile::tempdir().unwrap();
    let logs = Logs::open(cfg(dir.path())).unwrap();
    let mut rx = logs.subscribe();
    logs.write(vec![rec(1)]).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.unwrap().unwrap();
    assert_eq!(got.body, "request 1 done");
    logs.close();
}

#[tokio::test]
async fn late_records_never_hide_newer_ones() {
    let dir = tempfile::tempdir().unwrap();
    let logs = Logs::open(cfg(dir.path())).unwrap();
    // A sealed block of recent records, then a head of late arrivals with old timestamps.
    logs.write((1000..1100).map(rec).collect()).await.unwrap();
    wait_sealed(&logs, 1).await;
    logs.write((0..50).map(rec).collect()).await.unwrap();
    let (hits, _) = search(&logs, "", 5);
    let bodies: Vec<&str> = hits.iter().map(|r| r.body.as_str()).collect();
    assert_eq!(
        bodies,
        vec!["request 1099 done", "request 1098 done", "request 1097 done", "request 1096 done", "request 1095 done"]
    );
    logs.close();
}

/// [`rec`] with more shapes: a rare attribute, no trace id, a resource-only key.
fn varied(i: u64) -> LogRecord {
    let mut r = rec(i);
    if i.is_multiple_of(7) {
        r.attributes.push(KeyValue::str("rare", format!("r{}", i % 3)));
    }
    if i.is_multiple_of(5) {
        r.trace_id = None;
    }
    if i.is_multiple_of(4) {
        r.resource.push(KeyValue::str("zone", "eu-1"));
    }
    if i == 501 {
        r.trace_id = Some(TraceId([0xab; 16]));
    }
    r
}

#[tokio::test]
async fn page_by_page_search_equals_a_brute_force_scan() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg(dir.path());
    c.block_records = 300; // pages of 18 records
    let logs = Logs::open(c).unwrap();
    // Timestamps out of order across batches, so blocks and pages overlap in time.
    let order: Vec<u64> = (0..1200).map(|i| (i * 7919) % 1200).collect();
    let all: Vec<LogRecord> = order.iter().map(|&i| varied(i)).collect();
    for batch in all[..1100].chunks(100) {
        logs.write(batch.to_vec()).await.unwrap();
    }
    wait_sealed(&logs, 3).await;
    logs.write(all[1100..].to_vec()).await.unwrap();
    let needle = varied(501).trace_id.unwrap().to_hex();
    let queries = [
        String::new(),
        "timeout".into(),
        "service:checkout".into(),
        "request_id:req-7*".into(),
        "n:>=500 n:<520".into(),
        "timeout OR n:<20".into(),
        format!("trace_id:{needle}"),
        "NOT service:checkout rare:*".into(),
        "zone:eu-1 level:error".into(),
        "rare:r1".into(),
    ];
    for q in &queries {
        let filter = parse(q).unwrap().filter;
        let mut want: Vec<&LogRecord> = all.iter().filter(|r| record_matches(&filter, r)).collect();
        want.sort_by_key(|r| std::cmp::Reverse(r.unix_nanos));
        for limit in [1, 13, 5000] {
            let (got, _) = search(&logs, q, limit);
            let want: Vec<LogRecord> = want.iter().take(limit).map(|r| (*r).clone()).collect();
            assert_eq!(got, want, "query `{q}` limit {limit}");
        }
        // The rows an aggregation reads: time and one field, without whole records.
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        logs.scan_rows(&filter, 0, u64::MAX >> 1, u64::MAX, Duration::from_secs(30), |r| {
            *counts.entry(r.field("service").unwrap_or_default().into_owned()).or_insert(0) += 1;
            assert!(r.unix_nanos() > 0);
            true
        })
        .unwrap();
        let mut brute: BTreeMap<String, u64> = BTreeMap::new();
        for r in &want {
            *brute.entry(r.service.clone()).or_insert(0) += 1;
        }
        assert_eq!(counts, brute, "count by service of `{q}`");
        // Grouped by dictionary codes page by page: the same counts and times.
        for field in [None, Some("service"), Some("rare"), Some("zone"), Some("n"), Some("RARE")] {
            let mut got: BTreeMap<Option<String>, Vec<u64>> = BTreeMap::new();
            logs.scan_groups(&filter, 0, u64::MAX >> 1, field, u64::MAX, Duration::from_secs(30), |k, times| {
                got.entry(k.map(str::to_owned)).or_default().extend_from_slice(times);
                true
            })
            .unwrap();
            let mut brute: BTreeMap<Option<String>, Vec<u64>> = BTreeMap::new();
            for r in &want {
                let k = field.and_then(|f| r.field(f)).map(|v| v.into_owned());
                brute.entry(k).or_default().push(r.unix_nanos);
            }
            got.values_mut().chain(brute.values_mut()).for_each(|v| v.sort_unstable());
            assert_eq!(got, brute, "groups by {field:?} of `{q}`");
        }
    }
    let (hits, stats) = search(&logs, &format!("trace_id:{needle}"), 100);
    assert_eq!(hits.len(), 1, "record 501's own trace id");
    assert!(stats.pages_read <= 2, "a needle reads about one page: {stats:?}");
    logs.close();
}
