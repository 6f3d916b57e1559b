//! Scrapes against real HTTP servers on loopback.

use super::job::{Job, JobConfig};
use super::scraper::{Health, Scraper, http_client};
use super::*;
use crate::storage::{Matcher, is_stale};
use crate::tsdb::head::Head;
use std::io::Write;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What the fake target answers: status, content type, body, gzip.
#[derive(Clone)]
struct Answer {
    status: u16,
    content_type: &'static str,
    body: Vec<u8>,
    gzip: bool,
}

fn text(body: &str) -> Answer {
    Answer { status: 200, content_type: "text/plain; version=0.0.4", body: body.as_bytes().to_vec(), gzip: false }
}

/// A loopback HTTP server answering every request with the current answer.
async fn target(answer: Arc<Mutex<Answer>>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut got = 0;
                while !buf[..got].windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut buf[got..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got += n,
                    }
                }
                let a = answer.lock().unwrap().clone();
                let body = if a.gzip {
                    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                    e.write_all(&a.body).unwrap();
                    e.finish().unwrap()
                } else {
                    a.body.clone()
                };
                let head = format!(
                    "HTTP/1.1 {} X\r\nContent-Type: {}\r\nContent-Length: {}\r\n{}Connection: close\r\n\r\n",
                    a.status,
                    a.content_type,
                    body.len(),
                    if a.gzip { "Content-Encoding: gzip\r\n" } else { "" }
                );
                let _ = sock.write_all(head.as_bytes()).await;
                let _ = sock.write_all(&body).await;
            });
        }
    });
    addr
}

fn job(extra: &str, addr: &str) -> Arc<Job> {
    let cfg: JobConfig = toml::from_str(&format!(
        "job_name = \"api\"\nscrape_interval = \"1s\"\nscrape_timeout = \"500ms\"\n{extra}\n[[static_configs]]\ntargets = [\"{addr}\"]\nlabels = {{ team = \"core\" }}\n"
    ))
    .unwrap();
    Arc::new(Job::new(cfg).unwrap())
}

fn scraper(job: Arc<Job>, head: Arc<Head>) -> Scraper {
    let (targets, _) = job.targets(job.static_discovered());
    Scraper {
        target: Arc::new(targets[0].clone()),
        job,
        appender: head,
        client: http_client(),
        health: Arc::new(Mutex::new(Health::default())),
        metadata: Arc::new(Metadata::default()),
        previous: HashSet::new(),
    }
}

fn latest(head: &Head, name: &str) -> Vec<(Labels, f64)> {
    head.select(&[Matcher::Equal("__name__".into(), name.into())], 0, i64::MAX)
        .into_iter()
        .map(|s| (s.labels, s.samples.last().unwrap().1))
        .collect()
}

use crate::storage::Labels;

fn get<'a>(l: &'a Labels, k: &str) -> &'a str {
    l.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str()).unwrap_or("")
}

#[tokio::test]
async fn scrapes_label_synthetic_series_and_staleness() {
    let answer = Arc::new(Mutex::new(text(
        "# TYPE http_requests_total counter\nhttp_requests_total{code=\"200\",job=\"inner\"} 10\nhttp_requests_total{code=\"500\"} 2\nqueue_depth 3 1000\n",
    )));
    let addr = target(answer.clone()).await;
    let head = Arc::new(Head::new(600_000, 10_000));
    let mut s = scraper(job("", &addr), head.clone());
    s.scrape_once().await;
    assert_eq!(s.health.lock().unwrap().health, "up", "{}", s.health.lock().unwrap().last_error);
    let reqs = latest(&head, "http_requests_total");
    assert_eq!(reqs.len(), 2);
    let ok = reqs.iter().find(|(l, _)| get(l, "code") == "200").unwrap();
    assert_eq!(
        (get(&ok.0, "job"), get(&ok.0, "exported_job"), get(&ok.0, "instance"), get(&ok.0, "team")),
        ("api", "inner", addr.as_str(), "core")
    );
    assert_eq!(ok.1, 10.0);
    // honor_timestamps: the exposed timestamp is kept.
    let q = head.select(&[Matcher::Equal("__name__".into(), "queue_depth".into())], 0, i64::MAX);
    assert_eq!(q[0].samples[0].0, 1000);
    assert_eq!(latest(&head, "up")[0].1, 1.0);
    assert_eq!(s.metadata.list(Some("http_requests_total"), 0)["http_requests_total"][0].kind, "counter");
    assert_eq!(latest(&head, "scrape_samples_scraped")[0].1, 3.0);
    assert_eq!(latest(&head, "scrape_series_added")[0].1, 3.0);
    assert!(latest(&head, "scrape_duration_seconds")[0].1 > 0.0);

    // The 500 series disappears: it gets a staleness marker; the rest continue.
    *answer.lock().unwrap() = text("http_requests_total{code=\"200\",job=\"inner\"} 11\nqueue_depth 4\n");
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    s.scrape_once().await;
    let reqs = latest(&head, "http_requests_total");
    let err = reqs.iter().find(|(l, _)| get(l, "code") == "500").unwrap();
    assert!(is_stale(err.1), "a vanished series is marked stale");
    assert_eq!(latest(&head, "scrape_series_added")[0].1, 0.0);

    // Garbage: up=0, a reason, every previous series stale, nothing else stored.
    *answer.lock().unwrap() = text("this is { not metrics\n");
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    s.scrape_once().await;
    let h = s.health.lock().unwrap().clone();
    assert_eq!(h.health, "down");
    assert!(h.last_error.contains("line 1"), "{}", h.last_error);
    assert_eq!(latest(&head, "up")[0].1, 0.0);
    assert!(latest(&head, "http_requests_total").iter().all(|(_, v)| is_stale(*v)));
    assert!(latest(&head, "queue_depth").iter().all(|(_, v)| is_stale(*v)));
}

#[tokio::test]
async fn honor_labels_gzip_openmetrics_and_limits() {
    let mut a = text("# TYPE m gauge\nm{job=\"inner\"} 1 1.5\n# EOF\n");
    a.content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    a.gzip = true;
    let answer = Arc::new(Mutex::new(a));
    let addr = target(answer.clone()).await;
    let head = Arc::new(Head::new(600_000, 10_000));
    let mut s = scraper(job("honor_labels = true\nhonor_timestamps = false", &addr), head.clone());
    s.scrape_once().await;
    assert_eq!(s.health.lock().unwrap().health, "up", "{}", s.health.lock().unwrap().last_error);
    let m = head.select(&[Matcher::Equal("__name__".into(), "m".into())], 0, i64::MAX);
    assert_eq!(get(&m[0].labels, "job"), "inner", "honor_labels keeps the scraped label");
    assert!(m[0].samples[0].0 > 1_000_000, "honor_timestamps = false uses the scrape time");

    // Too many samples.
    *answer.lock().unwrap() = text(&(0..20).map(|i| format!("s{{i=\"{i}\"}} 1\n")).collect::<String>());
    let mut limited = scraper(job("sample_limit = 10", &addr), head.clone());
    limited.scrape_once().await;
    assert!(limited.health.lock().unwrap().last_error.contains("sample limit exceeded"));
    assert!(latest(&head, "s").is_empty(), "a failed scrape stores none of its samples");

    // A body over the limit, also when only the inflated size is over it.
    let mut big = text(&"x 1\n".repeat(10_000));
    big.gzip = true;
    *answer.lock().unwrap() = big;
    let mut small = scraper(job("body_size_limit = \"1KB\"", &addr), head.clone());
    small.scrape_once().await;
    assert!(
        small.health.lock().unwrap().last_error.contains("body size limit"),
        "{}",
        small.health.lock().unwrap().last_error
    );

    // An error status.
    *answer.lock().unwrap() = Answer { status: 503, content_type: "text/plain", body: b"down".to_vec(), gzip: false };
    let mut failing = scraper(job("", &addr), head.clone());
    failing.scrape_once().await;
    assert!(failing.health.lock().unwrap().last_error.contains("503"));
}

#[tokio::test]
async fn metric_relabeling_and_the_manager_lifecycle() {
    let answer = Arc::new(Mutex::new(text("keep_me 1\ndrop_me 2\n")));
    let addr = target(answer.clone()).await;
    let head = Arc::new(Head::new(600_000, 10_000));
    let j = job(
        "[[metric_relabel_configs]]\naction = \"drop\"\nsource_labels = [\"__name__\"]\nregex = \"drop_.*\"",
        &addr,
    );
    let m = Manager::new(head.clone(), Arc::new(Metadata::default()));
    m.sync(std::slice::from_ref(&j), HashMap::new());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while latest(&head, "up").is_empty() {
        assert!(std::time::Instant::now() < deadline, "the loop never scraped");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(latest(&head, "keep_me").len(), 1);
    assert!(latest(&head, "drop_me").is_empty());
    let targets = m.targets();
    assert_eq!(targets.len(), 1);
    assert_eq!(targets[0].target.url, format!("http://{addr}/metrics"));
    // The target goes away: its series are marked stale.
    drop(j);
    m.sync(&[], HashMap::new());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !latest(&head, "keep_me").iter().all(|(_, v)| is_stale(*v)) {
        assert!(std::time::Instant::now() < deadline, "no staleness marker after the target went");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(m.targets().is_empty());
}

#[test]
fn job_checks_name_the_key() {
    let bad = |extra: &str| {
        let cfg: JobConfig = toml::from_str(&format!("job_name = \"j\"\n{extra}")).unwrap();
        Job::new(cfg).unwrap_err()
    };
    assert!(bad("scrape_interval = \"soon\"").contains("scrape_interval"));
    assert!(bad("scrape_interval = \"5s\"\nscrape_timeout = \"10s\"").contains("scrape_timeout"));
    assert!(bad("scheme = \"ftp\"").contains("scheme"));
    assert!(bad("body_size_limit = \"lots\"").contains("body_size_limit"));
    assert!(bad("[[static_configs]]\ntargets = [\"http://x/metrics\"]").contains("static_configs[0].targets"));
    assert!(bad("[[relabel_configs]]\naction = \"hashmod\"").contains("relabel_configs[0]"));
}

#[tokio::test]
async fn in_a_cluster_each_target_is_scraped_by_its_owner_only_and_a_node_without_its_lease_stops() {
    use signalbox_core::ownership::Members;
    let mut addrs = Vec::new();
    for _ in 0..6 {
        addrs.push(target(Arc::new(Mutex::new(text("m 1\n")))).await);
    }
    let list: Vec<String> = addrs.iter().map(|a| format!("\"{a}\"")).collect();
    let cfg: JobConfig = toml::from_str(&format!(
        "job_name = \"api\"\nscrape_interval = \"1s\"\nscrape_timeout = \"500ms\"\n[[static_configs]]\ntargets = [{}]\n",
        list.join(", ")
    ))
    .unwrap();
    let j = Arc::new(Job::new(cfg).unwrap());
    let both: std::collections::BTreeSet<String> = ["a".to_string(), "b".to_string()].into();
    let view = |me: &str, live: bool, members: &std::collections::BTreeSet<String>| {
        Arc::new(Members { me: Some(me.into()), live, members: members.clone() })
    };
    let (tx_a, rx_a) = tokio::sync::watch::channel(view("a", true, &both));
    let (tx_b, rx_b) = tokio::sync::watch::channel(view("b", true, &both));
    let (ha, hb) = (Arc::new(Head::new(600_000, 10_000)), Arc::new(Head::new(600_000, 10_000)));
    let a = Manager::new(ha.clone(), Arc::new(Metadata::default()));
    let b = Manager::new(hb.clone(), Arc::new(Metadata::default()));
    a.share_by(rx_a);
    b.share_by(rx_b);
    a.sync(std::slice::from_ref(&j), HashMap::new());
    b.sync(std::slice::from_ref(&j), HashMap::new());
    let (ta, tb) = (a.targets(), b.targets());
    assert_eq!((ta.len(), tb.len()), (6, 6), "both list every target");
    for (x, y) in ta.iter().zip(&tb) {
        assert_eq!(x.target.url, y.target.url);
        assert_eq!(x.owner, y.owner, "both name the same owner");
        assert!(x.scraped_here != y.scraped_here, "exactly one scrapes {}", x.target.url);
        assert_eq!(x.scraped_here, x.owner.as_deref() == Some("a"));
    }
    let mine = ta.iter().filter(|t| t.scraped_here).count();
    // Each node stores only what it scraped: `up` for its own targets.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while latest(&ha, "up").len() + latest(&hb, "up").len() < 6 {
        assert!(std::time::Instant::now() < deadline, "every target scraped once");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(latest(&ha, "up").len(), mine);
    assert_eq!(latest(&hb, "up").len(), 6 - mine);

    // a loses its lease: it scrapes nothing from then on (and marks its series stale);
    // b, seeing a's member key go, scrapes everything.
    tx_a.send_replace(view("a", false, &both));
    tx_b.send_replace(view("b", true, &["b".to_string()].into()));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while a.targets().iter().any(|t| t.scraped_here) || !b.targets().iter().all(|t| t.scraped_here) {
        assert!(std::time::Instant::now() < deadline, "the work moved");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(b.targets().iter().all(|t| t.owner.as_deref() == Some("b")));
    assert!(a.targets().iter().all(|t| t.health.health == "unknown"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !latest(&ha, "up").iter().all(|(_, v)| is_stale(*v)) {
        assert!(std::time::Instant::now() < deadline, "a's series marked stale when it stopped");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
