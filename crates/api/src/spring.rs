//! Spring Cloud Config Server's read endpoints under `/config` (the Config Server's root):
//!
//! - `/{application}/{profile}[/{label}]`: the `Environment` JSON Spring Boot clients read.
//! - `/{application}-{profile}.yml|.yaml|.properties|.json` and
//!   `/{label}/{application}-{profile}.…`: the merged properties as one file, placeholders
//!   resolved.
//! - `/{application}/{profile}/{label}/{path}`: a stored file as plain text (the PyPI
//!   `config-client`'s `get_file`), placeholders resolved.
//!
//! A request whose last segment names a file (`orders-prod.yml`) is always a file form,
//! never a profile. Signalbox has no labels (branches): a label is echoed and otherwise
//! ignored. A browser navigating to these paths gets the console's config pages.

use crate::AppState;
use crate::error::ApiError;
use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use signalbox_control::spring;

pub fn reads() -> Router<AppState> {
    Router::new()
        .route("/config/{name}", get(one))
        .route("/config/{a}/{b}", get(two))
        .route("/config/{app}/{profile}/{label}", get(three))
        .route("/config/{app}/{profile}/{label}/{*path}", get(file))
}

/// The file forms' formats.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Format {
    Yaml,
    Properties,
    Json,
}

/// `{application}-{profiles}.{ext}` split at the last `-` (Spring's pattern), or `None` when
/// the segment does not end with a file form's extension.
fn file_form(segment: &str) -> Option<Result<(&str, &str, Format), ApiError>> {
    let (stem, ext) = segment.rsplit_once('.')?;
    let format = match ext {
        "yml" | "yaml" => Format::Yaml,
        "properties" => Format::Properties,
        "json" => Format::Json,
        _ => return None,
    };
    Some(match stem.rsplit_once('-') {
        Some((app, profiles)) if !app.is_empty() && !profiles.is_empty() => Ok((app, profiles, format)),
        _ => Err(ApiError::not_found(format!(
            "`{segment}` is not a Config Server file: use {{application}}-{{profile}}.{ext}"
        ))),
    })
}

/// Comma-separated profiles, each checked.
fn profiles_of(app: &str, profile: &str) -> Result<Vec<String>, ApiError> {
    let list: Vec<String> = profile.split(',').map(str::trim).filter(|p| !p.is_empty()).map(str::to_owned).collect();
    if list.is_empty() {
        return Err(ApiError::field("profile", "name at least one profile"));
    }
    for p in &list {
        signalbox_control::config::check_names(app, p, "k")?;
    }
    Ok(list)
}

fn html(headers: &HeaderMap) -> bool {
    crate::console::wants_html(headers)
}

async fn one(State(s): State<AppState>, Path(name): Path<String>, uri: Uri, headers: HeaderMap) -> Response {
    if html(&headers) {
        return crate::console::serve(axum::http::Method::GET, uri, headers).await;
    }
    match file_form(&name) {
        Some(Ok((app, profiles, format))) => render(&s, app, profiles, format).into_response(),
        Some(Err(e)) => e.into_response(),
        None => ApiError::not_found(
            "the Config Server's paths are /{application}/{profile}[/{label}] and /{application}-{profile}.yml",
        )
        .into_response(),
    }
}

async fn two(
    State(s): State<AppState>,
    Path((a, b)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if html(&headers) {
        return crate::console::serve(axum::http::Method::GET, uri, headers).await;
    }
    match file_form(&b) {
        // `/{label}/{application}-{profile}.yml`: the label is ignored.
        Some(Ok((app, profiles, format))) => render(&s, app, profiles, format).into_response(),
        Some(Err(e)) => e.into_response(),
        None => environment(&s, &a, &b, None).into_response(),
    }
}

async fn three(
    State(s): State<AppState>,
    Path((app, profile, label)): Path<(String, String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if html(&headers) {
        return crate::console::serve(axum::http::Method::GET, uri, headers).await;
    }
    environment(&s, &app, &profile, Some(label)).into_response()
}

/// Spring Cloud Config Server's `Environment`: property sources most specific first.
fn environment(s: &AppState, app: &str, profile: &str, label: Option<String>) -> Result<Json<Value>, ApiError> {
    let profiles = profiles_of(app, profile)?;
    let refs: Vec<&str> = profiles.iter().map(String::as_str).collect();
    let sources: Vec<Value> = s
        .control
        .config
        .property_sources(app, &refs)
        .into_iter()
        .map(|(name, source)| json!({ "name": name, "source": source }))
        .collect();
    Ok(Json(json!({
        "name": app,
        "profiles": profiles,
        "label": label,
        "version": s.control.index.current().to_string(),
        "state": null,
        "propertySources": sources,
    })))
}

/// The merged properties of `app` and `profiles` as one file.
fn render(s: &AppState, app: &str, profiles: &str, format: Format) -> Result<Response, ApiError> {
    let profiles = profiles_of(app, profiles)?;
    let refs: Vec<&str> = profiles.iter().map(String::as_str).collect();
    let merged = spring::merge(&s.control.config.property_sources(app, &refs));
    let (body, kind) = match format {
        Format::Yaml => (spring::to_yaml(&spring::nest(&merged)), "text/plain; charset=utf-8"),
        Format::Properties => (spring::to_properties(&merged), "text/plain; charset=utf-8"),
        Format::Json => (spring::nest(&merged).to_string(), "application/json"),
    };
    Ok(([(header::CONTENT_TYPE, HeaderValue::from_static(kind))], body).into_response())
}

/// `/{application}/{profile}/{label}/{path}`: a stored file, most specific first.
async fn file(
    State(s): State<AppState>,
    Path((app, profile, _label, path)): Path<(String, String, String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if html(&headers) {
        return crate::console::serve(axum::http::Method::GET, uri, headers).await;
    }
    plain_file(&s, &app, &profile, &path).unwrap_or_else(IntoResponse::into_response)
}

fn plain_file(s: &AppState, app: &str, profile: &str, path: &str) -> Result<Response, ApiError> {
    let profiles = profiles_of(app, profile)?;
    let refs: Vec<&str> = profiles.iter().map(String::as_str).collect();
    let entry = s
        .control
        .config
        .file(app, &refs, path)
        .ok_or_else(|| ApiError::not_found(format!("no file `{path}` for `{app}` with profile `{profile}`")))?;
    let merged = spring::merge(&s.control.config.property_sources(app, &refs));
    let body = spring::resolve_placeholders(&entry.value, &merged);
    let kind = if path.ends_with(".json") { "application/json" } else { "text/plain; charset=utf-8" };
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, HeaderValue::from_static(kind))], body).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_forms_split_at_the_last_dash() {
        fn ok(s: &str) -> (&str, &str, Format) {
            file_form(s).unwrap().unwrap()
        }
        assert_eq!(ok("orders-prod.yml"), ("orders", "prod", Format::Yaml));
        assert_eq!(ok("my-app-prod,eu.properties"), ("my-app", "prod,eu", Format::Properties));
        assert_eq!(ok("orders-default.json"), ("orders", "default", Format::Json));
        assert!(file_form("orders.yml").unwrap().is_err(), "a file without a profile is no profile either");
        assert!(file_form("orders-.yaml").unwrap().is_err());
        assert!(file_form("prod").is_none());
        assert!(file_form("eu.west").is_none());
    }
}
