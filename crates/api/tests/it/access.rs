//! Access control: every endpoint × every role × no, wrong and expired tokens; console
//! sessions.

use crate::*;
use http::Method;
use serde_json::json;
use signalbox_control::access::Role;

/// (method, path, body, the role it needs; None = open).
fn endpoints() -> Vec<(Method, &'static str, Option<serde_json::Value>, Option<Role>)> {
    let reg = json!({"service": "s", "address": "127.0.0.1", "port": 1});
    vec![
        (Method::GET, "/healthz", None, None),
        (Method::GET, "/readyz", None, None),
        (Method::GET, "/metrics", None, Some(Role::Read)),
        (Method::GET, "/api/gateway/routes", None, Some(Role::Read)),
        (Method::GET, "/api/gateway/services", None, Some(Role::Read)),
        (Method::GET, "/api/registry/services", None, Some(Role::Read)),
        (Method::GET, "/api/registry/services/s", None, Some(Role::Read)),
        (Method::GET, "/api/registry/services/s/endpoints", None, Some(Role::Read)),
        (Method::GET, "/api/registry/instances/x", None, Some(Role::Read)),
        (Method::POST, "/api/registry/instances", Some(reg), Some(Role::Edit)),
        (Method::PUT, "/api/registry/instances/x/ttl", Some(json!({})), Some(Role::Edit)),
        (Method::DELETE, "/api/registry/instances/x", None, Some(Role::Edit)),
        (Method::GET, "/api/config", None, Some(Role::Read)),
        (Method::GET, "/api/config/watch?wait=1ms", None, Some(Role::Read)),
        (Method::GET, "/api/config/a/p/k", None, Some(Role::Read)),
        (Method::GET, "/api/config/a/p/k/history", None, Some(Role::Read)),
        (Method::GET, "/api/config/a/p/k/diff?from=1&to=2", None, Some(Role::Read)),
        (Method::PUT, "/api/config/a/p/k", Some(json!({"value": "v"})), Some(Role::Edit)),
        (Method::POST, "/api/config/a/p/k/rollback", Some(json!({"to_version": 1})), Some(Role::Edit)),
        (Method::DELETE, "/api/config/a/p/k", None, Some(Role::Edit)),
        (Method::GET, "/config/a/default", None, Some(Role::Read)),
        (Method::GET, "/api/tokens", None, Some(Role::Admin)),
        (Method::POST, "/api/tokens", Some(json!({"id": "made-by-test", "role": "read"})), Some(Role::Admin)),
        (Method::DELETE, "/api/tokens/nope", None, Some(Role::Admin)),
        (Method::GET, "/consul/v1/catalog/services", None, Some(Role::Read)),
        (Method::GET, "/consul/v1/kv/x", None, Some(Role::Read)),
        (Method::PUT, "/consul/v1/kv/x", Some(json!("v")), Some(Role::Edit)),
        (Method::PUT, "/consul/v1/agent/service/deregister/x", None, Some(Role::Edit)),
    ]
}

#[tokio::test]
async fn every_endpoint_refuses_what_it_should() {
    let n = Node::with_tokens(vec![
        file_token("r", Role::Read, "read-secret"),
        file_token("i", Role::Ingest, "ingest-secret"),
        file_token("e", Role::Edit, "edit-secret"),
    ])
    .await;
    // An API-made token that expires at once.
    let made = n
        .call(Method::POST, "/api/tokens", Some(ADMIN), Some(json!({"id": "short", "role": "admin", "ttl": "200ms"})))
        .await;
    assert_eq!(made.status, 201, "{}", made.text());
    let expired = made.json()["secret"].as_str().unwrap().to_owned();
    assert!(expired.starts_with("sbx_"));
    tokio::time::sleep(ms(300)).await;

    let callers: Vec<(&str, Option<&str>, Option<Role>)> = vec![
        ("none", None, None),
        ("wrong", Some("not-a-token"), None),
        ("expired", Some(expired.as_str()), None),
        ("read", Some("read-secret"), Some(Role::Read)),
        ("ingest", Some("ingest-secret"), Some(Role::Ingest)),
        ("edit", Some("edit-secret"), Some(Role::Edit)),
        ("admin", Some(ADMIN), Some(Role::Admin)),
    ];
    let mut failures = Vec::new();
    for (method, path, body, need) in endpoints() {
        for (who, token, role) in &callers {
            let r = n.call(method.clone(), path, *token, body.clone()).await;
            let expect_ok = match need {
                None => true,
                Some(need) => role.is_some_and(|r| r.allows(need)),
            };
            let ok = !matches!(r.status, 401 | 403);
            if ok != expect_ok {
                failures.push(format!("{method} {path} as {who}: {} {}", r.status, r.text()));
            }
            if !ok {
                let want = if role.is_none() { 401 } else { 403 };
                if r.status != want {
                    failures.push(format!("{method} {path} as {who}: expected {want}, got {}", r.status));
                }
                assert!(r.json()["error"].is_string(), "JSON error body: {}", r.text());
            }
        }
    }
    assert!(failures.is_empty(), "access matrix violations:\n{}", failures.join("\n"));
    let r = n.call(Method::GET, "/api/registry/services", Some(&expired), None).await;
    assert_eq!(r.json()["error"], "the token has expired");
}

#[tokio::test]
async fn console_sessions_use_an_httponly_cookie() {
    let n = Node::with_tokens(vec![file_token("e", Role::Edit, "edit-secret")]).await;
    assert_eq!(n.get("/api/session").await.status, 401);
    let bad = n.call(Method::POST, "/api/session", None, Some(json!({"token": "nope"}))).await;
    assert_eq!(bad.status, 401);
    let login = n.call(Method::POST, "/api/session", None, Some(json!({"token": "edit-secret"}))).await;
    assert_eq!(login.status, 200);
    assert_eq!(login.json()["role"], "edit");
    let cookie = login.header("set-cookie").unwrap().to_owned();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict") && cookie.contains("Path=/"), "{cookie}");
    let session = cookie.split(';').next().unwrap().to_owned();
    assert!(!session.contains("edit-secret"), "the cookie is a session id, not the token");
    let with = |path: &'static str| {
        let (http, url, c) = (n.http.clone(), n.url(path), session.clone());
        async move { http.send(Method::GET, &url, &[("cookie", &c)], "").await }
    };
    assert_eq!(with("/api/session").await.json()["token_id"], "e");
    assert_eq!(with("/api/registry/services").await.status, 200);
    assert_eq!(with("/api/tokens").await.status, 403, "an edit session is not admin");
    let mut sse = signalbox_testkit::sse::connect(&n.url("/api/registry/events"), &[("cookie", &session)]).await;
    assert_eq!(sse.recv().await.unwrap().0, "snapshot", "the console's event stream works with the cookie");
    let out = n.http.send(Method::DELETE, &n.url("/api/session"), &[("cookie", &session)], "").await;
    assert_eq!(out.status, 204);
    assert_eq!(with("/api/registry/services").await.status, 401, "logged out");
    let forged =
        n.http.send(Method::GET, &n.url("/api/registry/services"), &[("cookie", "sb_session=0123abcd")], "").await;
    assert_eq!(forged.status, 401);
}

#[tokio::test]
async fn tokens_are_stored_hashed_and_can_be_revoked() {
    let n = Node::with_tokens(vec![]).await;
    let made = n
        .call(
            Method::POST,
            "/api/tokens",
            Some(ADMIN),
            Some(json!({"id": "ci", "role": "edit", "description": "pipeline"})),
        )
        .await;
    let secret = made.json()["secret"].as_str().unwrap().to_owned();
    let list = n.call(Method::GET, "/api/tokens", Some(ADMIN), None).await.text();
    assert!(!list.contains(&secret), "secrets are never listed");
    let store = match &n.etcd {
        None => std::fs::read(n.dir.path().join("control/control.redb")).unwrap(),
        // On etcd: every stored record (the node's mirror holds exactly what etcd does).
        Some(_) => signalbox_control::store::TABLES
            .iter()
            .flat_map(|t| n.control.store.backend().scan(*t, "").unwrap())
            .flat_map(|(k, r)| [k.into_bytes(), r.value].concat())
            .collect(),
    };
    assert!(!store.windows(secret.len()).any(|w| w == secret.as_bytes()), "the store holds no secret");
    assert_eq!(n.call(Method::GET, "/api/config", Some(&secret), None).await.status, 200);
    let bad_role = n.call(Method::POST, "/api/tokens", Some(ADMIN), Some(json!({"id": "x", "role": "god"}))).await;
    assert_eq!(bad_role.json()["field"], "role");
    assert_eq!(n.call(Method::DELETE, "/api/tokens/ci", Some(ADMIN), None).await.status, 204);
    assert_eq!(n.call(Method::GET, "/api/config", Some(&secret), None).await.status, 401);
    assert_eq!(
        n.call(Method::DELETE, "/api/tokens/root", Some(ADMIN), None).await.status,
        400,
        "file tokens live in the file"
    );
}
