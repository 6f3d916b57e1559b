use super::map::{PairSample, crossings, edges, inbound};
use super::red::Red;
use super::service::transitions;
use super::*;
use signalbox_core::ids::{SpanId, TraceId};
use signalbox_core::span::{KeyValue, Resource, Scope, Span, SpanFlags, SpanKind, StatusCode};
use signalbox_events::spans::deps::Edge as DepEdge;

fn span(service: &str, id: SpanId, parent: Option<SpanId>, kind: SpanKind, ms: u64, attrs: Vec<KeyValue>) -> Span {
    Span {
        trace_id: TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").unwrap(),
        span_id: id,
        parent_span_id: parent,
        trace_state: String::new(),
        service: service.into(),
        name: "op".into(),
        kind,
        start_unix_nanos: 1_000_000_000,
        end_unix_nanos: 1_000_000_000 + ms * 1_000_000,
        status: StatusCode::Unset,
        status_message: String::new(),
        attributes: attrs,
        events: Vec::new(),
        links: Vec::new(),
        resource: Resource::none(),
        scope: Scope::none(),
        flags: SpanFlags::default(),
    }
}

#[test]
fn the_gateway_hop_is_seen_through() {
    // web (client) -> gateway server -> gateway client -> orders server -> payments (direct)
    let (web, gs, gc, ord, pay) =
        (SpanId::random(), SpanId::random(), SpanId::random(), SpanId::random(), SpanId::random());
    let mut failing = span("orders", ord, Some(gc), SpanKind::Server, 40, vec![]);
    failing.status = StatusCode::Error;
    let spans = vec![
        span("web", web, None, SpanKind::Client, 60, vec![]),
        span("gw", gs, Some(web), SpanKind::Server, 50, vec![KeyValue::str("signalbox.upstream.service", "orders")]),
        span("gw", gc, Some(gs), SpanKind::Client, 45, vec![KeyValue::str("peer.service", "orders")]),
        failing,
        span("payments", pay, Some(ord), SpanKind::Server, 10, vec![]),
    ];
    let mut c = crossings(&spans, Some("gw"));
    c.sort_by(|a, b| a.caller.cmp(&b.caller));
    assert_eq!(c.len(), 2, "{c:?}");
    assert_eq!((c[0].caller.as_str(), c[0].callee.as_str(), c[0].via_gateway), ("orders", "payments", false));
    assert_eq!((c[1].caller.as_str(), c[1].callee.as_str(), c[1].via_gateway), ("web", "orders", true));
    assert_eq!(c[1].duration_nanos, 50_000_000);
    // Without knowing the gateway, its spans are a service like any other.
    let plain = crossings(&spans, None);
    assert!(plain.iter().any(|c| c.caller == "web" && c.callee == "gw"), "{plain:?}");
    assert!(plain.iter().any(|c| c.caller == "gw" && c.callee == "orders"), "{plain:?}");
}

#[test]
fn a_gateway_span_whose_caller_has_not_arrived_is_no_call_from_outside() {
    // The caller's SDK exports its spans seconds after the gateway's: until then the gateway
    // span's parent is missing, and the call must not be drawn from the gateway node.
    let (gs, gc, ord) = (SpanId::random(), SpanId::random(), SpanId::random());
    let spans = vec![
        span(
            "gw",
            gs,
            Some(SpanId::random()),
            SpanKind::Server,
            50,
            vec![KeyValue::str("signalbox.upstream.service", "orders")],
        ),
        span("gw", gc, Some(gs), SpanKind::Client, 45, vec![KeyValue::str("peer.service", "orders")]),
        span("orders", ord, Some(gc), SpanKind::Server, 40, vec![]),
    ];
    let c = crossings(&spans, Some("gw"));
    assert!(c.iter().all(|c| !(c.caller == "gw" && c.callee == "orders")), "{c:?}");
    assert!(c.iter().all(|c| c.callee != "orders"), "no caller is known yet: {c:?}");
}

#[test]
fn a_call_from_outside_is_an_edge_from_the_gateway() {
    let gs = SpanId::random();
    let spans =
        vec![span("gw", gs, None, SpanKind::Server, 5, vec![KeyValue::str("signalbox.upstream.service", "web")])];
    let c = crossings(&spans, Some("gw"));
    assert_eq!((c[0].caller.as_str(), c[0].callee.as_str()), ("gw", "web"));
}

fn dep(caller: &str, callee: &str, calls: u64, errors: u64) -> DepEdge {
    DepEdge { caller: caller.into(), callee: callee.into(), calls, errors, p50_ms: 5.0, p99_ms: 20.0 }
}

#[test]
fn gateway_traffic_is_shared_among_the_sampled_callers() {
    let deps = vec![
        dep("web", "gw", 90, 0),
        dep("gw", "orders", 120, 6),
        dep("gw", "web", 30, 0),
        dep("orders", "db", 120, 0),
    ];
    let mut sample = BTreeMap::new();
    sample.insert(
        ("web".to_string(), "orders".to_string()),
        PairSample { calls: 3, errors: 1, durations_ms: vec![10.0, 20.0, 30.0] },
    );
    sample
        .insert(("gw".to_string(), "orders".to_string()), PairSample { calls: 1, errors: 0, durations_ms: vec![5.0] });
    sample.insert(
        ("gw".to_string(), "web".to_string()),
        PairSample { calls: 2, errors: 0, durations_ms: vec![7.0, 9.0] },
    );
    let mut reds = BTreeMap::new();
    reds.insert("orders".to_string(), Red { rate: 2.0, errors: 0.1, p99_ms: Some(80.0) });
    let e = edges(&deps, Some("gw"), &sample, Some(&reds), 60.0);
    let find =
        |a: &str, b: &str| e.iter().find(|x| x.from == a && x.to == b).unwrap_or_else(|| panic!("no {a}>{b} in {e:?}"));
    // 2 rps into orders by the gateway's metrics, 3 of 4 sampled calls from web.
    let w = find("web", "orders");
    assert!((w.rate - 1.5).abs() < 1e-9, "{w:?}");
    assert!(w.via_gateway);
    assert!((w.error_ratio.unwrap() - 1.0 / 3.0).abs() < 1e-9);
    assert_eq!(w.p99_ms, Some(30.0));
    assert!((find("gw", "orders").rate - 0.5).abs() < 1e-9);
    // No metrics for web: the graph's count is shared.
    assert!((find("gw", "web").rate - 0.5).abs() < 1e-9);
    assert_eq!(find("orders", "db").calls, 120.0);
    // The web -> gateway hop is replaced by what it leads to.
    assert!(!e.iter().any(|x| x.to == "gw"), "{e:?}");
    // A service behind no gateway route: its traffic from the edges into it.
    let db = inbound(&e, "db").unwrap();
    assert!((db.rate - 2.0).abs() < 1e-9 && db.errors == 0.0 && db.p99_ms == Some(20.0), "{db:?}");
    assert!(inbound(&e, "nobody").is_none());
}

#[test]
fn a_service_behind_no_gateway_route_takes_its_traffic_from_traces() {
    let deps = vec![dep("web", "cart", 30, 3), dep("orders", "cart", 30, 0), dep("gw", "cart", 600, 600)];
    let r = super::overview::traced_inbound(&deps, "cart", Some("gw"), 60.0).unwrap();
    assert!((r.rate - 1.0).abs() < 1e-9 && (r.error_ratio().unwrap() - 0.05).abs() < 1e-9, "{r:?}");
    assert_eq!(r.p99_ms, Some(20.0));
    assert!(super::overview::traced_inbound(&deps, "web", Some("gw"), 60.0).is_none());
}

#[test]
fn without_traces_the_gateway_metrics_still_draw_edges() {
    let mut reds = BTreeMap::new();
    reds.insert("orders".to_string(), Red { rate: 4.0, errors: 0.4, p99_ms: Some(900.0) });
    let e = edges(&[], Some("gw"), &BTreeMap::new(), Some(&reds), 60.0);
    assert_eq!(e.len(), 1);
    assert_eq!((e[0].from.as_str(), e[0].to.as_str(), e[0].source), ("gw", "orders", "gateway"));
    assert_eq!(traffic_health(Some(e[0].rate), e[0].error_ratio, e[0].p99_ms), "fail");
}

#[test]
fn health_thresholds() {
    assert_eq!(traffic_health(None, None, None), "idle");
    assert_eq!(traffic_health(Some(1.0), Some(0.0), Some(10.0)), "ok");
    assert_eq!(traffic_health(Some(1.0), Some(0.02), Some(10.0)), "warn");
    assert_eq!(traffic_health(Some(1.0), Some(0.0), Some(600.0)), "warn");
    assert_eq!(traffic_health(Some(1.0), Some(0.2), Some(10.0)), "fail");
}

#[test]
fn circuit_changes_are_read_from_gauge_samples() {
    let samples = [(1000, 0.0), (2000, 0.0), (3000, 1.0), (4000, 1.0), (5000, 2.0), (6000, 0.0)];
    let t = transitions(&samples, "circuit", "service", "", |v| match v as i64 {
        0 => "closed",
        1 => "open",
        _ => "half_open",
    });
    let got: Vec<(i64, &str, &str)> = t.iter().map(|t| (t.t_ms, t.from, t.to)).collect();
    assert_eq!(got, vec![(3000, "closed", "open"), (5000, "open", "half_open"), (6000, "half_open", "closed")]);
}

#[test]
fn windows_and_parameters() {
    let q =
        |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<HashMap<_, _>>();
    let now = 1_700_000_000_000;
    assert_eq!(window(&q(&[]), now).unwrap(), Window { start_ms: now - 900_000, end_ms: now });
    assert_eq!(window(&q(&[("since", "1h")]), now).unwrap().start_ms, now - 3_600_000);
    let w = window(&q(&[("start", "1699999000000"), ("end", "1700000000000")]), now).unwrap();
    assert_eq!((w.start_ms, w.end_ms), (1_699_999_000_000, 1_700_000_000_000));
    assert_eq!(w.json()["start_unix_nanos"], "1699999000000000000");
    let e = window(&q(&[("since", "soon")]), now).unwrap_err();
    assert_eq!(e.field.as_deref(), Some("since"));
    assert!(window(&q(&[("since", "1s")]), now).is_err());
    assert!(window(&q(&[("since", "1h"), ("start", "1")]), now).is_err());
    let e = params(q(&[("sinse", "1h")]), &["since"]).unwrap_err();
    assert_eq!(e.field.as_deref(), Some("sinse"));
    assert_eq!(promql_string("a\"b\\c"), "\"a\\\"b\\\\c\"");
}

fn instance(id: &str, address: &str, meta: &[(&str, &str)]) -> signalbox_control::registry::InstanceView {
    signalbox_control::registry::InstanceView {
        id: id.into(),
        service: "shop".into(),
        address: address.into(),
        port: 80,
        tags: vec![],
        meta: meta.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        weight: 1,
        status: signalbox_control::registry::model::Status::Passing,
        maintenance: None,
        checks: vec![],
        create_index: 1,
        modify_index: 1,
        registered_unix_ms: 0,
    }
}

#[test]
fn an_instance_finds_its_machine_by_meta_then_address_and_a_port_suffix() {
    use super::hosts::{host_of, names_host};
    assert_eq!(host_of(&instance("a", "10.0.0.1", &[("host", "web-1"), ("node", "n")])), ("web-1".into(), "meta.host"));
    assert_eq!(host_of(&instance("a", "10.0.0.1", &[("node", "n1")])), ("n1".into(), "meta.node"));
    assert_eq!(host_of(&instance("a", "10.0.0.1", &[("host", " ")])), ("10.0.0.1".into(), "address"));
    assert!(names_host("web-1", "web-1"));
    assert!(names_host("web-1:9100", "web-1"));
    assert!(!names_host("web-10", "web-1"));
    assert!(!names_host("web-1:x", "web-1"));
    assert!(!names_host("", ""));
}

#[test]
fn a_machine_is_in_trouble_past_a_threshold_or_with_a_firing_host_alert_of_its_own() {
    use super::hosts::{Container, HostAlert, HostData, Machine, machine_trouble, placements};
    let mut data = HostData::default();
    let calm = Machine {
        cpu_cores: Some(4.0),
        cpu_ratio: Some(0.2),
        memory_total: Some(100.0),
        memory_available: Some(50.0),
        disk_size: Some(100.0),
        disk_avail: Some(50.0),
        ..Machine::default()
    };
    data.machines.insert("web-1".into(), Machine { cpu_ratio: Some(0.95), disk_avail: Some(5.0), ..calm.clone() });
    data.machines.insert("web-2:9100".into(), calm.clone());
    data.machines.insert("web-3".into(), calm);
    data.containers.push(Container {
        service: "shop".into(),
        instance: "web-2".into(),
        name: "shop.service".into(),
        working_set: Some(95.0),
        limit: Some(100.0),
        throttled_ratio: Some(0.5),
        oom_kills: Some(2.0),
        ..Container::default()
    });
    // Another service's container on web-3 is not the shop's concern.
    data.containers.push(Container {
        service: "cart".into(),
        instance: "web-3".into(),
        name: "cart".into(),
        oom_kills: Some(1.0),
        ..Container::default()
    });
    data.alerts = vec![
        HostAlert { name: "HostOomKill".into(), instance: "web-3:9100".into(), service: None, summary: "oom".into() },
        HostAlert {
            name: "ContainerCpuThrottled".into(),
            instance: "web-3".into(),
            service: Some("cart".into()),
            summary: String::new(),
        },
    ];
    let instances = [
        instance("i1", "10.0.0.1", &[("host", "web-1")]),
        instance("i2", "web-2", &[]),
        instance("i3", "10.0.0.3", &[("node", "web-3")]),
        instance("i4", "10.0.0.4", &[]),
    ];
    let p = placements("shop", &instances, &data);
    assert_eq!(p.len(), 4);
    let reasons = |i: usize| p[i].trouble.iter().map(|t| t.reason.as_str()).collect::<Vec<_>>();
    assert_eq!(reasons(0), vec!["CPU 95% busy", "root filesystem 95% full"]);
    assert_eq!(
        reasons(1),
        vec![
            "container shop.service: memory 95% of its limit",
            "container shop.service: CPU throttled 50% of periods",
            "container shop.service: 2 OOM kills",
        ]
    );
    assert_eq!(p[1].machine.as_ref().map(|(l, _)| l.as_str()), Some("web-2:9100"));
    // The host-wide alert counts, the cart's container alert does not.
    assert_eq!(reasons(2), vec!["oom"]);
    assert_eq!(p[2].trouble[0].kind, "alert");
    // No series for the fourth: no machine, no trouble.
    assert!(p[3].machine.is_none() && p[3].trouble.is_empty());
    let marks = machine_trouble(&p);
    assert_eq!(marks.iter().map(|m| m.host.as_str()).collect::<Vec<_>>(), vec!["web-1", "web-2", "web-3"]);

    // The cart, with no registered instance, is seen on web-3 through its container.
    let cart = placements("cart", &[], &data);
    assert_eq!(cart.len(), 1);
    assert_eq!((cart[0].host.as_str(), cart[0].instance_id.as_deref()), ("web-3", None));
    assert_eq!(
        cart[0].trouble.iter().map(|t| t.reason.as_str()).collect::<Vec<_>>(),
        vec!["oom", "ContainerCpuThrottled firing", "container cart: 1 OOM kill"]
    );
}

#[test]
fn a_machine_in_trouble_makes_its_service_warn_and_names_the_reason() {
    use super::hosts::MachineTrouble;
    use super::overview::Row;
    let mut row = Row { name: "shop".into(), instances: 1, passing: 1, ..Row::default() };
    assert_eq!(row.status(), "ok");
    row.machine_trouble = vec![MachineTrouble {
        instance: Some("i1".into()),
        host: "web-1".into(),
        reasons: vec!["memory 95% used".into()],
    }];
    assert_eq!(row.status(), "warn");
    let (score, why) = row.attention();
    assert!(score > 0);
    assert_eq!(why, vec!["machine web-1: memory 95% used"]);
    assert_eq!(row.json()["machine_trouble"][0]["host"], "web-1");
}
