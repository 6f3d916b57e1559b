//! Two or more control planes on one real etcd: what one node writes, the other serves,
//! and blocking waits on the other wake; health checks run on exactly one live node and
//! move when it dies; etcd that cannot be reached fails the start with a clear error.

use signalbox_control::ControlPlane;
use signalbox_control::backend::config::EtcdConfig;
use signalbox_control::config::Write;
use signalbox_control::registry::model::{RegisterRequest, Status};
use signalbox_core::config::Dur;
use signalbox_testkit::etcd::Etcd;
use signalbox_testkit::eventually;
use std::time::{Duration, Instant};

fn etcd_config(etcd: &Etcd, prefix: &str, node: &str) -> EtcdConfig {
    EtcdConfig {
        endpoints: vec![etcd.endpoint.clone()],
        prefix: prefix.into(),
        node_name: Some(node.into()),
        lease_ttl: Dur::secs(2),
        request_timeout: Dur::secs(2),
        ..Default::default()
    }
}

pub(crate) async fn node(etcd: &Etcd, prefix: &str, name: &str) -> ControlPlane {
    let cfg = etcd_config(etcd, prefix, name);
    let open = ControlPlane::open_etcd(&cfg, Default::default());
    tokio::time::timeout(Duration::from_secs(10), open).await.expect("open within 10 s").expect("open")
}

fn registration(json: serde_json::Value) -> RegisterRequest {
    serde_json::from_value(json).expect("a valid registration")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_on_one_node_wakes_a_blocking_wait_on_the_other() {
    let etcd = Etcd::start().await;
    let a = node(&etcd, "/t1/", "a").await;
    let b = node(&etcd, "/t1/", "b").await;
    eventually(Duration::from_secs(5), "both members known on both nodes", || async {
        (a.registry.members().len() == 2 && b.registry.members().len() == 2).then_some(())
    })
    .await;

    // A blocking query on B: wait past B's current index, then read.
    let seen = b.index.current();
    let b_index = b.index.clone();
    let b_registry = b.registry.clone();
    let waiter = tokio::spawn(async move {
        let idx = b_index.wait_past(seen, Duration::from_secs(5)).await;
        (Instant::now(), idx, b_registry.instances("web", false))
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let view = a
        .registry
        .register(registration(
            serde_json::json!({"service": "web", "id": "web-1", "address": "127.0.0.1", "port": 8080}),
        ))
        .await
        .unwrap();
    let (woke, idx, instances) = waiter.await.unwrap();
    assert!(woke - started < Duration::from_secs(1), "B woke after {:?}", woke - started);
    assert_eq!(instances.len(), 1, "B's blocking wait sees the registration");
    assert_eq!(instances[0].id, "web-1");
    assert!(idx >= view.modify_index, "B's index {idx} reached the registration's {}", view.modify_index);
    assert_eq!(b.registry.instance("web-1").unwrap().modify_index, view.modify_index, "one index on every node");
    let change = b.registry.changes_since(seen).unwrap();
    assert_eq!(change.len(), 1, "B applied the registration once: {change:?}");
    assert_eq!(a.registry.changes_since(seen).unwrap().len(), 1, "A applied its own write once");

    // Config written on B has its history on A.
    let w = |v: &str| Write { value: v.into(), author: "test".into(), comment: String::new(), expected_version: None };
    let v1 = b.config.put("shop", "default", "greeting", w("hello")).await.unwrap();
    let v2 = b.config.put("shop", "default", "greeting", w("hello again")).await.unwrap();
    assert_eq!((v1.version, v2.version), (1, 2));
    a.index.wait_past(v2.index - 1, Duration::from_secs(2)).await;
    let history = a.config.history("shop", "default", "greeting").unwrap();
    assert_eq!(history.iter().map(|e| e.value.as_str()).collect::<Vec<_>>(), ["hello", "hello again"]);
    assert_eq!(history[1].index, v2.index, "the version's index is the same on A");
    assert_eq!(a.config.get("shop", "default", "greeting", None).unwrap().value, "hello again");
    let changes = a.config.changes_since(v1.index - 1, Some("shop"), None).unwrap();
    assert_eq!(changes.iter().map(|c| c.version).collect::<Vec<_>>(), [1, 2]);

    // A compare-and-set written against a stale version loses, on either node.
    let stale = Write { expected_version: Some(1), ..w("late") };
    let err = a.config.put("shop", "default", "greeting", stale).await.unwrap_err();
    assert!(err.to_string().contains("current version is 2"), "{err}");

    // Consul KV: the modify index is etcd's revision; a CAS with it works on the other node.
    assert!(a.kv.put("feature/flag", b"on", 0, Some(0)).await.unwrap());
    assert!(!b.kv.put("feature/flag", b"x", 0, Some(0)).await.unwrap(), "CAS 0 on an existing key loses");
    let entry = b.kv.get("feature/flag").expect("B sees A's key");
    assert!(b.kv.put("feature/flag", b"off", 0, Some(entry.modify_index)).await.unwrap());
    assert!(!a.kv.put("feature/flag", b"again", 0, Some(entry.modify_index)).await.unwrap(), "stale CAS loses on A");
    assert_eq!(a.kv.get("feature/flag").unwrap().value(), b"off");

    // Deregistration on B reaches A.
    assert!(b.registry.deregister("web-1").await.unwrap());
    eventually(Duration::from_secs(2), "the deregistration on A", || async {
        a.registry.instances("web", false).is_empty().then_some(())
    })
    .await;

    // A node started later loads the same state.
    let c = node(&etcd, "/t1/", "c").await;
    assert_eq!(c.config.history("shop", "default", "greeting").unwrap().len(), 2);
    assert_eq!(c.kv.get("feature/flag").unwrap().value(), b"off");
    eventually(Duration::from_secs(2), "the same index on every node", || async {
        (c.index.current() == b.index.current() && a.index.current() == b.index.current()).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_run_on_one_live_node_and_move_when_it_dies() {
    let etcd = Etcd::start().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accept = tokio::spawn(async move {
        loop {
            if listener.accept().await.is_err() {
                return;
            }
        }
    });
    let a = node(&etcd, "/t2/", "a").await;
    let b = node(&etcd, "/t2/", "b").await;
    eventually(Duration::from_secs(5), "both members known on both nodes", || async {
        (a.registry.members().len() == 2 && b.registry.members().len() == 2).then_some(())
    })
    .await;
    let ids: Vec<String> = (0..20).map(|i| format!("api-{i}")).collect();
    for id in &ids {
        a.registry
            .register(registration(serde_json::json!({
                "service": "api", "id": id, "address": "127.0.0.1", "port": port,
                "checks": [{"tcp": format!("127.0.0.1:{port}"), "interval": "200ms", "timeout": "200ms",
                            "initial_status": "critical"}]
            })))
            .await
            .unwrap();
    }
    eventually(Duration::from_secs(5), "every instance passing on both nodes", || async {
        let pass = |n: &ControlPlane| n.registry.instances("api", true).len();
        (pass(&a) == 20 && pass(&b) == 20).then_some(())
    })
    .await;
    let on_a = ids.iter().filter(|id| a.registry.runs_checks_of(id)).count();
    let on_b = ids.iter().filter(|id| b.registry.runs_checks_of(id)).count();
    for id in &ids {
        assert!(a.registry.runs_checks_of(id) != b.registry.runs_checks_of(id), "{id} is checked by exactly one node");
    }
    assert!(on_a > 0 && on_b > 0, "both nodes check some instances ({on_a} on A, {on_b} on B)");

    // Kill A (no goodbye: its lease has to expire). Its checks move to B within the lease
    // TTL (2 s) plus the watch's delivery.
    let killed = Instant::now();
    drop(a);
    eventually(Duration::from_secs(4), "every check on B", || async {
        ids.iter().all(|id| b.registry.runs_checks_of(id)).then_some(())
    })
    .await;
    let moved = killed.elapsed();
    assert!(moved <= Duration::from_millis(3500), "checks moved after {moved:?}");
    eprintln!("health checks moved from the killed node in {moved:?} (lease TTL 2 s)");

    // B's checks work: the target goes away and every instance turns critical on B.
    accept.abort();
    let _ = accept.await;
    eventually(Duration::from_secs(5), "every instance critical after the target closed", || async {
        b.registry.instances("api", false).iter().all(|i| i.status == Status::Critical).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_leaves_hands_its_checks_over_at_once() {
    let etcd = Etcd::start().await;
    let a = node(&etcd, "/t3/", "a").await;
    let b = node(&etcd, "/t3/", "b").await;
    eventually(Duration::from_secs(5), "both members known", || async {
        (a.registry.members().len() == 2 && b.registry.members().len() == 2).then_some(())
    })
    .await;
    let ids: Vec<String> = (0..10).map(|i| format!("ttl-{i}")).collect();
    for id in &ids {
        a.registry
            .register(registration(serde_json::json!({
                "service": "worker", "id": id, "address": "127.0.0.1", "port": 9000,
                "checks": [{"ttl": "30s", "initial_status": "passing"}]
            })))
            .await
            .unwrap();
    }
    // A TTL report on the node that does not run the check reaches the one that does.
    let remote = ids.iter().find(|id| b.registry.runs_checks_of(id)).expect("B checks some instance").clone();
    a.registry.report_ttl(&remote, Status::Warning, Some("busy".into())).await.unwrap();
    // A's write returns once A applied it; B's watch delivers it independently.
    let inst = eventually(Duration::from_secs(2), "the report on A to set the status B serves", || async {
        b.registry.instance(&remote).filter(|i| i.status == Status::Warning)
    })
    .await;
    assert_eq!(inst.checks[0].output, "busy");

    let left = Instant::now();
    a.leave().await;
    eventually(Duration::from_secs(2), "every check on B", || async {
        ids.iter().all(|id| b.registry.runs_checks_of(id)).then_some(())
    })
    .await;
    assert!(left.elapsed() < Duration::from_secs(1), "a revoked lease hands over at once: {:?}", left.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_etcd_fails_the_start_with_a_clear_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let cfg = EtcdConfig {
        endpoints: vec![format!("http://127.0.0.1:{port}")],
        request_timeout: Dur::secs(1),
        ..Default::default()
    };
    let started = Instant::now();
    let open = ControlPlane::open_etcd(&cfg, Default::default());
    let err = match tokio::time::timeout(Duration::from_secs(10), open).await.expect("no hang") {
        Ok(_) => panic!("opened without etcd"),
        Err(e) => e.to_string(),
    };
    assert!(started.elapsed() < Duration::from_secs(4), "failed after {:?}", started.elapsed());
    assert!(err.contains(&format!("etcd at http://127.0.0.1:{port}")), "{err}");
    assert!(err.contains("cannot read the control state"), "{err}");

    let bad = EtcdConfig { endpoints: vec!["127.0.0.1:2379".into()], ..Default::default() };
    let err = ControlPlane::open_etcd(&bad, Default::default()).await.err().expect("refused").to_string();
    assert!(err.starts_with("control.etcd.endpoints[0]:"), "{err}");
}

/// etcd's write load per registered instance with health checks on, printed for
/// docs/benchmarks.md (`cargo test -p signalbox-control --test it write_load -- --nocapture`).
/// Active checks (TCP here) write only when a status changes: none while stable. A TTL
/// check writes once per report, as any node must tell the one running the check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_load_per_instance() {
    let etcd = Etcd::start().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let _accept = tokio::spawn(async move { while listener.accept().await.is_ok() {} });
    let a = node(&etcd, "/t4/", "a").await;
    let b = node(&etcd, "/t4/", "b").await;
    const N: usize = 100;
    for i in 0..N {
        a.registry
            .register(registration(serde_json::json!({
                "service": "tcp", "id": format!("tcp-{i}"), "address": "127.0.0.1", "port": port,
                "checks": [{"tcp": format!("127.0.0.1:{port}"), "interval": "1s", "timeout": "1s"}]
            })))
            .await
            .unwrap();
        a.registry
            .register(registration(serde_json::json!({
                "service": "ttl", "id": format!("ttl-{i}"), "address": "127.0.0.1", "port": 9000,
                "checks": [{"ttl": "10s"}]
            })))
            .await
            .unwrap();
    }
    eventually(Duration::from_secs(10), "every TCP-checked instance passing", || async {
        (b.registry.instances("tcp", true).len() == N).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Active checks only, steady state.
    let window = Duration::from_secs(5);
    let start = b.index.current();
    tokio::time::sleep(window).await;
    let active = (b.index.current() - start) as f64 / window.as_secs_f64() / N as f64;

    // TTL instances reporting every second, half of them on each node.
    let start = b.index.current();
    let began = Instant::now();
    for _ in 0..5 {
        let tick = Instant::now();
        for i in 0..N {
            let node = if i % 2 == 0 { &a } else { &b };
            node.registry.report_ttl(&format!("ttl-{i}"), Status::Passing, None).await.unwrap();
        }
        tokio::time::sleep(Duration::from_secs(1).saturating_sub(tick.elapsed())).await;
    }
    let writes = b.index.current() - start;
    let ttl = writes as f64 / began.elapsed().as_secs_f64() / N as f64;
    eprintln!(
        "etcd writes per instance: {active:.4}/s with a stable TCP check every 1 s; {ttl:.2}/s with a TTL check reported every 1 s ({writes} writes for {} reports)",
        5 * N
    );
    assert!(active < 0.01, "stable active checks write nothing: {active}/s per instance");
    assert_eq!(writes as usize, 5 * N, "one write per TTL report");
}
