//! Spring Cloud Config Server's endpoints under `/config`: the `Environment` JSON, the file
//! forms (`/{app}-{profile}.yml|.properties|.json`, with or without a label before them) and
//! plain-text files, read over HTTP and with the PyPI `config-client` package.

use crate::*;
use http::Method;
use serde_json::{Value, json};

async fn put(n: &Node, path: &str, value: &str) {
    let r = n.call(Method::PUT, &format!("/api/config/{path}"), None, Some(json!({ "value": value }))).await;
    assert_eq!(r.status, 200, "{path}: {}", r.text());
}

/// Orders' configuration: a prod override, shared YAML with a prod-only document and a
/// placeholder.
async fn seeded() -> Node {
    let n = Node::start().await;
    put(&n, "orders/prod/db.url", "jdbc:postgresql://${db.host}:${db.port:5432}/orders").await;
    put(&n, "orders/default/db.url", "jdbc:h2:mem").await;
    put(&n, "orders/prod/db.host", "prod-db").await;
    put(&n, "orders/default/app.properties", "server.port=8081\nfeature.x: on\n").await;
    put(
        &n,
        "application/default/application.yml",
        "timeouts:\n  read: 5s\n  retries: 3\nhosts: [a, b]\n---\nspring:\n  config:\n    activate:\n      on-profile: prod\ntimeouts:\n  retries: 1\n",
    )
    .await;
    n
}

/// Plain-text files: `nginx.conf` for orders in prod (a key without a document extension,
/// so a property too) and a template under a path (a file only).
async fn with_files(n: &Node) {
    put(n, "orders/prod/nginx.conf", "upstream db { server ${db.host}:5432; }\n").await;
    put(n, "application/default/templates%2Fmail.txt", "Hello from ${spring.application.name:orders}\n").await;
}

const ORDERS_PROD_YML: &str = "\
db:
  host: prod-db
  url: \"jdbc:postgresql://prod-db:5432/orders\"
feature:
  x: \"on\"
hosts:
  - a
  - b
server:
  port: \"8081\"
timeouts:
  read: 5s
  retries: 1
";

#[tokio::test]
async fn file_forms_render_the_merged_properties() {
    let n = seeded().await;
    let yml = n.get("/config/orders-prod.yml").await;
    assert_eq!(yml.status, 200, "{}", yml.text());
    assert!(yml.header("content-type").unwrap().starts_with("text/plain"));
    assert_eq!(yml.text(), ORDERS_PROD_YML);
    assert_eq!(n.get("/config/orders-prod.yaml").await.text(), ORDERS_PROD_YML);
    // With a label in front: still the file, never an application `main` with a profile
    // `orders-prod.yml`.
    let labelled = n.get("/config/main/orders-prod.yml").await;
    assert_eq!(labelled.status, 200);
    assert_eq!(labelled.text(), ORDERS_PROD_YML);

    let props = n.get("/config/orders-prod.properties").await.text();
    assert_eq!(
        props,
        "db.host: prod-db\ndb.url: jdbc:postgresql://prod-db:5432/orders\nfeature.x: on\nhosts[0]: a\nhosts[1]: b\n\
         server.port: 8081\ntimeouts.read: 5s\ntimeouts.retries: 1\n"
    );
    let j = n.get("/config/main/orders-prod.json").await;
    assert!(j.header("content-type").unwrap().starts_with("application/json"));
    assert_eq!(
        j.json(),
        json!({"db": {"host": "prod-db", "url": "jdbc:postgresql://prod-db:5432/orders"}, "feature": {"x": "on"},
               "hosts": ["a", "b"], "server": {"port": "8081"}, "timeouts": {"read": "5s", "retries": 1}})
    );
    // Another profile: the prod document and overrides are left out.
    let dev = n.get("/config/orders-dev.json").await.json();
    assert_eq!(dev["db"]["url"], "jdbc:h2:mem");
    assert_eq!(dev["timeouts"]["retries"], 3);

    // Names that mean a file but name no profile are not read as anything else.
    for path in ["/config/orders.yml", "/config/main/orders.yml", "/config/main/orders-.json"] {
        let r = n.get(path).await;
        assert_eq!(r.status, 404, "{path}: {}", r.text());
        assert_eq!(r.json()["code"], "not_found", "{path}");
        assert!(r.json()["error"].as_str().unwrap().contains("{application}-{profile}"), "{path}: {}", r.text());
    }
    let bad = n.get("/config/orders-bad%20profile.yml").await;
    assert_eq!(bad.status, 400, "{}", bad.text());
    assert_eq!(bad.json()["field"], "profile");
}

#[tokio::test]
async fn the_environment_and_plain_text_files() {
    let n = seeded().await;
    with_files(&n).await;
    let env = n.get("/config/orders/prod").await.json();
    let sources = env["propertySources"].as_array().unwrap();
    assert_eq!(sources.len(), 3, "{env}");
    assert_eq!(sources[0]["source"]["nginx.conf"], "upstream db { server ${db.host}:5432; }\n");
    assert!(sources[2]["source"].get("templates/mail.txt").is_none(), "a path is a file only: {env}");
    for s in sources {
        let keys: Vec<&String> = s["source"].as_object().unwrap().keys().collect();
        assert!(keys.iter().all(|k| !k.starts_with("spring.config.activate") && *k != "spring.profiles"), "{keys:?}");
    }
    assert_eq!(sources[2]["source"]["timeouts.retries"], 1);

    let f = n.get("/config/orders/prod/main/nginx.conf").await;
    assert_eq!(f.status, 200, "{}", f.text());
    assert!(f.header("content-type").unwrap().starts_with("text/plain"));
    assert_eq!(f.text(), "upstream db { server prod-db:5432; }\n", "placeholders resolved");
    // A file stored for `application` and the default profile serves every application.
    assert_eq!(n.get("/config/orders/prod/main/templates/mail.txt").await.text(), "Hello from orders\n");
    let missing = n.get("/config/orders/dev/main/nginx.conf").await;
    assert_eq!(missing.status, 404, "only prod has it");
    assert_eq!(missing.json()["code"], "not_found");
    let odd = n.get("/config/orders/prod/main/a%20b").await;
    assert_eq!(odd.status, 404, "{}", odd.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_config_client_package_reads_config_and_files() {
    let n = seeded().await;
    with_files(&n).await;
    let script = format!("{}/tests/python/config_client.py", env!("CARGO_MANIFEST_DIR"));
    let address = n.url("/config");
    let out = signalbox_testkit::python::run("config-client", &script, &[&address], Duration::from_secs(60)).await;
    let v: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(v["db_url"], "jdbc:postgresql://${db.host}:${db.port:5432}/orders", "the environment is raw: {v}");
    assert_eq!(v["retries"], 1, "{v}");
    assert_eq!(v["config"]["server"]["port"], "8081", "{v}");
    assert_eq!(v["config"]["db"]["host"], "prod-db", "{v}");
    assert!(v["config"].get("spring").is_none(), "no activation keys leak: {v}");
    assert_eq!(v["nginx"], "upstream db { server prod-db:5432; }\n", "{v}");
    assert_eq!(v["template"], "Hello from orders\n", "{v}");
}
