use super::*;

fn parse(toml_text: &str) -> ExportConfig {
    toml::from_str(toml_text).unwrap()
}

#[test]
fn a_full_config_compiles() {
    let c = parse(
        r#"
        [[remote_write]]
        url = "http://127.0.0.1:9090/api/v1/write"
        basic_auth = { username = "u", password = "p" }
        batch_size = 500
        batch_wait = "200ms"
        [[otlp]]
        endpoint = "http://127.0.0.1:4318/"
        protocol = "http/protobuf"
        signals = ["logs"]
        bearer_token = "t0k"
        [[loki]]
        name = "central-loki"
        url = "https://loki.example:3100/loki/api/v1/push"
        tenant = "team-a"
        headers = { "X-Extra" = "1" }
        "#,
    );
    let mut p = Problems::default();
    let ex = c.compile("export", Path::new("/data"), &mut p);
    assert!(p.is_empty(), "{:?}", p.list);
    assert_eq!(ex.len(), 3);
    assert_eq!(ex[0].name, "remote_write-0");
    assert_eq!(ex[0].queue_dir, Path::new("/data/export/remote_write-0"));
    assert_eq!(ex[0].headers[0].1, "Basic dTpw");
    assert_eq!((ex[0].batch_size, ex[0].batch_wait), (500, Duration::from_millis(200)));
    assert_eq!(
        ex[1].protocol,
        Protocol::OtlpHttp {
            traces: "http://127.0.0.1:4318/v1/traces".parse().unwrap(),
            logs: "http://127.0.0.1:4318/v1/logs".parse().unwrap()
        }
    );
    assert_eq!(ex[1].signals, vec![Signal::Logs]);
    assert_eq!(ex[2].name, "central-loki");
    let names: Vec<&str> = ex[2].headers.iter().map(|(k, _)| k.as_str()).collect();
    assert!(names.contains(&"x-scope-orgid") && names.contains(&"x-extra"), "{names:?}");
}

#[test]
fn problems_name_their_keys() {
    let c = parse(
        r#"
        [[remote_write]]
        url = "ftp://x"
        tenant = "a"
        [[otlp]]
        endpoint = "https://collector:4317"
        signals = ["metrics"]
        [[otlp]]
        endpoint = "http://collector:4318"
        protocol = "thrift"
        name = "remote_write-0"
        [[loki]]
        batch_size = 0
        max_queue_bytes = 10
        bearer_token = "x"
        basic_auth = { username = "" }
        "#,
    );
    let mut p = Problems::default();
    assert!(c.compile("export", Path::new("/d"), &mut p).is_empty());
    let paths: Vec<&str> = p.list.iter().map(|p| p.path.as_str()).collect();
    for want in [
        "export.remote_write[0].url",
        "export.remote_write[0].tenant",
        "export.otlp[0].signals[0]",
        "export.otlp[0].endpoint",
        "export.otlp[1].protocol",
        "export.otlp[1].name",
        "export.loki[0].url",
        "export.loki[0].batch_size",
        "export.loki[0].max_queue_bytes",
        "export.loki[0].bearer_token",
    ] {
        assert!(paths.contains(&want), "{want} missing from {paths:?}");
    }
    assert!(toml::from_str::<ExportConfig>("[[loki]]\nurl = \"http://x\"\nretries = 3").is_err());
}
