use super::*;
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Histogram, Metric, ResourceMetrics, ScopeMetrics, Sum, Summary, SummaryDataPoint,
    summary_data_point::ValueAtQuantile,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(v.into())) }),
        ..Default::default()
    }
}

fn request(metrics: Vec<Metric>) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", "checkout"),
                    kv("service.namespace", "shop"),
                    kv("service.instance.id", "pod-1"),
                    kv("host.name", "node-7"),
                ],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics { metrics, ..Default::default() }],
            ..Default::default()
        }],
    }
}

fn point(t_ms: u64, v: f64, attrs: Vec<KeyValue>) -> NumberDataPoint {
    NumberDataPoint {
        attributes: attrs,
        time_unix_nano: t_ms * 1_000_000,
        value: Some(number_data_point::Value::AsDouble(v)),
        ..Default::default()
    }
}

fn find<'a>(c: &'a Converted, name: &str, extra: &[(&str, &str)]) -> Vec<&'a (Labels, i64, f64)> {
    c.samples
        .iter()
        .filter(|(l, _, _)| {
            l.iter().any(|(k, v)| k == "__name__" && v == name)
                && extra.iter().all(|(ek, ev)| l.iter().any(|(k, v)| k == ek && v == ev))
        })
        .collect()
}

#[test]
fn names_take_unit_and_type_suffixes() {
    assert_eq!(metric_name("http.server.duration", "s", "histogram"), "http_server_duration_seconds");
    assert_eq!(metric_name("http.server.requests", "{requests}", "counter"), "http_server_requests_total");
    assert_eq!(metric_name("requests_total", "1", "counter"), "requests_total");
    assert_eq!(metric_name("system.memory.usage", "By", "gauge"), "system_memory_usage_bytes");
    assert_eq!(metric_name("vehicle.speed", "m/s", "gauge"), "vehicle_speed_meters_per_second");
    assert_eq!(metric_name("cpu.utilization", "1", "gauge"), "cpu_utilization_ratio");
    assert_eq!(metric_name("latency_seconds", "s", "gauge"), "latency_seconds");
    assert_eq!(metric_name("2xx", "", "gauge"), "_2xx");
    assert_eq!(label_name("http.method"), "http_method");
    assert_eq!(label_name("0day"), "key_0day");
    assert_eq!(label_name("_private"), "key_private");
    assert_eq!(label_name("__reserved"), "__reserved");
}

#[test]
fn sums_gauges_resources_and_target_info() {
    let req = request(vec![
        Metric {
            name: "http.server.requests".into(),
            unit: "{request}".into(),
            description: "Requests served.".into(),
            data: Some(metric::Data::Sum(Sum {
                data_points: vec![point(1_000, 5.0, vec![kv("http.method", "GET")])],
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
                is_monotonic: true,
            })),
            ..Default::default()
        },
        Metric {
            name: "queue.depth".into(),
            data: Some(metric::Data::Gauge(Gauge { data_points: vec![point(1_000, 3.0, vec![])] })),
            ..Default::default()
        },
    ]);
    let c = convert(&req, &mut Cumulative::new(100), 10_000);
    assert!(c.rejected.is_empty(), "{:?}", c.rejected);
    let counter = find(&c, "http_server_requests_total", &[("http_method", "GET")]);
    assert_eq!(counter.len(), 1);
    let (labels, t, v) = counter[0];
    assert_eq!((*t, *v), (1_000, 5.0));
    assert!(labels.contains(&("job".into(), "shop/checkout".into())));
    assert!(labels.contains(&("instance".into(), "pod-1".into())));
    assert!(!labels.iter().any(|(k, _)| k == "host_name"), "resource attributes go to target_info only");
    assert_eq!(find(&c, "queue_depth", &[])[0].2, 3.0);
    let info = find(&c, "target_info", &[("host_name", "node-7"), ("job", "shop/checkout")]);
    assert_eq!(info.len(), 1);
    assert!(c.metadata.iter().any(|m| m.0 == "http_server_requests" && m.1 == "counter"));
}

#[test]
fn delta_points_accumulate_into_cumulative_series() {
    let delta = |t, v| {
        request(vec![Metric {
            name: "jobs.done".into(),
            data: Some(metric::Data::Sum(Sum {
                data_points: vec![point(t, v, vec![])],
                aggregation_temporality: AggregationTemporality::Delta as i32,
                is_monotonic: true,
            })),
            ..Default::default()
        }])
    };
    let mut acc = Cumulative::new(100);
    let a = convert(&delta(1_000, 2.0), &mut acc, 10_000);
    let b = convert(&delta(2_000, 3.0), &mut acc, 10_000);
    assert_eq!(find(&a, "jobs_done_total", &[])[0].2, 2.0);
    assert_eq!(find(&b, "jobs_done_total", &[])[0].2, 5.0);
    let mut full = Cumulative::new(0);
    let refused = convert(&delta(3_000, 1.0), &mut full, 10_000);
    assert!(refused.rejected[0].1.contains("too many delta series"));
}

#[test]
fn histograms_and_summaries_become_classic_series() {
    let req = request(vec![
        Metric {
            name: "http.server.duration".into(),
            unit: "s".into(),
            data: Some(metric::Data::Histogram(Histogram {
                data_points: vec![HistogramDataPoint {
                    time_unix_nano: 5_000_000_000,
                    count: 10,
                    sum: Some(2.5),
                    bucket_counts: vec![4, 5, 1],
                    explicit_bounds: vec![0.1, 0.5],
                    ..Default::default()
                }],
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
            })),
            ..Default::default()
        },
        Metric {
            name: "rpc.latency".into(),
            data: Some(metric::Data::Summary(Summary {
                data_points: vec![SummaryDataPoint {
                    time_unix_nano: 5_000_000_000,
                    count: 4,
                    sum: 1.0,
                    quantile_values: vec![ValueAtQuantile { quantile: 0.5, value: 0.2 }],
                    ..Default::default()
                }],
            })),
            ..Default::default()
        },
    ]);
    let c = convert(&req, &mut Cumulative::new(10), 10_000);
    let b = |le| find(&c, "http_server_duration_seconds_bucket", &[("le", le)])[0].2;
    assert_eq!((b("0.1"), b("0.5"), b("+Inf")), (4.0, 9.0, 10.0));
    assert_eq!(find(&c, "http_server_duration_seconds_sum", &[])[0].2, 2.5);
    assert_eq!(find(&c, "http_server_duration_seconds_count", &[])[0].2, 10.0);
    assert_eq!(find(&c, "rpc_latency", &[("quantile", "0.5")])[0].2, 0.2);
    assert_eq!(find(&c, "rpc_latency_count", &[])[0].2, 4.0);
    let bad = request(vec![Metric {
        name: "h".into(),
        data: Some(metric::Data::Histogram(Histogram {
            data_points: vec![HistogramDataPoint {
                bucket_counts: vec![1],
                explicit_bounds: vec![1.0, 2.0],
                ..Default::default()
            }],
            aggregation_temporality: 2,
        })),
        ..Default::default()
    }]);
    assert!(convert(&bad, &mut Cumulative::new(1), 10_000).rejected[0].1.contains("expected one more"));
    let capped = convert(&req, &mut Cumulative::new(10), 3);
    assert_eq!(capped.samples.len(), 3);
    assert!(capped.rejected[0].1.contains("more than 3 samples"), "{:?}", capped.rejected);
}

#[test]
fn no_recorded_value_is_a_staleness_marker() {
    let mut p = point(1_000, 0.0, vec![]);
    p.flags = 1;
    let req = request(vec![Metric {
        name: "g".into(),
        data: Some(metric::Data::Gauge(Gauge { data_points: vec![p] })),
        ..Default::default()
    }]);
    let c = convert(&req, &mut Cumulative::new(1), 10_000);
    assert_eq!(find(&c, "g", &[])[0].2.to_bits(), STALE_NAN);
}
