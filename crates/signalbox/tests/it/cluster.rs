//! Work shared out over nodes on etcd, through the binary: real `signalbox serve` processes
//! sharing a real etcd (Debian's `etcd-server`), real scrape targets on loopback that count
//! who scrapes them, a real Alertmanager, and a standalone `signalbox gateway` following
//! several nodes.
//!
//! - each scrape target and each rule group runs on exactly one live node and moves within
//!   about one lease TTL when that node is killed, with no overlap;
//! - a node that loses etcd stops its scrapes before its lease can end;
//! - an alert keeps its labels across the move, so Alertmanager notifies once;
//! - a gateway following node A keeps routing when A is killed and picks up a change made
//!   through node B.

use crate::{BIN, Node, StandaloneGateway, free_port, wait_ready};
use http::Method;
use serde_json::{Value, json};
use signalbox_testkit::client::Http;
use signalbox_testkit::etcd::Etcd;
use signalbox_testkit::eventually;
use signalbox_testkit::upstream::{Upstream, echo, serve};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The lease TTL the nodes run with: the failover window of owned work.
const TTL: Duration = Duration::from_secs(2);
/// The scrape interval of the test job.
const INTERVAL: Duration = Duration::from_millis(500);

/// A scrape target that records when it was scraped.
struct Target {
    up: Upstream,
    hits: Arc<Mutex<Vec<Instant>>>,
}

impl Target {
    async fn start() -> Target {
        let hits = Arc::new(Mutex::new(Vec::new()));
        let h = hits.clone();
        let up = serve(move |_req| {
            h.lock().unwrap().push(Instant::now());
            async {
                http::Response::builder()
                    .header("content-type", "text/plain; version=0.0.4")
                    .body(http_body_util::Full::new(bytes::Bytes::from_static(b"cluster_test_up 1\n")))
                    .unwrap()
            }
        })
        .await;
        Target { up, hits }
    }

    fn addr(&self) -> String {
        self.up.addr.to_string()
    }

    fn hits(&self) -> Vec<Instant> {
        self.hits.lock().unwrap().clone()
    }

    /// The shortest gap between two scrapes at or after `from`.
    fn min_gap_since(&self, from: Instant) -> Option<Duration> {
        let h: Vec<Instant> = self.hits().into_iter().filter(|t| *t >= from).collect();
        h.windows(2).map(|w| w[1] - w[0]).min()
    }
}

/// A config for node `name` on `etcd` under `prefix`, scraping `targets` and evaluating
/// `rules` (alerts to `alertmanager`).
fn node_config(
    dir: &std::path::Path,
    name: &str,
    etcd: &str,
    prefix: &str,
    targets: &[String],
    rules: Option<(&std::path::Path, &str)>,
) -> std::path::PathBuf {
    let list: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
    let mut cfg = format!(
        "[node]\nlog_level = \"warn\"\n\n[control]\nbackend = \"etcd\"\n\n[control.etcd]\nendpoints = [\"{etcd}\"]\nprefix = \"{prefix}\"\nlease_ttl = \"{}s\"\nrequest_timeout = \"2s\"\nnode_name = \"{name}\"\n\n[metrics]\nself_interval = \"0s\"\n\n[[metrics.scrape]]\njob_name = \"apps\"\nscrape_interval = \"{}ms\"\nscrape_timeout = \"400ms\"\nstatic_configs = [{{ targets = [{}] }}]\n",
        TTL.as_secs(),
        INTERVAL.as_millis(),
        list.join(", ")
    );
    if let Some((file, am)) = rules {
        cfg.push_str(&format!(
            "\n[metrics.rules]\nfiles = [\"{}\"]\nevaluation_interval = \"1s\"\nresend_delay = \"2s\"\ndefault_rules = false\nalertmanagers = [\"{am}\"]\n",
            file.display()
        ));
    }
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, cfg).unwrap();
    path
}

fn prefix() -> String {
    format!("/sb-cluster-{:08x}/", fastrand::u32(..))
}

/// The targets API of `node`: (scrape URL, owner, scraped here) per target.
async fn targets_of(http: &Http, node: &Node) -> Vec<(String, Option<String>, bool)> {
    let r = http.get(&format!("http://{}/prometheus/api/v1/targets", node.console)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    v["data"]["activeTargets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["scrapeUrl"].as_str().unwrap().to_owned(),
                t["owner"].as_str().map(str::to_owned),
                t["scrapedHere"].as_bool().unwrap(),
            )
        })
        .collect()
}

/// When every node in `nodes` (by name) lists all `n` targets, agrees on each target's
/// owner, the owner is one of them, and exactly the owner scrapes it: URL -> owner.
async fn agreed_owners(
    http: &Http,
    nodes: &[(&str, &Node)],
    n: usize,
) -> Option<std::collections::BTreeMap<String, String>> {
    let mut owners = std::collections::BTreeMap::new();
    let mut views = Vec::new();
    for (name, node) in nodes {
        views.push((name.to_string(), targets_of(http, node).await));
    }
    for (name, view) in &views {
        if view.len() != n {
            return None;
        }
        for (url, owner, here) in view {
            let owner = owner.clone()?;
            if !nodes.iter().any(|(m, _)| *m == owner) || *here != (owner == *name) {
                return None;
            }
            if owners.insert(url.clone(), owner.clone()).is_some_and(|o| o != owner) {
                return None;
            }
        }
    }
    Some(owners)
}

/// The rule group `name` as each node reports it: (owner, evaluated here, last evaluation).
async fn group_of(http: &Http, node: &Node, name: &str) -> Option<(Option<String>, bool, String)> {
    let v = http.get(&format!("http://{}/prometheus/api/v1/rules", node.console)).await.json();
    let g = v["data"]["groups"].as_array()?.iter().find(|g| g["name"] == name)?.clone();
    Some((
        g["owner"].as_str().map(str::to_owned),
        g["evaluatedHere"].as_bool()?,
        g["lastEvaluation"].as_str().unwrap_or("").to_owned(),
    ))
}

/// Runs `prometheus-alertmanager` with a webhook receiver until dropped; notifications
/// (webhook POSTs) are kept.
struct Alertmanager {
    child: Child,
    url: String,
    notifications: Arc<Mutex<Vec<Value>>>,
    _hook: Upstream,
    _dir: tempfile::TempDir,
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn alertmanager() -> Alertmanager {
    let bin = "/usr/bin/prometheus-alertmanager";
    assert!(std::path::Path::new(bin).exists(), "prometheus-alertmanager is missing: run scripts/test-deps.sh");
    let notifications = Arc::new(Mutex::new(Vec::new()));
    let n = notifications.clone();
    let hook = serve(move |req: http::Request<bytes::Bytes>| {
        if let Ok(v) = serde_json::from_slice::<Value>(req.body()) {
            n.lock().unwrap().push(v);
        }
        async { signalbox_testkit::upstream::status(200) }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("am.yml"),
        format!(
            "route:\n  receiver: hook\n  group_by: [alertname]\n  group_wait: 0s\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: hook\n    webhook_configs:\n      - url: http://{}/\n",
            hook.addr
        ),
    )
    .unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let mut child = Command::new(bin)
        .arg(format!("--config.file={}", dir.path().join("am.yml").display()))
        .arg(format!("--storage.path={}", dir.path().join("data").display()))
        .arg(format!("--web.listen-address={addr}"))
        .arg("--cluster.listen-address=")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start alertmanager");
    wait_ready(&mut child, &format!("http://{addr}/-/ready"))
        .await
        .unwrap_or_else(|log| panic!("alertmanager exited:\n{log}"));
    Alertmanager { child, url: format!("http://{addr}"), notifications, _hook: hook, _dir: dir }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrape_targets_and_rule_groups_have_one_owner_and_move_when_it_dies() {
    let etcd = Etcd::start().await;
    let am = alertmanager().await;
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.yml");
    let names = ["n1", "n2", "n3"];
    // The node that will own the rule group (the one killed below) should own at least two
    // targets, so that the failover is measured on more than one: add targets until it does
    // (ports are random). The keys are the documented ones: job and URL, file and group.
    let members: std::collections::BTreeSet<String> = names.iter().map(|n| n.to_string()).collect();
    let group_key = format!("rules\x1f{}\x1fcanary", rules.display());
    let group_owner_expected = signalbox_core::ownership::owner(&members, &group_key).unwrap().to_owned();
    let mut targets = Vec::new();
    while targets.len() < 6
        || targets
            .iter()
            .filter(|t: &&Target| {
                let key = format!("scrape\x1fapps\x1fhttp://{}/metrics", t.addr());
                signalbox_core::ownership::owner(&members, &key) == Some(group_owner_expected.as_str())
            })
            .count()
            < 2
    {
        targets.push(Target::start().await);
    }
    let n_targets = targets.len();
    let addrs: Vec<String> = targets.iter().map(Target::addr).collect();
    std::fs::write(
        &rules,
        "groups:\n  - name: canary\n    interval: 1s\n    rules:\n      - record: cluster:canary\n        expr: vector(1)\n      - alert: ClusterCanary\n        expr: vector(1) > 0\n        labels: {severity: page}\n        annotations:\n          summary: the canary sings\n",
    )
    .unwrap();
    let prefix = prefix();
    let mut nodes: Vec<Option<Node>> = Vec::new();
    for name in names {
        let cfg = node_config(dir.path(), name, &etcd.endpoint, &prefix, &addrs, Some((&rules, &am.url)));
        nodes.push(Some(Node::start(&["-c", cfg.to_str().unwrap()], &[]).await));
    }
    let http = Http::new();
    let live = |nodes: &Vec<Option<Node>>| -> Vec<(usize, &'static str)> {
        nodes.iter().enumerate().filter(|(_, n)| n.is_some()).map(|(i, _)| (i, names[i])).collect()
    };

    // Every node agrees on one owner per target, and only the owner scrapes it.
    let owners = eventually(Duration::from_secs(30), "the three nodes agreeing on the targets' owners", || {
        let (http, nodes) = (&http, &nodes);
        async move {
            let view: Vec<(&str, &Node)> = live(nodes).iter().map(|(i, n)| (*n, nodes[*i].as_ref().unwrap())).collect();
            agreed_owners(http, &view, n_targets).await
        }
    })
    .await;
    // Each target is scraped at its interval by one node: ~5 scrapes in 2.6 s, never two
    // within less than half an interval, not even while the nodes joined one by one. (A
    // target handed over by a live member starts after a 1 s grace: let the last join settle.)
    tokio::time::sleep(Duration::from_millis(1_600)).await;
    let steady = Instant::now();
    tokio::time::sleep(Duration::from_millis(2_600)).await;
    for (i, t) in targets.iter().enumerate() {
        let first = t.hits()[0];
        let gap = t.min_gap_since(first).unwrap();
        assert!(gap >= INTERVAL / 2, "target {i} scraped twice within {gap:?} while nodes joined");
    }
    for (i, t) in targets.iter().enumerate() {
        let n = t.hits().into_iter().filter(|h| *h >= steady).count();
        assert!((3..=7).contains(&n), "target {i} was scraped {n} times in 2.6 s at a 500 ms interval (one node each)");
        let gap = t.min_gap_since(steady).unwrap();
        assert!(gap >= INTERVAL / 2, "target {i} scraped twice within {gap:?}: two nodes scrape it");
    }

    // The rule group: one owner, evaluated there only; its alert reached Alertmanager once.
    let group_owner = eventually(Duration::from_secs(15), "one node evaluating the rule group", || {
        let (http, nodes) = (&http, &nodes);
        async move {
            let mut owner = None;
            let mut evaluating = Vec::new();
            for (i, name) in live(nodes) {
                let (o, here, _) = group_of(http, nodes[i].as_ref().unwrap(), "canary").await?;
                if owner.is_some() && owner != o {
                    return None;
                }
                owner = o;
                if here {
                    evaluating.push(name);
                }
            }
            (evaluating.len() == 1 && owner.as_deref() == Some(evaluating[0])).then(|| evaluating[0].to_owned())
        }
    })
    .await;
    assert_eq!(group_owner, group_owner_expected, "every node computes the owner the same way");
    eventually(Duration::from_secs(15), "the canary alert notified", || async {
        (!am.notifications.lock().unwrap().is_empty()).then_some(())
    })
    .await;

    // Kill the group's owner: its targets and the group move to the others.
    let victim = names.iter().position(|n| *n == group_owner).unwrap();
    let moved_urls: Vec<usize> = (0..targets.len())
        .filter(|i| owners.get(&format!("http://{}/metrics", addrs[*i])).map(String::as_str) == Some(names[victim]))
        .collect();
    let killed_at = Instant::now();
    nodes[victim].take().unwrap().kill9();

    let after = eventually(Duration::from_secs(20), "the survivors agreeing on new owners", || {
        let (http, nodes) = (&http, &nodes);
        async move {
            let view: Vec<(&str, &Node)> = live(nodes).iter().map(|(i, n)| (*n, nodes[*i].as_ref().unwrap())).collect();
            agreed_owners(http, &view, n_targets).await
        }
    })
    .await;
    assert!(after.values().all(|o| o != names[victim]), "{after:?}");
    // Every target of the dead node is scraped again within the lease TTL plus an interval
    // (and a second of slack for a loaded machine).
    let window = TTL + INTERVAL + Duration::from_secs(1);
    let mut worst = Duration::ZERO;
    for i in &moved_urls {
        let first = eventually(Duration::from_secs(15), "a scrape after the kill", || async {
            targets[*i].hits().into_iter().find(|h| *h > killed_at)
        })
        .await;
        worst = worst.max(first - killed_at);
    }
    assert!(
        worst <= window,
        "a dead node's target was scraped again only {worst:?} after the kill (window {window:?})"
    );
    eprintln!(
        "scrape failover: {} targets of {} moved; the last was scraped again {worst:?} after kill -9 (lease TTL {TTL:?})",
        moved_urls.len(),
        names[victim]
    );
    // The others kept their rhythm, and nobody scraped anything twice at once.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (i, t) in targets.iter().enumerate() {
        let gap = t.min_gap_since(steady).unwrap();
        assert!(gap >= INTERVAL / 2, "target {i} scraped twice within {gap:?} around the failover");
        if !moved_urls.contains(&i) {
            let h: Vec<Instant> = t.hits().into_iter().filter(|h| *h >= steady).collect();
            let longest = h.windows(2).map(|w| w[1] - w[0]).max().unwrap();
            assert!(longest < INTERVAL * 3, "target {i}, owned by a survivor, paused {longest:?}");
        }
    }

    // The rule group moved to a survivor, which evaluates it now.
    let new_owner = eventually(Duration::from_secs(15), "a survivor evaluating the rule group", || {
        let (http, nodes) = (&http, &nodes);
        async move {
            for (i, name) in live(nodes) {
                let (o, here, _) = group_of(http, nodes[i].as_ref().unwrap(), "canary").await?;
                if here && o.as_deref() == Some(name) {
                    return Some(name);
                }
            }
            None
        }
    })
    .await;
    assert_ne!(new_owner, names[victim]);
    // The new owner fires the same alert with the same labels: Alertmanager holds one alert
    // and has notified once.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let alerts = http.get(&format!("{}/api/v2/alerts", am.url)).await.json();
    let canaries: Vec<&Value> =
        alerts.as_array().unwrap().iter().filter(|a| a["labels"]["alertname"] == "ClusterCanary").collect();
    assert_eq!(canaries.len(), 1, "{alerts}");
    assert_eq!(canaries[0]["status"]["state"], "active", "{alerts}");
    assert_eq!(canaries[0]["labels"], json!({"alertname": "ClusterCanary", "severity": "page"}));
    let sent = am.notifications.lock().unwrap().clone();
    assert_eq!(sent.len(), 1, "Alertmanager notified more than once across the move: {sent:?}");
    assert_eq!(sent[0]["status"], "firing");
    drop(etcd);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_loses_etcd_stops_scraping_before_its_lease_can_end() {
    let etcd = Etcd::start().await;
    let mut targets = Vec::new();
    for _ in 0..4 {
        targets.push(Target::start().await);
    }
    let addrs: Vec<String> = targets.iter().map(Target::addr).collect();
    let dir = tempfile::tempdir().unwrap();
    let prefix = prefix();
    let n1 = Node::start(
        &["-c", node_config(dir.path(), "n1", &etcd.endpoint, &prefix, &addrs, None).to_str().unwrap()],
        &[],
    )
    .await;
    let n2 = Node::start(
        &["-c", node_config(dir.path(), "n2", &etcd.endpoint, &prefix, &addrs, None).to_str().unwrap()],
        &[],
    )
    .await;
    let http = Http::new();
    eventually(Duration::from_secs(30), "both nodes agreeing on the owners", || async {
        agreed_owners(&http, &[("n1", &n1), ("n2", &n2)], 4).await
    })
    .await;
    // A new owner waits out a short join grace and the target's offset in its interval.
    eventually(Duration::from_secs(15), "every target scraped", || async {
        targets.iter().all(|t| !t.hits().is_empty()).then_some(())
    })
    .await;
    let here = |node: &Node| {
        let (http, url) = (http.clone(), format!("http://{}/metrics", node.console));
        async move {
            let text = http.get(&url).await.text();
            let line = text.lines().find(|l| l.starts_with("signalbox_scrape_targets_scraped_here ")).unwrap_or("");
            line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok())
        }
    };
    assert_eq!(here(&n1).await.unwrap() + here(&n2).await.unwrap(), 4.0, "the metric shows the split");

    // etcd stops answering (frozen, as a partition would look): no keep-alive is answered,
    // so each node stops its scrapes by `last acknowledged keep-alive + TTL - TTL/4`, before
    // etcd could expire its lease and hand the work to someone else.
    let pid = etcd.pid();
    signal(pid, "STOP");
    let frozen_at = Instant::now();
    tokio::time::sleep(TTL * 2).await;
    // The safety bound is the TTL (etcd cannot expire the lease earlier); the design stops
    // at `TTL - TTL/4` after the last acknowledged keep-alive, printed below.
    let deadline = TTL;
    let mut latest = Duration::ZERO;
    for (i, t) in targets.iter().enumerate() {
        let last = t.hits().into_iter().last().unwrap();
        let after = last.saturating_duration_since(frozen_at);
        latest = latest.max(after);
        assert!(
            after <= deadline,
            "target {i} was still scraped {after:?} after etcd froze (a node must stop before its lease can end, {deadline:?})"
        );
    }
    eprintln!(
        "lease loss: the last scrape came {latest:?} after etcd froze (lease TTL {TTL:?}, bound {:?})",
        TTL - TTL / 4
    );
    let stopped_for = targets.iter().map(|t| t.hits().len()).collect::<Vec<_>>();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        stopped_for,
        targets.iter().map(|t| t.hits().len()).collect::<Vec<_>>(),
        "nobody scrapes without a lease"
    );
    let v = targets_of(&http, &n1).await;
    assert!(v.iter().all(|(_, _, here)| !here), "n1 still claims targets without its lease: {v:?}");
    assert_eq!(here(&n1).await, Some(0.0));

    // A write while etcd is frozen waits out `request_timeout` (2 s) and is answered 503 with
    // a JSON body saying it may not have been applied (not a 500 "storage error").
    let asked = Instant::now();
    let r = http
        .send(
            Method::POST,
            &format!("http://{}/api/registry/instances", n1.console),
            &[("content-type", "application/json")],
            json!({"service": "frozen", "id": "frozen-1", "address": "127.0.0.1", "port": 9}).to_string(),
        )
        .await;
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.json()["code"], "control_unavailable", "{}", r.text());
    assert!(asked.elapsed() < Duration::from_secs(10), "the write waited {:?}", asked.elapsed());

    // etcd answers again: the nodes take new leases and every target is scraped again.
    signal(pid, "CONT");
    let back = Instant::now();
    for t in &targets {
        eventually(Duration::from_secs(20), "scrapes resuming", || async { t.hits().into_iter().find(|h| *h > back) })
            .await;
    }
    eventually(Duration::from_secs(20), "both nodes agreeing again", || async {
        agreed_owners(&http, &[("n1", &n1), ("n2", &n2)], 4).await
    })
    .await;
    drop(etcd);
}

/// A request through the gateway: when it ended, and the upstream that answered or the
/// failure.
type Answer = (Instant, Result<String, String>);

fn signal(pid: u32, sig: &str) {
    assert!(Command::new("kill").args([&format!("-{sig}"), &pid.to_string()]).status().unwrap().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_following_two_nodes_keeps_routing_when_one_dies_and_follows_the_other() {
    let etcd = Etcd::start().await;
    let one = serve(echo("one")).await;
    let two = serve(echo("two")).await;
    let dir = tempfile::tempdir().unwrap();
    let prefix = prefix();
    let a =
        Node::start(&["-c", node_config(dir.path(), "a", &etcd.endpoint, &prefix, &[], None).to_str().unwrap()], &[])
            .await;
    let b =
        Node::start(&["-c", node_config(dir.path(), "b", &etcd.endpoint, &prefix, &[], None).to_str().unwrap()], &[])
            .await;
    let http = Http::new();
    let register = |node: &Node, id: &str, port: u16| {
        let url = format!("http://{}/api/registry/instances", node.console);
        let body = json!({"service": "shop", "id": id, "address": "127.0.0.1", "port": port});
        let http = http.clone();
        async move { http.send(Method::POST, &url, &[("content-type", "application/json")], body.to_string()).await }
    };
    let r = register(&a, "one", one.addr.port()).await;
    assert_eq!(r.status, 201, "{}", r.text());

    // The gateway follows a (listed first), with b as the fallback, from the config file's
    // list and a comma-separated flag alike; the flag wins.
    let gw_cfg = dir.path().join("gw.toml");
    std::fs::write(
        &gw_cfg,
        "[control]\ncontrol_planes = [\"http://127.0.0.1:1\"]\n\n[gateway.telemetry]\naccess_log = \"off\"\n[[gateway.services]]\nname = \"shop\"\n[[gateway.routes]]\nservice = \"shop\"\n[gateway.routes.match]\npath_prefix = \"/\"\n",
    )
    .unwrap();
    let gw = StandaloneGateway::start(
        &[
            "--control-plane".into(),
            format!("http://{},http://{}", a.console, b.console),
            "-c".into(),
            gw_cfg.to_str().unwrap().into(),
        ],
        &[],
    )
    .await;
    let following = || {
        let (http, url) = (http.clone(), format!("http://{}/api/gateway/control-plane", gw.admin));
        async move { http.get(&url).await.json()["following"].as_str().unwrap_or("").to_owned() }
    };
    assert_eq!(following().await, format!("http://{}", a.console));
    let url = format!("http://{}/x", gw.gateway);
    eventually(Duration::from_secs(15), "the gateway routing to one", || async {
        let r = http.try_send(Method::GET, &url, &[], bytes::Bytes::new()).await.ok()?;
        (r.status == 200 && r.json()["server"] == "one").then_some(())
    })
    .await;

    // Traffic through the gateway the whole time: every answer is recorded.
    let answers: Arc<Mutex<Vec<Answer>>> = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (http, url, answers, stop) = (http.clone(), url.clone(), answers.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let r = match http.try_send(Method::GET, &url, &[], bytes::Bytes::new()).await {
                    Ok(r) if r.status == 200 => Ok(r.json()["server"].as_str().unwrap_or("").to_owned()),
                    Ok(r) => Err(format!("{} {}", r.status, r.text())),
                    Err(e) => Err(e.to_string()),
                };
                answers.lock().unwrap().push((Instant::now(), r));
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;

    // a dies; the gateway moves to b.
    let a_console = a.console.clone();
    let killed_at = Instant::now();
    drop(a.kill9());
    let b_url = format!("http://{}", b.console);
    eventually(Duration::from_secs(20), "the gateway following b", || async {
        (following().await == b_url).then_some(())
    })
    .await;
    let failover = killed_at.elapsed();

    // A route change made through b (one leaves, two arrives) reaches the gateway within 2 s.
    let changed_at = Instant::now();
    let r = register(&b, "two", two.addr.port()).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let r = http.send(Method::DELETE, &format!("http://{}/api/registry/instances/one", b.console), &[], "").await;
    assert!(r.status == 200 || r.status == 204, "{} {}", r.status, r.text());
    let picked_up = eventually(Duration::from_secs(10), "the gateway routing to two only", || async {
        let recent: Vec<String> =
            answers.lock().unwrap().iter().rev().take(5).filter_map(|(_, r)| r.as_ref().ok().cloned()).collect();
        (recent.len() == 5 && recent.iter().all(|s| s == "two")).then(|| changed_at.elapsed())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    load.await.unwrap();

    let answers = answers.lock().unwrap().clone();
    let failed: Vec<&Answer> = answers.iter().filter(|(_, r)| r.is_err()).collect();
    let during: usize = answers.iter().filter(|(t, _)| *t > killed_at && *t < killed_at + failover).count();
    eprintln!(
        "gateway failover: following b {failover:?} after kill -9 of a ({a_console}); a change made through b was routed {picked_up:?} after it was made; {} requests, {} during the failover, {} failed",
        answers.len(),
        during,
        failed.len()
    );
    assert!(failed.is_empty(), "requests through the gateway failed: {:?}", failed.iter().take(5).collect::<Vec<_>>());
    assert!(picked_up < Duration::from_secs(2), "the change through b reached the gateway after {picked_up:?}");
    assert!(failover < Duration::from_secs(2), "the gateway followed b only {failover:?} after a died");
    drop(etcd);
}

#[tokio::test]
async fn a_gateway_needs_a_valid_control_plane() {
    let out = Command::new(BIN).args(["gateway", "--control-plane", "http://127.0.0.1:9,not a url"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("invalid --control-plane (node 2): `not a url` is not an http:// or https:// URL of a node"),
        "{err}"
    );
    let out = Command::new(BIN).args(["gateway"]).env_remove("SIGNALBOX_CONTROL_PLANE").output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no control plane to follow"), "{err}");
}
