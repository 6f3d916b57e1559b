use super::*;

#[test]
fn entries_round_trip_and_detect_corruption() {
    let e = Entry {
        seq: 7,
        header: Header { records: 2, sealed_ns: 5, positions: vec![PositionUpdate::Forget { dev: 1, ino: 2 }] },
        payload: b"gz".to_vec(),
    };
    let b = e.encode();
    assert_eq!(Entry::decode(7, &b), Some(e));
    let mut bad = b.clone();
    bad[12] ^= 1;
    assert_eq!(Entry::decode(7, &bad), None);
    assert_eq!(Entry::decode(7, &b[..b.len() - 1]), None);
    assert_eq!(Entry::decode(7, b""), None);
}

#[test]
fn full_buffer_waits_and_stop_gives_up() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, rec) = Spool::open(dir.path(), 200).unwrap();
    assert!(rec.first_start);
    let stop = StopSignal::new();
    let h = || Header { records: 1, sealed_ns: 0, positions: Vec::new() };
    let waiting = Gauge::default();
    assert!(spool.push(&h(), &[0; 150], &stop, &waiting).unwrap());
    stop.set();
    assert!(!spool.push(&h(), &[0; 150], &stop, &waiting).unwrap());
    assert_eq!(waiting.get(), 0);
    assert_eq!(spool.usage().0, 1);
    let first = spool.oldest().unwrap().unwrap();
    spool.remove(first.seq).unwrap();
    assert!(spool.push(&h(), &[1; 150], &stop, &waiting).unwrap());
    let (again, _) = Spool::open(dir.path(), 200).unwrap();
    assert_eq!(again.oldest().unwrap().unwrap().payload, vec![1; 150]);
    // Damage on disk is reported as such and the batch can be set aside.
    let seq = again.oldest().unwrap().unwrap().seq;
    std::fs::write(dir.path().join("buffer").join(entry_name(seq)), b"garbage").unwrap();
    assert_eq!(again.oldest().unwrap_err().kind(), std::io::ErrorKind::InvalidData);
    assert_eq!(again.set_aside_oldest().unwrap(), Some(seq));
    assert_eq!(again.usage(), (0, 0));
    assert!(again.oldest().unwrap().is_none());
}

#[test]
fn a_push_waiting_for_room_wakes_on_removal_and_on_stop() {
    use std::sync::Arc;
    use std::time::Instant;
    let dir = tempfile::tempdir().unwrap();
    let spool = Arc::new(Spool::open(dir.path(), 200).unwrap().0);
    let stop = Arc::new(StopSignal::new());
    let h = || Header { records: 1, sealed_ns: 0, positions: Vec::new() };
    assert!(spool.push(&h(), &[0; 150], &stop, &Gauge::default()).unwrap());
    let pusher = |payload: u8| {
        let (spool, stop) = (spool.clone(), stop.clone());
        std::thread::spawn(move || {
            let t = Instant::now();
            let pushed = spool.push(&h(), &[payload; 150], &stop, &Gauge::default()).unwrap();
            (pushed, t.elapsed())
        })
    };
    // Room made by a delivery: the waiting push goes in without waiting for a recheck.
    let waiting = pusher(1);
    std::thread::sleep(Duration::from_millis(100));
    let first = spool.oldest().unwrap().unwrap();
    spool.remove(first.seq).unwrap();
    let (pushed, waited) = waiting.join().unwrap();
    assert!(pushed);
    assert!(waited < FULL_WAIT_RECHECK, "waited {waited:?}");
    assert_eq!(spool.oldest().unwrap().unwrap().payload, vec![1; 150]);
    // The agent stops: the waiting push gives up at once, writing nothing.
    let waiting = pusher(2);
    std::thread::sleep(Duration::from_millis(100));
    stop.set();
    spool.wake_waiters();
    let (pushed, waited) = waiting.join().unwrap();
    assert!(!pushed);
    assert!(waited < FULL_WAIT_RECHECK, "waited {waited:?}");
    assert_eq!(spool.usage().0, 1);
}
