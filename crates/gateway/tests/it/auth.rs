//! Edge authentication (API keys, JWT) and rate limits.

use crate::*;
use http::Method;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use signalbox_gateway::auth::hash_key;
use signalbox_gateway::config::{ApiKeyConfig, AuthConfig, JwtConfig, RateLimitConfig};
use signalbox_testkit::client::Http;
use signalbox_testkit::fixture;
use signalbox_testkit::upstream::{echo, serve};

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

const SECRET: &str = "a-shared-secret-of-32-bytes-long";

fn token(alg: Algorithm, key: &EncodingKey, claims: serde_json::Value, kid: Option<&str>) -> String {
    let mut h = Header::new(alg);
    h.kid = kid.map(str::to_owned);
    encode(&h, &claims, key).unwrap()
}

async fn gw_with_auth(auth: AuthConfig) -> (Gw, signalbox_testkit::upstream::Upstream) {
    let up = serve(echo("u")).await;
    let mut r = route("/", "s");
    r.auth = Some(auth);
    (start(config(vec![service("s", &[up.url()])], vec![r])).await, up)
}

#[tokio::test]
async fn api_keys_accept_reject_and_strip() {
    let auth = AuthConfig {
        api_keys: vec![ApiKeyConfig { id: "ci".into(), sha256: hash_key("s3cret-key") }],
        ..AuthConfig::default()
    };
    let (gw, up) = gw_with_auth(auth).await;
    let http = Http::new();
    let none = http.get(&gw.url("/")).await;
    assert_eq!(none.status, 401);
    assert_eq!(none.json()["code"], "unauthorized");
    assert!(none.json()["trace_id"].as_str().unwrap().len() == 32);
    let wrong = http.send(Method::GET, &gw.url("/"), &[("x-api-key", "guess")], "").await;
    assert_eq!(wrong.status, 401);
    assert_eq!(up.hits(), 0);
    let ok = http
        .send(Method::GET, &gw.url("/"), &[("x-api-key", "s3cret-key"), ("x-signalbox-client", "spoofed")], "")
        .await;
    assert_eq!(ok.status, 200);
    let seen = ok.json();
    assert_eq!(seen["headers"]["x-signalbox-client"], "ci", "identity passed on, spoofed value replaced");
    assert!(seen["headers"].get("x-api-key").is_none(), "credential stripped");
}

#[tokio::test]
async fn jwt_hs256_checks_signature_time_audience_issuer_and_claims() {
    let mut required = std::collections::BTreeMap::new();
    required.insert("scope".to_string(), "orders:read".to_string());
    let auth = AuthConfig {
        jwt: Some(JwtConfig {
            algorithms: vec!["HS256".into()],
            secret: Some(SECRET.into()),
            issuer: Some("https://issuer.test".into()),
            audiences: vec!["shop".into()],
            leeway: secs(0),
            required_claims: required,
            ..JwtConfig::default()
        }),
        ..AuthConfig::default()
    };
    let (gw, up) = gw_with_auth(auth).await;
    let http = Http::new();
    let key = EncodingKey::from_secret(SECRET.as_bytes());
    let good = serde_json::json!({"sub": "alice", "iss": "https://issuer.test", "aud": "shop", "exp": now() + 60, "scope": "orders:read orders:write"});
    let call = |t: String| {
        let http = http.clone();
        let url = gw.url("/");
        async move { http.send(Method::GET, &url, &[("authorization", &format!("Bearer {t}"))], "").await }
    };
    let ok = call(token(Algorithm::HS256, &key, good.clone(), None)).await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(ok.json()["headers"]["x-signalbox-client"], "alice");
    assert!(ok.json()["headers"].get("authorization").is_none());

    let cases = [
        (
            serde_json::json!({"sub": "a", "iss": "https://issuer.test", "aud": "shop", "exp": now() - 10, "scope": "orders:read"}),
            401,
            "token expired",
        ),
        (
            serde_json::json!({"sub": "a", "iss": "https://issuer.test", "aud": "shop", "exp": now() + 60, "nbf": now() + 3600, "scope": "orders:read"}),
            401,
            "token not yet valid",
        ),
        (
            serde_json::json!({"sub": "a", "iss": "https://issuer.test", "aud": "other", "exp": now() + 60, "scope": "orders:read"}),
            401,
            "token audience not accepted",
        ),
        (
            serde_json::json!({"sub": "a", "iss": "https://evil.test", "aud": "shop", "exp": now() + 60, "scope": "orders:read"}),
            401,
            "token issuer not accepted",
        ),
        (
            serde_json::json!({"sub": "a", "iss": "https://issuer.test", "aud": "shop", "exp": now() + 60, "scope": "orders:write"}),
            403,
            "token claim `scope` does not grant `orders:read`",
        ),
    ];
    for (claims, code, message) in cases {
        let r = call(token(Algorithm::HS256, &key, claims, None)).await;
        assert_eq!(r.status, code, "{}", r.text());
        assert_eq!(r.json()["error"], message);
    }
    let forged =
        token(Algorithm::HS256, &EncodingKey::from_secret(b"another-secret-of-enough-length!"), good.clone(), None);
    assert_eq!(call(forged).await.json()["error"], "token signature invalid");
    assert_eq!(call("not.a.jwt".into()).await.status, 401);
    let r = http.get(&gw.url("/")).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    assert_eq!(up.hits(), 1);
}

#[tokio::test]
async fn jwt_rs256_and_es256_from_pem_files_and_jwks() {
    let rsa = EncodingKey::from_rsa_pem(&std::fs::read(fixture("rsa-private.pem")).unwrap()).unwrap();
    let ec = EncodingKey::from_ec_pem(&std::fs::read(fixture("ec-private.pem")).unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&rsa, Algorithm::RS256).unwrap();
    jwk.common.key_id = Some("k1".into());
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, serde_json::to_vec(&jsonwebtoken::jwk::JwkSet { keys: vec![jwk] }).unwrap()).unwrap();

    let auth = AuthConfig {
        jwt: Some(JwtConfig {
            algorithms: vec!["RS256".into(), "ES256".into()],
            public_key_files: vec![fixture("ec-public.pem")],
            jwks_file: Some(jwks.display().to_string()),
            ..JwtConfig::default()
        }),
        ..AuthConfig::default()
    };
    let (gw, _up) = gw_with_auth(auth).await;
    let http = Http::new();
    let claims = serde_json::json!({"sub": "svc", "exp": now() + 60});
    for t in
        [token(Algorithm::RS256, &rsa, claims.clone(), Some("k1")), token(Algorithm::ES256, &ec, claims.clone(), None)]
    {
        let r = http.send(Method::GET, &gw.url("/"), &[("authorization", &format!("Bearer {t}"))], "").await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let hs = token(Algorithm::HS256, &EncodingKey::from_secret(SECRET.as_bytes()), claims, None);
    let r = http.send(Method::GET, &gw.url("/"), &[("authorization", &format!("Bearer {hs}"))], "").await;
    assert_eq!(r.status, 401, "an algorithm not configured is refused");
    assert_eq!(r.json()["error"], "token algorithm not accepted");
}

#[tokio::test]
async fn rate_limit_per_client_ip_answers_429_with_headers() {
    let up = serve(echo("u")).await;
    let mut r = route("/", "s");
    r.rate_limits = vec![RateLimitConfig { requests_per_second: 1.0, burst: 3, per: "client_ip".into() }];
    let gw = start(config(vec![service("s", &[up.url()])], vec![r])).await;
    let http = Http::new();
    for remaining in [2, 1, 0] {
        let ok = http.get(&gw.url("/")).await;
        assert_eq!(ok.status, 200);
        assert_eq!(ok.header("ratelimit-remaining"), Some(remaining.to_string().as_str()));
        assert_eq!(ok.header("ratelimit-limit"), Some("3"));
    }
    let limited = http.get(&gw.url("/")).await;
    assert_eq!(limited.status, 429);
    assert_eq!(limited.json()["code"], "rate_limited");
    assert_eq!(limited.header("retry-after"), Some("1"));
    assert_eq!(limited.header("ratelimit-remaining"), Some("0"));
    assert_eq!(limited.header("ratelimit-policy"), Some("3;w=3"));
    assert_eq!(up.hits(), 3);
}

#[tokio::test]
async fn rate_limits_per_header_and_per_route() {
    let up = serve(echo("u")).await;
    let mut r = route("/", "s");
    r.rate_limits = vec![
        RateLimitConfig { requests_per_second: 0.5, burst: 2, per: "header:x-tenant".into() },
        RateLimitConfig { requests_per_second: 0.5, burst: 5, per: "route".into() },
    ];
    let gw = start(config(vec![service("s", &[up.url()])], vec![r])).await;
    let http = Http::new();
    let get = |t: &'static str| {
        let (http, url) = (http.clone(), gw.url("/"));
        async move { http.send(Method::GET, &url, &[("x-tenant", t)], "").await.status }
    };
    assert_eq!(get("a").await, 200);
    assert_eq!(get("a").await, 200);
    assert_eq!(get("a").await, 429, "tenant a used its burst");
    assert_eq!(get("b").await, 200, "tenant b has its own bucket");
    assert_eq!(get("b").await, 200);
    assert_eq!(get("c").await, 200, "fifth request of the route");
    assert_eq!(get("d").await, 429, "the route-wide limit applies across tenants");
}

#[tokio::test]
async fn rate_limit_per_api_key() {
    let up = serve(echo("u")).await;
    let mut r = route("/", "s");
    r.auth = Some(AuthConfig {
        api_keys: vec![
            ApiKeyConfig { id: "one".into(), sha256: hash_key("k1") },
            ApiKeyConfig { id: "two".into(), sha256: hash_key("k2") },
        ],
        ..AuthConfig::default()
    });
    r.rate_limits = vec![RateLimitConfig { requests_per_second: 0.1, burst: 1, per: "api_key".into() }];
    let gw = start(config(vec![service("s", &[up.url()])], vec![r])).await;
    let http = Http::new();
    let call = |k: &'static str| {
        let (http, url) = (http.clone(), gw.url("/"));
        async move { http.send(Method::GET, &url, &[("x-api-key", k)], "").await.status }
    };
    assert_eq!(call("k1").await, 200);
    assert_eq!(call("k1").await, 429);
    assert_eq!(call("k2").await, 200);
}
