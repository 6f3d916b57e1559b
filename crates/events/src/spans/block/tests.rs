use super::*;
use signalbox_core::span::{KeyValue, SpanKind};
use std::sync::Arc;

fn span(i: u64, trace: TraceId) -> Span {
    Span {
        trace_id: trace,
        span_id: SpanId::random(),
        parent_span_id: i.is_multiple_of(2).then(SpanId::random),
        trace_state: String::new(),
        service: format!("svc-{}", i % 3),
        name: format!("op-{}", i % 5),
        kind: SpanKind::Server,
        start_unix_nanos: 1_000_000 + i * 10,
        end_unix_nanos: 1_000_000 + i * 10 + i,
        status: if i == 7 { StatusCode::Error } else { StatusCode::Unset },
        status_message: String::new(),
        attributes: vec![KeyValue::str("user", format!("u{i}")), KeyValue::int("n", i as i64)],
        ..Default::default()
    }
}

#[test]
fn blocks_round_trip_with_filters() {
    let dir = tempfile::tempdir().unwrap();
    let t = TraceId::random();
    let spans: Vec<Span> = (0..100).rev().map(|i| span(i, if i < 10 { t } else { TraceId::random() })).collect();
    let path = dir.path().join("b.blk");
    let b = write(&path, spans.iter().collect()).unwrap();
    assert_eq!(b.meta.spans, 100);
    assert_eq!(b.meta.errors, 1);
    assert_eq!(b.meta.services.len(), 3);
    assert!(b.traces.may_contain(&t.0));
    assert!(b.tokens.may_contain(&token_attr("user", "u42")));
    assert!(b.tokens.may_contain(&token_attr("n", "7")));
    assert!(!b.tokens.may_contain(&token_attr("user", "nobody")));
    assert!(b.tokens.may_contain(&token_service("svc-1")));
    assert!(b.tokens.may_contain(&token_operation("svc-2", "op-2")));
    assert!(b.tokens.may_contain(&token_service_attr("svc-0", "n", "42")));
    assert!(b.tokens.may_contain(b"e"));
    let reopened = open(&path).unwrap();
    assert_eq!(reopened.meta, b.meta);
    let loaded = reopened.load().unwrap();
    let ids = loaded.trace_ids().unwrap();
    let rows: Vec<usize> = (0..100).filter(|i| ids[*i] == t).collect();
    assert_eq!(rows.len(), 10);
    let mut got = loaded.spans(&rows).unwrap();
    got.sort_by_key(|s| s.start_unix_nanos);
    let mut want: Vec<Span> = spans.into_iter().filter(|s| s.trace_id == t).collect();
    want.sort_by_key(|s| s.start_unix_nanos);
    assert_eq!(got, want);
    std::fs::write(&path, b"SBXB\x01garbage").unwrap();
    assert!(open(&path).is_err());
}

#[test]
fn parents_within_a_trace_are_row_references_and_survive_any_order() {
    let dir = tempfile::tempdir().unwrap();
    let t = TraceId::random();
    let root = SpanId::random();
    let mut spans = Vec::new();
    let mut parent = root;
    for i in 0..20u64 {
        let mut s = span(i, t);
        if i == 0 {
            s.span_id = root;
            s.parent_span_id = None;
        } else {
            s.span_id = SpanId::random();
            // A child that starts before its parent (clock skew) still finds it.
            s.parent_span_id = Some(parent);
            s.start_unix_nanos = 1_000_000 + (20 - i) * 10;
            s.end_unix_nanos = s.start_unix_nanos + 5;
        }
        parent = s.span_id;
        spans.push(s);
    }
    let other = span(99, TraceId::random());
    spans.push(other.clone());
    let path = dir.path().join("b.blk");
    write(&path, spans.iter().collect()).unwrap();
    let l = open(&path).unwrap().load().unwrap();
    let rows = l.rows_of(&t).unwrap();
    assert_eq!(rows.len(), 20);
    assert_eq!(l.rows_of(&TraceId::random()).unwrap(), 0..0);
    let mut got = l.spans(&rows.collect::<Vec<_>>()).unwrap();
    got.sort_by_key(|s| s.span_id);
    let mut want: Vec<Span> = spans.into_iter().filter(|s| s.trace_id == t).collect();
    want.sort_by_key(|s| s.span_id);
    assert_eq!(got, want);
    let attrs = l.attributes().unwrap();
    let k = attrs.key("user").unwrap();
    let ok = attrs.values_matching("u7");
    let hits: Vec<usize> =
        (0..l.n).filter(|i| attrs.row(*i).iter().any(|(kk, v)| *kk == k && ok[*v as usize])).collect();
    assert_eq!(hits.len(), 1);
    assert_eq!(l.spans(&hits).unwrap()[0].attributes[0], KeyValue::str("user", "u7"));
}

#[test]
fn reading_one_trace_from_the_row_index_equals_reading_every_row() {
    let dir = tempfile::tempdir().unwrap();
    // Traces of 1 to 40 spans, about 2,600 rows: runs cross the 512-row checkpoints.
    let mut spans = Vec::new();
    let mut ids = Vec::new();
    for t in 0..130u64 {
        let trace = TraceId::random();
        ids.push(trace);
        let root = SpanId::random();
        for i in 0..(1 + t * 7 % 40) {
            let mut s = span(t * 100 + i, trace);
            s.span_id = if i == 0 { root } else { SpanId::random() };
            s.parent_span_id = (i > 0).then_some(root);
            s.start_unix_nanos = 5_000_000 + t * 1_000 + (i * 37) % 100;
            s.end_unix_nanos = s.start_unix_nanos + i * 11;
            s.status_message = format!("m{i}");
            if i % 3 == 0 {
                s.events.push(signalbox_core::span::SpanEvent {
                    unix_nanos: s.start_unix_nanos,
                    name: format!("e{i}"),
                    attributes: vec![KeyValue::int("x", i as i64)],
                });
            }
            spans.push(s);
        }
    }
    let path = dir.path().join("b.blk");
    write(&path, spans.iter().collect()).unwrap();
    let l = open(&path).unwrap().load().unwrap();
    assert!(l.n > 4 * STRIDE);
    for id in ids {
        let rows = l.rows_of(&id).unwrap();
        let mut by_index = l.spans_range(rows.clone()).unwrap();
        let mut by_scan = l.spans(&rows.collect::<Vec<_>>()).unwrap();
        by_index.sort_by_key(|s| s.span_id);
        by_scan.sort_by_key(|s| s.span_id);
        let mut want: Vec<Span> = spans.iter().filter(|s| s.trace_id == id).cloned().collect();
        want.sort_by_key(|s| s.span_id);
        assert_eq!(by_index, want);
        assert_eq!(by_scan, want);
    }
}

#[test]
fn a_corrupt_column_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.blk");
    let spans: Vec<Span> = (0..50).map(|i| span(i, TraceId::random())).collect();
    write(&path, spans.iter().collect()).unwrap();
    let good = std::fs::read(&path).unwrap();
    for at in [good.len() - 1, good.len() / 2, good.len() - 200] {
        let mut bad = good.clone();
        bad[at] ^= 0x5a;
        let p = dir.path().join(format!("bad-{at}.blk"));
        std::fs::write(&p, &bad).unwrap();
        if let Ok(b) = open(&p)
            && let Ok(l) = b.load()
        {
            let _ = l.spans(&(0..50).collect::<Vec<_>>());
            let _ = l.attributes();
        }
    }
    // Many random corruptions: never a panic, never an unbounded allocation.
    let mut seed = 0x1234_5678_9abc_def0u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..3000 {
        let mut bad = good.clone();
        for _ in 0..1 + next() % 4 {
            let at = (next() as usize) % bad.len();
            match next() % 3 {
                0 => bad[at] ^= 1 << (next() % 8),
                1 => bad[at] = next() as u8,
                _ => bad.truncate(at.max(1)),
            }
        }
        let p = dir.path().join(format!("m-{}.blk", round % 8));
        std::fs::write(&p, &bad).unwrap();
        if let Ok(b) = open(&p)
            && let Ok(l) = b.load()
        {
            let _ = l.spans(&(0..l.n.min(64)).collect::<Vec<_>>());
            let _ = l.spans_range(0..l.n.min(64));
            let _ = l.attributes();
            let _ = l.starts();
            let _ = l.names();
        }
    }
    let mut cut = good.clone();
    cut.truncate(good.len() / 3);
    std::fs::write(&path, &cut).unwrap();
    assert!(open(&path).is_err());
}

#[test]
fn links_resources_scopes_and_flags_round_trip_with_each_resource_once() {
    use signalbox_core::span::SpanLink;
    let dir = tempfile::tempdir().unwrap();
    let host = |h: &str| Arc::new(Resource { attributes: vec![KeyValue::str("host.name", h.to_owned())] });
    let (h1, h2) = (host("host-one"), host("host-two"));
    let scope = Arc::new(Scope { name: "io.lib".into(), version: "1.4".into() });
    let t = TraceId::random();
    let mut spans = Vec::new();
    for i in 0..1200u64 {
        let mut s = span(i, if i % 100 == 3 { t } else { TraceId::random() });
        // Equal resources behind different pointers, as separate batches bring them.
        s.resource = if i % 2 == 0 { h1.clone() } else { Arc::new((*h2).clone()) };
        s.scope = scope.clone();
        s.flags = SpanFlags(if i % 3 == 0 { SpanFlags::SHARED | SpanFlags::TRACE_ID_64 } else { SpanFlags::DEBUG });
        s.status = if i % 5 == 0 { StatusCode::Error } else { StatusCode::Ok };
        s.kind = SpanKind::from_code((i % 6) as i64);
        if i % 4 == 3 {
            s.links.push(SpanLink {
                trace_id: TraceId::random(),
                span_id: SpanId::random(),
                trace_state: format!("k={i}"),
                attributes: vec![KeyValue::int("i", i as i64)],
            });
        }
        spans.push(s);
    }
    let path = dir.path().join("b.blk");
    let b = write(&path, spans.iter().collect()).unwrap();
    assert!(b.tokens.may_contain(&token_attr("host.name", "host-two")), "resource attributes are searchable");
    assert!(b.tokens.may_contain(&token_service_attr("svc-1", "host.name", "host-one")));
    let raw = std::fs::read(&path).unwrap();
    let l = open(&path).unwrap().load().unwrap();
    let o = l.origins().unwrap();
    assert_eq!((o.resources.len(), o.scopes.len()), (2, 1), "each distinct resource and scope is stored once");
    assert!(raw.len() < 200_000);
    let all = l.spans(&(0..l.n).collect::<Vec<_>>()).unwrap();
    let mut want: Vec<&Span> = spans.iter().collect();
    want.sort_by_key(|s| (s.trace_id, s.start_unix_nanos, s.span_id));
    assert_eq!(all.iter().collect::<Vec<_>>(), want);
    let rows = l.rows_of(&t).unwrap();
    let by_index = l.spans_range(rows.clone()).unwrap();
    assert_eq!(by_index.len(), 12);
    assert_eq!(by_index, l.spans(&rows.collect::<Vec<_>>()).unwrap());
    assert!(by_index.iter().any(|s| !s.links.is_empty()));
}
