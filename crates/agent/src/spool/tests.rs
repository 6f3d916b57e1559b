use super::*;
use crate::stop::StopSignal;
use signalbox_core::metrics::Gauge;

#[test]
fn entries_carry_their_positions() {
    let e = Entry {
        seq: 7,
        header: Header { records: 2, sealed_ns: 5, positions: vec![PositionUpdate::Forget { dev: 1, ino: 2 }] },
        payload: b"gz".to_vec(),
    };
    assert_eq!(Entry::decode(7, &e.encode()), Some(e));
}

#[test]
fn the_buffer_is_reopened_with_the_checkpoint_and_a_stop_ends_a_waiting_push() {
    let dir = tempfile::tempdir().unwrap();
    let (spool, rec) = open(dir.path(), 200).unwrap();
    assert!(rec.first_start);
    let stop = StopSignal::new();
    let h = || Header { records: 1, sealed_ns: 0, positions: Vec::new() };
    let waiting = Gauge::default();
    assert!(spool.push(&h(), &[0; 150], || stop.is_set(), &waiting).unwrap());
    stop.set();
    assert!(!spool.push(&h(), &[0; 150], || stop.is_set(), &waiting).unwrap());
    assert_eq!(waiting.get(), 0);
    store_checkpoint(dir.path(), &HashMap::new()).unwrap();
    let (again, rec) = open(dir.path(), 200).unwrap();
    assert!(!rec.first_start);
    assert_eq!(again.oldest().unwrap().unwrap().payload, vec![0; 150]);
}
