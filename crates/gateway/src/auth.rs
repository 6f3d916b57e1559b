//! Edge authentication: API keys (compared by SHA-256, never stored in clear) and JWT bearer
//! tokens (HS256, RS256, ES256; keys from config, PEM files or a JWKS file; `exp`, `nbf`,
//! `aud`, `iss` checked).
//!
//! Missing or invalid credentials are 401; a valid credential that lacks a required claim is
//! 403. The identity found (API key id or JWT `sub`) feeds per-key rate limits and is passed
//! on as `x-signalbox-client`.

use crate::config::AuthConfig;
use http::HeaderMap;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, Validation};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};

/// A key that verifies tokens of one algorithm family.
struct VerifyKey {
    kid: Option<String>,
    family: AlgorithmFamily,
    key: DecodingKey,
}

struct Jwt {
    algorithms: Vec<Algorithm>,
    keys: Vec<VerifyKey>,
    issuer: Option<String>,
    audiences: Vec<String>,
    leeway: u64,
    required: BTreeMap<String, String>,
}

/// Compiled authentication of one route.
pub struct Authenticator {
    api_keys: HashMap<[u8; 32], String>,
    api_key_header: http::HeaderName,
    jwt: Option<Jwt>,
    pub strip_credentials: bool,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// 401: no usable credential.
    Unauthenticated(&'static str),
    /// 403: authenticated, but not allowed.
    Forbidden(String),
}

impl Authenticator {
    /// Builds the authenticator; problems are `(field, message)`.
    pub fn from_config(c: &AuthConfig) -> Result<Self, Vec<(String, String)>> {
        let mut p = Vec::new();
        let mut api_keys = HashMap::new();
        for (i, k) in c.api_keys.iter().enumerate() {
            let mut digest = [0u8; 32];
            match hex::decode_to_slice(k.sha256.trim(), &mut digest) {
                Ok(()) => {
                    api_keys.insert(digest, k.id.clone());
                }
                Err(_) => p.push((
                    format!("api_keys[{i}].sha256"),
                    "must be 64 hex digits (the SHA-256 of the key; `signalbox hash-key KEY` prints it)".into(),
                )),
            }
            if k.id.is_empty() {
                p.push((format!("api_keys[{i}].id"), "must not be empty".into()));
            }
        }
        let api_key_header = http::HeaderName::from_bytes(c.api_key_header.as_bytes()).unwrap_or_else(|_| {
            p.push(("api_key_header".into(), format!("`{}` is not a valid header name", c.api_key_header)));
            http::HeaderName::from_static("x-api-key")
        });
        let jwt = match &c.jwt {
            None => None,
            Some(j) => {
                let mut algorithms = Vec::new();
                for a in &j.algorithms {
                    match a.as_str() {
                        "HS256" => algorithms.push(Algorithm::HS256),
                        "RS256" => algorithms.push(Algorithm::RS256),
                        "ES256" => algorithms.push(Algorithm::ES256),
                        other => p.push((
                            "jwt.algorithms".into(),
                            format!("unsupported algorithm `{other}`: use HS256, RS256 or ES256"),
                        )),
                    }
                }
                let mut keys = Vec::new();
                if let Some(secret) = &j.secret {
                    if secret.len() < 16 {
                        p.push(("jwt.secret".into(), "an HS256 secret must be at least 16 bytes".into()));
                    }
                    keys.push(VerifyKey {
                        kid: None,
                        family: AlgorithmFamily::Hmac,
                        key: DecodingKey::from_secret(secret.as_bytes()),
                    });
                }
                for (i, file) in j.public_key_files.iter().enumerate() {
                    match std::fs::read(file) {
                        Err(e) => p.push((format!("jwt.public_key_files[{i}]"), format!("cannot read `{file}`: {e}"))),
                        Ok(pem) => {
                            if let Ok(key) = DecodingKey::from_rsa_pem(&pem) {
                                keys.push(VerifyKey { kid: None, family: AlgorithmFamily::Rsa, key });
                            } else if let Ok(key) = DecodingKey::from_ec_pem(&pem) {
                                keys.push(VerifyKey { kid: None, family: AlgorithmFamily::Ec, key });
                            } else {
                                p.push((
                                    format!("jwt.public_key_files[{i}]"),
                                    format!("`{file}` holds no RSA or EC public key in PEM form"),
                                ));
                            }
                        }
                    }
                }
                if let Some(file) = &j.jwks_file {
                    match std::fs::read(file)
                        .map_err(|e| e.to_string())
                        .and_then(|b| serde_json::from_slice::<JwkSet>(&b).map_err(|e| e.to_string()))
                    {
                        Err(e) => p.push(("jwt.jwks_file".into(), format!("cannot load JWKS `{file}`: {e}"))),
                        Ok(set) => {
                            for jwk in &set.keys {
                                if let Ok(key) = DecodingKey::from_jwk(jwk) {
                                    let family = match &jwk.algorithm {
                                        jsonwebtoken::jwk::AlgorithmParameters::RSA(_) => AlgorithmFamily::Rsa,
                                        jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(_) => AlgorithmFamily::Ec,
                                        jsonwebtoken::jwk::AlgorithmParameters::OctetKey(_) => AlgorithmFamily::Hmac,
                                        _ => AlgorithmFamily::Ed,
                                    };
                                    keys.push(VerifyKey { kid: jwk.common.key_id.clone(), family, key });
                                }
                            }
                        }
                    }
                }
                if keys.is_empty() {
                    p.push(("jwt".into(), "needs a key: set `secret`, `public_key_files` or `jwks_file`".into()));
                }
                Some(Jwt {
                    algorithms,
                    keys,
                    issuer: j.issuer.clone(),
                    audiences: j.audiences.clone(),
                    leeway: j.leeway.0.as_secs(),
                    required: j.required_claims.clone(),
                })
            }
        };
        if api_keys.is_empty() && jwt.is_none() {
            p.push(("".into(), "auth needs `api_keys` or `jwt`".into()));
        }
        if !p.is_empty() {
            return Err(p);
        }
        Ok(Authenticator { api_keys, api_key_header, jwt, strip_credentials: c.strip_credentials })
    }

    /// Checks the request's credentials; returns the caller's identity.
    pub fn check(&self, h: &HeaderMap) -> Result<String, Denied> {
        if !self.api_keys.is_empty()
            && let Some(key) = h.get(&self.api_key_header)
        {
            let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
            return match self.api_keys.get(&digest) {
                Some(id) => Ok(id.clone()),
                None => Err(Denied::Unauthenticated("invalid API key")),
            };
        }
        if let Some(jwt) = &self.jwt
            && let Some(token) = bearer(h)
        {
            return jwt.verify(token);
        }
        Err(Denied::Unauthenticated(match (self.api_keys.is_empty(), self.jwt.is_some()) {
            (false, true) => "an API key or a bearer token is required",
            (false, false) => "an API key is required",
            _ => "a bearer token is required",
        }))
    }

    /// Removes the credential headers (called after a successful check).
    pub fn strip(&self, h: &mut HeaderMap) {
        h.remove(&self.api_key_header);
        if self.jwt.is_some() {
            h.remove(http::header::AUTHORIZATION);
        }
    }
}

fn bearer(h: &HeaderMap) -> Option<&str> {
    let v = h.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

impl Jwt {
    fn verify(&self, token: &str) -> Result<String, Denied> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| Denied::Unauthenticated("malformed bearer token"))?;
        if !self.algorithms.contains(&header.alg) {
            return Err(Denied::Unauthenticated("token algorithm not accepted"));
        }
        let family = header.alg.family();
        let mut validation = Validation::new(header.alg);
        validation.leeway = self.leeway;
        validation.validate_nbf = true;
        validation.validate_aud = !self.audiences.is_empty();
        if !self.audiences.is_empty() {
            validation.set_audience(&self.audiences);
        }
        if let Some(iss) = &self.issuer {
            validation.set_issuer(&[iss]);
        }
        let mut last = Denied::Unauthenticated("no key verifies this token");
        let candidates = self.keys.iter().filter(|k| k.family == family).filter(|k| match (&header.kid, &k.kid) {
            (Some(want), Some(have)) => want == have,
            _ => true,
        });
        for k in candidates {
            match jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(token, &k.key, &validation) {
                Ok(data) => return self.authorize(data.claims),
                Err(e) => {
                    use jsonwebtoken::errors::ErrorKind as K;
                    last = Denied::Unauthenticated(match e.kind() {
                        K::ExpiredSignature => "token expired",
                        K::ImmatureSignature => "token not yet valid",
                        K::InvalidAudience => "token audience not accepted",
                        K::InvalidIssuer => "token issuer not accepted",
                        K::InvalidSignature => "token signature invalid",
                        K::MissingRequiredClaim(_) => "token lacks a required claim (exp)",
                        _ => "invalid bearer token",
                    });
                    if !matches!(e.kind(), K::InvalidSignature) {
                        // Claims failed, not the key: another key would fail the same way.
                        break;
                    }
                }
            }
        }
        Err(last)
    }

    fn authorize(&self, claims: serde_json::Map<String, serde_json::Value>) -> Result<String, Denied> {
        for (name, want) in &self.required {
            let ok = match claims.get(name) {
                Some(serde_json::Value::String(s)) => s == want || s.split(' ').any(|w| w == want),
                Some(serde_json::Value::Array(a)) => a.iter().any(|v| v.as_str() == Some(want.as_str())),
                Some(v) => serde_json::to_string(v).is_ok_and(|s| s == *want),
                None => false,
            };
            if !ok {
                return Err(Denied::Forbidden(format!("token claim `{name}` does not grant `{want}`")));
            }
        }
        Ok(claims.get("sub").and_then(|s| s.as_str()).unwrap_or("jwt").to_owned())
    }
}

/// Hex SHA-256 of an API key, the form stored in config.
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}
