use super::*;
use serde::Deserialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct H {
    records: u32,
}

fn h() -> H {
    H { records: 1 }
}

#[test]
fn entries_round_trip_and_detect_corruption() {
    let e = Entry { seq: 7, header: H { records: 2 }, payload: b"gz".to_vec() };
    let b = e.encode();
    assert_eq!(Entry::decode(7, &b), Some(e));
    let mut bad = b.clone();
    bad[12] ^= 1;
    assert_eq!(Entry::<H>::decode(7, &bad), None);
    assert_eq!(Entry::<H>::decode(7, &b[..b.len() - 1]), None);
    assert_eq!(Entry::<H>::decode(7, b""), None);
}

#[test]
fn a_full_queue_refuses_and_reopening_finds_what_was_pushed() {
    let dir = tempfile::tempdir().unwrap();
    let q = Spool::<H>::open(dir.path(), 200, |_| {}).unwrap();
    assert!(q.try_push(&h(), &[0; 150]).unwrap());
    assert!(!q.try_push(&h(), &[1; 150]).unwrap());
    let first = q.oldest().unwrap().unwrap();
    q.remove(first.seq).unwrap();
    assert!(q.try_push(&h(), &[2; 150]).unwrap());
    drop(q);
    // A temporary file left by a crash is not a batch.
    std::fs::write(dir.path().join("00000000000000000099.batch.tmp"), b"half").unwrap();
    let mut seen = Vec::new();
    let again = Spool::<H>::open(dir.path(), 200, |e| seen.push(e.map(|e| e.seq))).unwrap();
    assert_eq!(seen, vec![Some(2)]);
    assert_eq!(again.oldest().unwrap().unwrap().payload, vec![2; 150]);
    assert!(!dir.path().join("00000000000000000099.batch.tmp").exists());
    // Damage on disk is reported as such and the batch can be set aside.
    let seq = again.oldest().unwrap().unwrap().seq;
    std::fs::write(dir.path().join(entry_name(seq)), b"garbage").unwrap();
    assert_eq!(again.oldest().unwrap_err().kind(), std::io::ErrorKind::InvalidData);
    assert_eq!(again.set_aside_oldest().unwrap(), Some(seq));
    assert_eq!(again.usage(), (0, 0));
    assert!(again.oldest().unwrap().is_none());
    // Opening skips damaged batches, telling the caller.
    assert!(again.try_push(&h(), b"ok").unwrap());
    let seq = again.oldest().unwrap().unwrap().seq;
    assert!(again.try_push(&h(), b"later").unwrap());
    std::fs::write(dir.path().join(entry_name(seq)), b"garbage").unwrap();
    let mut seen = Vec::new();
    let third = Spool::<H>::open(dir.path(), 200, |e| seen.push(e.map(|e| e.payload.clone()))).unwrap();
    assert_eq!(seen, vec![None, Some(b"later".to_vec())]);
    assert_eq!(third.usage().0, 1);
}

#[test]
fn a_push_waiting_for_room_wakes_on_removal_and_on_stop() {
    let dir = tempfile::tempdir().unwrap();
    let q = Arc::new(Spool::<H>::open(dir.path(), 200, |_| {}).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    assert!(q.push(&h(), &[0; 150], || false, &Gauge::default()).unwrap());
    let pusher = |payload: u8| {
        let (q, stop) = (q.clone(), stop.clone());
        std::thread::spawn(move || {
            let t = Instant::now();
            let pushed = q.push(&h(), &[payload; 150], || stop.load(Ordering::Acquire), &Gauge::default()).unwrap();
            (pushed, t.elapsed())
        })
    };
    // Room made by a delivery: the waiting push goes in without waiting for a recheck.
    let waiting = pusher(1);
    std::thread::sleep(Duration::from_millis(100));
    let first = q.oldest().unwrap().unwrap();
    q.remove(first.seq).unwrap();
    let (pushed, waited) = waiting.join().unwrap();
    assert!(pushed);
    assert!(waited < FULL_WAIT_RECHECK, "waited {waited:?}");
    assert_eq!(q.oldest().unwrap().unwrap().payload, vec![1; 150]);
    // A stop: the waiting push gives up at once, writing nothing.
    let waiting = pusher(2);
    std::thread::sleep(Duration::from_millis(100));
    stop.store(true, Ordering::Release);
    q.wake_waiters();
    let (pushed, waited) = waiting.join().unwrap();
    assert!(!pushed);
    assert!(waited < FULL_WAIT_RECHECK, "waited {waited:?}");
    assert_eq!(q.usage().0, 1);
}
