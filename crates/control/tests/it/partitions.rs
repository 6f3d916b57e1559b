//! Partition ownership on a real etcd: two members split the partitions without overlap and
//! record the split; a member that loses etcd gives its partitions up before its lease can
//! expire (so no other member could have taken them yet).

use crate::etcd::node;
use signalbox_control::partitions::Partitions;
use signalbox_testkit::etcd::Etcd;
use signalbox_testkit::eventually;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn owned(p: &Partitions) -> BTreeSet<u32> {
    (**p.owned().borrow()).clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_split_the_partitions_and_one_that_loses_etcd_gives_them_up_first() {
    let etcd = Etcd::start().await;
    let a = node(&etcd, "/sb/", "a").await;
    let b = node(&etcd, "/sb/", "b").await;
    let pa: Arc<Partitions> = a.start_partitions(16, "http://127.0.0.1:1".into()).await.unwrap().unwrap();
    let pb: Arc<Partitions> = b.start_partitions(16, "http://127.0.0.1:2".into()).await.unwrap().unwrap();
    eventually(Duration::from_secs(10), "16 partitions split over a and b", || async {
        let (oa, ob) = (owned(&pa), owned(&pb));
        let all: BTreeSet<u32> = oa.union(&ob).copied().collect();
        (all.len() == 16 && oa.is_disjoint(&ob) && !oa.is_empty() && !ob.is_empty()).then_some(())
    })
    .await;
    // The record in etcd says the same, on both nodes.
    eventually(Duration::from_secs(5), "the assignment recorded", || async {
        let rec = pb.assignment();
        let ok = (0..16).all(|p| {
            let who = if owned(&pa).contains(&p) { "a" } else { "b" };
            rec.get(&p).map(String::as_str) == Some(who)
        });
        ok.then_some(())
    })
    .await;
    let nodes: Vec<String> = pa.storage_nodes().into_iter().map(|n| n.node).collect();
    assert_eq!(nodes, ["a", "b"]);

    // etcd goes away: both stop before their leases (TTL 2 s) can expire.
    let mut wa = pa.owned();
    drop(etcd);
    let lost = Instant::now();
    tokio::time::timeout(Duration::from_secs(2), wa.wait_for(|s| s.is_empty()))
        .await
        .expect("a gave up its partitions within the lease TTL")
        .unwrap();
    let took = lost.elapsed();
    eprintln!("a gave up its partitions {took:?} after etcd went away (lease TTL 2 s)");
    assert!(owned(&pb).is_empty() || took < Duration::from_secs(2));
    tokio::time::timeout(Duration::from_secs(2), pb.owned().wait_for(|s| s.is_empty()))
        .await
        .expect("b gave up its partitions within the lease TTL")
        .unwrap();
}
