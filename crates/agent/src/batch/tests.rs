use super::*;
use crate::record::Labels;
use std::time::Duration;

fn record(body: &str) -> Record {
    Record {
        timestamp_ns: 1,
        observed_ns: 1,
        severity: "INFO".into(),
        body: body.into(),
        labels: Arc::new(Labels {
            service: "s".into(),
            instance: "i".into(),
            host: "h".into(),
            static_labels: Vec::new(),
        }),
        path: Arc::from("/x.log"),
        attributes: Vec::new(),
        trace_id: None,
        span_id: None,
    }
}

#[test]
fn limits_and_sealing() {
    let mut b = Batch::default();
    assert!(b.is_empty() && !b.is_due(Duration::ZERO));
    b.push(&record("one"));
    b.push(&record("two"));
    assert!(b.is_full(2, 1 << 20), "by count");
    assert!(!b.is_full(3, 1 << 20));
    assert!(b.is_full(3, 100), "by bytes");
    assert!(b.is_due(Duration::ZERO), "by age");
    b.note(
        (1, 2),
        Some(Noted {
            path: Arc::from("/x.log"),
            head: Fingerprint::default(),
            offset: 8,
            tail: Tail::Known(Fingerprint { len: 3, crc: 9 }),
        }),
    );
    b.note(
        (1, 3),
        Some(Noted {
            path: Arc::from("/y.log"),
            head: Fingerprint::default(),
            offset: 4,
            tail: Tail::Known(Fingerprint::default()),
        }),
    );
    b.note((1, 3), None);
    let (header, payload) = b.seal(6, 42);
    assert!(b.is_empty() && b.records() == 0 && !b.is_due(Duration::ZERO));
    assert_eq!((header.records, header.sealed_ns), (2, 42));
    assert_eq!(header.positions.len(), 2, "the latest update per file");
    assert!(matches!(&header.positions[0], PositionUpdate::Set(p) if p.offset == 8 && p.tail.len == 3));
    assert_eq!(header.positions[1], PositionUpdate::Forget { dev: 1, ino: 3 });
    let ndjson = gunzip(&payload, 1 << 20).unwrap();
    let lines: Vec<serde_json::Value> =
        ndjson.split(|c| *c == b'\n').filter(|l| !l.is_empty()).map(|l| serde_json::from_slice(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["body"], "two");
    // The inflation limit holds against a gzip bomb.
    let bomb = gzip(&vec![b'a'; 1 << 20], 9);
    assert!(gunzip(&bomb, 1000).is_err());
    assert_eq!(gunzip(&bomb, 1 << 20).unwrap().len(), 1 << 20);
}
