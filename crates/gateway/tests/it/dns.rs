//! DNS as an endpoint source, against a real DNS server (dnsmasq).

use crate::*;
use signalbox_gateway::config::DnsConfig;
use signalbox_testkit::client::Http;
use signalbox_testkit::upstream::{echo, serve, serve_at};

fn free_udp_tcp_port() -> u16 {
    loop {
        let t = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = t.local_addr().unwrap().port();
        if std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

#[tokio::test]
async fn a_and_srv_records_become_endpoints_and_follow_changes() {
    let a = serve(echo("a")).await;
    let port = free_udp_tcp_port();
    let dns = signalbox_testkit::dnsmasq(
        &[
            "host-record=orders.test,127.0.0.1".to_string(),
            format!("srv-host=_http._tcp.orders.test,orders.test,{},0,10", a.addr.port()),
        ],
        port,
    )
    .await;
    let by_name = ServiceConfig {
        dns: Some(DnsConfig {
            name: Some("orders.test".into()),
            port: Some(a.addr.port()),
            nameserver: Some(dns.addr.to_string()),
            ..Default::default()
        }),
        ..service("by-name", &[])
    };
    let by_srv = ServiceConfig {
        dns: Some(DnsConfig {
            srv: Some("_http._tcp.orders.test".into()),
            nameserver: Some(dns.addr.to_string()),
            ..Default::default()
        }),
        ..service("by-srv", &[])
    };
    let gw = start(config(vec![by_name, by_srv], vec![route("/name", "by-name"), route("/srv", "by-srv")])).await;
    let http = Http::new();
    for path in ["/name", "/srv"] {
        let url = gw.url(path);
        signalbox_testkit::eventually(Duration::from_secs(5), "resolved", || {
            let (http, url) = (http.clone(), url.clone());
            async move { (http.get(&url).await.status == 200).then_some(()) }
        })
        .await;
    }
    let services = gw.gw.services_view();
    let srv = services.as_array().unwrap().iter().find(|s| s["name"] == "by-srv").unwrap();
    assert_eq!(srv["endpoints"][0]["address"], a.addr.to_string());
    assert_eq!(srv["endpoints"][0]["id"], format!("orders.test:{}", a.addr.port()));

    // The record moves to another address: re-resolved after the 1 s TTL.
    let b = serve_at(([127, 0, 0, 2], a.addr.port()).into(), echo("b")).await;
    drop(dns);
    let dns = signalbox_testkit::dnsmasq(&["host-record=orders.test,127.0.0.2".to_string()], port).await;
    signalbox_testkit::eventually(Duration::from_secs(8), "moved to b", || {
        let (http, url) = (http.clone(), gw.url("/name"));
        async move { (http.get(&url).await.json()["server"] == "b").then_some(()) }
    })
    .await;
    assert!(b.hits() > 0);

    // The DNS server goes away: the last known endpoints stay.
    drop(dns);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(http.get(&gw.url("/name")).await.json()["server"], "b");
}

#[tokio::test]
async fn bad_dns_settings_are_reported() {
    let s = ServiceConfig {
        dns: Some(DnsConfig { name: Some("orders.test".into()), ..Default::default() }),
        ..service("x", &[])
    };
    let e = Gateway::new(
        config(vec![s], vec![]),
        Deps {
            registry: Registry::new(),
            spans: Arc::new(signalbox_core::telemetry::DroppingSink),
            discovery: None,
            logs: None,
        },
    )
    .err()
    .unwrap();
    assert_eq!(e.list[0].path, "gateway.services[0].dns.port");
    let s = ServiceConfig {
        dns: Some(DnsConfig {
            srv: Some("_x._tcp.a".into()),
            nameserver: Some("nowhere".into()),
            ..Default::default()
        }),
        ..service("x", &[])
    };
    let e = Gateway::new(
        config(vec![s], vec![]),
        Deps {
            registry: Registry::new(),
            spans: Arc::new(signalbox_core::telemetry::DroppingSink),
            discovery: None,
            logs: None,
        },
    )
    .err()
    .unwrap();
    assert_eq!(e.list[0].path, "gateway.services[0].dns.nameserver");
}
