//! Access control for every API: a layer per required role that finds the caller's
//! principal (bearer token, `X-Consul-Token`, or the console's session cookie) and refuses
//! with 401 (no or bad credential) or 403 (a role that does not grant the route).

use crate::AppState;
use crate::error::ApiError;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use signalbox_control::access::{Denied, Principal, Role};

pub const SESSION_COOKIE: &str = "sb_session";

/// The caller, or why there is none. With access control off, everyone is an anonymous
/// admin.
pub fn principal(state: &AppState, headers: &HeaderMap) -> Result<Principal, Denied> {
    let access = &state.control.access;
    if !access.enabled() {
        return Ok(Principal { token_id: "anonymous".into(), role: Role::Admin });
    }
    if let Some(v) = headers.get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        return match v.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => access.authenticate(token),
            // Shippers that only know Basic auth (Fluent Bit, Logstash, rsyslog, Loki
            // clients) send the token as the password; Elasticsearch clients' API keys are
            // `base64(id:key)` with the token as the key.
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("basic") || scheme.eq_ignore_ascii_case("apikey") => {
                use base64::Engine;
                let decoded = base64::engine::general_purpose::STANDARD.decode(token.trim()).ok();
                let text = decoded.as_deref().and_then(|d| std::str::from_utf8(d).ok());
                match text.and_then(|t| t.split_once(':')) {
                    Some((user, secret)) => access
                        .authenticate(secret)
                        .or_else(|e| if secret.is_empty() { access.authenticate(user) } else { Err(e) }),
                    None if scheme.eq_ignore_ascii_case("apikey") => access.authenticate(token),
                    None => Err(Denied::Invalid),
                }
            }
            _ => Err(Denied::Invalid),
        };
    }
    if let Some(t) = headers.get("x-consul-token").and_then(|v| v.to_str().ok()) {
        return access.authenticate(t);
    }
    if let Some(id) = session_cookie(headers) {
        return access.session(id);
    }
    Err(Denied::Missing)
}

/// The session id from the `Cookie` header.
pub fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|s| s.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == SESSION_COOKIE)
        .map(|(_, v)| v)
}

/// Middleware: the route needs `need`.
pub async fn require(State((state, need)): State<(AppState, Role)>, mut req: Request, next: Next) -> Response {
    match principal(&state, req.headers()) {
        Ok(p) if p.role.allows(need) => {
            req.extensions_mut().insert(p);
            next.run(req).await
        }
        Ok(p) => ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("token `{}` has role {:?}; this needs {:?}", p.token_id, p.role, need).to_lowercase(),
        )
        .into_response(),
        Err(d) => {
            let mut r = ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", d.message()).into_response();
            r.headers_mut().insert(http::header::WWW_AUTHENTICATE, http::HeaderValue::from_static("Bearer"));
            r
        }
    }
}

/// Wraps `router` so every route in it needs `need`.
pub fn guard(router: axum::Router<AppState>, state: &AppState, need: Role) -> axum::Router<AppState> {
    router.route_layer(axum::middleware::from_fn_with_state((state.clone(), need), require))
}

/// Why a caller may not ingest: the one check every ingest endpoint (OTLP over HTTP and
/// gRPC, Zipkin, the log protocols, remote_write) makes before it reads a body.
#[derive(Debug)]
pub enum IngestDenied {
    /// No credential, or a bad one (401 / UNAUTHENTICATED).
    Unauthenticated(String),
    /// A credential whose role does not include `ingest` (403 / PERMISSION_DENIED).
    Forbidden,
}

impl IngestDenied {
    pub fn status(&self) -> StatusCode {
        match self {
            IngestDenied::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            IngestDenied::Forbidden => StatusCode::FORBIDDEN,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            IngestDenied::Unauthenticated(m) => m,
            IngestDenied::Forbidden => "this token cannot ingest",
        }
    }

    /// The gRPC status code (`google.rpc.Code`) for OTLP answers.
    pub fn grpc_code(&self) -> i32 {
        match self {
            IngestDenied::Unauthenticated(_) => 16,
            IngestDenied::Forbidden => 7,
        }
    }

    pub fn grpc(&self) -> tonic::Status {
        match self {
            IngestDenied::Unauthenticated(m) => tonic::Status::unauthenticated(m.clone()),
            IngestDenied::Forbidden => tonic::Status::permission_denied(self.message()),
        }
    }
}

impl From<IngestDenied> for ApiError {
    fn from(d: IngestDenied) -> ApiError {
        let code = if d.status() == StatusCode::FORBIDDEN { "forbidden" } else { "unauthorized" };
        ApiError::new(d.status(), code, d.message())
    }
}

/// The caller may ingest.
pub fn check_ingest(state: &AppState, headers: &HeaderMap) -> Result<(), IngestDenied> {
    match principal(state, headers) {
        Ok(p) if p.role.allows(Role::Ingest) => Ok(()),
        Ok(_) => Err(IngestDenied::Forbidden),
        Err(d) => Err(IngestDenied::Unauthenticated(d.message().to_string())),
    }
}
