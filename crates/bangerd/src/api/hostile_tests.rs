//! Hostile input on every route of the API (issue 19): malformed,
//! oversized, wrong-typed and boundary values (0, negative, 2^63, 2^64,
//! empty, NUL, newlines, 10 MB strings) in path parameters, query strings
//! and JSON bodies. Every case must get a 4xx with the API's JSON error
//! (`code` and a non-empty `message`), never a 5xx or a panic, and change
//! nothing (the lists of VMs, images, kernels and orphans stay the same and
//! the daemon is not asked to stop).
//!
//! The routes come from the OpenAPI document the router is built from, so
//! a new route is covered without editing this file.

use axum::body::Body;
use axum::extract::connect_info::ConnectInfo;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::*;
use crate::api::peer::PeerCredentials;

const OWNER: u32 = 4242;

/// Ten megabytes, the size the issue names for oversized strings.
const TEN_MB: usize = 10 * 1024 * 1024;

/// Hostile values for a path segment, already percent-encoded (the longest
/// is near the 64 KiB the `http` crate allows in a URI).
fn hostile_segments() -> Vec<String> {
    vec![
        "%00".into(),
        "a%00b".into(),
        "a%0Ab".into(),
        "%0A".into(),
        "UPPER".into(),
        "-lead".into(),
        "trail-".into(),
        "0".into(),
        "-1".into(),
        "9223372036854775808".into(),
        "a%2Fb".into(),
        "..".into(),
        "a.b".into(),
        "%20".into(),
        "%C3%A9t%C3%A9".into(),
        "%FF".into(),
        "x".repeat(64),
        "x".repeat(60_000),
    ]
}

/// Hostile values for a query parameter, already percent-encoded.
fn hostile_query_values() -> Vec<String> {
    vec![
        String::new(),
        "-1".into(),
        "9223372036854775808".into(),
        "18446744073709551616".into(),
        "%00".into(),
        "a%0Ab".into(),
        "maybe".into(),
        "x".repeat(60_000),
    ]
}

/// Hostile JSON values for one body field.
fn hostile_values() -> Vec<Value> {
    vec![
        json!(0),
        json!(-1),
        json!(9_223_372_036_854_775_808_u64),
        json!(18_446_744_073_709_551_615_u64),
        serde_json::from_str("18446744073709551616").unwrap_or(Value::Null),
        json!(1.5),
        json!(""),
        json!("\u{0}"),
        json!("a\nb"),
        json!("../../etc/passwd"),
        json!(true),
        json!([]),
        json!({}),
        json!("x".repeat(1000)),
    ]
}

/// Whole bodies that are wrong for any route.
fn hostile_bodies() -> Vec<(&'static str, Vec<u8>)> {
    let huge = format!("{{\"name\": \"{}\"}}", "x".repeat(TEN_MB));
    vec![
        ("empty body", Vec::new()),
        ("not JSON", b"not json".to_vec()),
        ("truncated JSON", b"{\"name\": \"a".to_vec()),
        ("a JSON array", b"[]".to_vec()),
        ("a JSON number", b"9223372036854775808".to_vec()),
        ("a JSON string", b"\"\\u0000\"".to_vec()),
        ("null", b"null".to_vec()),
        ("NUL bytes", b"{\0}".to_vec()),
        ("an unknown field", b"{\"no_such_field\": 1}".to_vec()),
        ("10 MB", huge.into_bytes()),
    ]
}

/// Free-text fields that accept any string by design.
fn free_text(path: &str, field: &str) -> bool {
    path == "/v1/daemon/stop" && field == "reason"
}

/// Whether a field's schema is a boolean (or an optional one).
fn is_boolean(schema: &Value) -> bool {
    schema["type"] == "boolean"
        || schema["type"]
            .as_array()
            .is_some_and(|types| types.iter().any(|t| t == "boolean"))
}

struct Route {
    method: String,
    path: String,
    query: Vec<String>,
    /// The request body's fields and their schemas, when it has one.
    fields: Option<Vec<(String, Value)>>,
}

/// Every operation of the served OpenAPI document.
fn routes() -> Vec<Route> {
    let document = serde_json::to_value(openapi()).expect("openapi as JSON");
    let schemas = &document["components"]["schemas"];
    let mut out = Vec::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("path item") {
            let query = operation["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "query")
                .filter_map(|p| p["name"].as_str().map(str::to_owned))
                .collect();
            let fields = operation.get("requestBody").map(|body| {
                let schema = &body["content"]["application/json"]["schema"];
                let name = schema["$ref"]
                    .as_str()
                    .and_then(|r| r.rsplit('/').next())
                    .unwrap_or_default();
                schemas[name]["properties"]
                    .as_object()
                    .map(|props| props.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                    .unwrap_or_default()
            });
            out.push(Route {
                method: method.to_uppercase(),
                path: path.clone(),
                query,
                fields,
            });
        }
    }
    assert!(out.len() > 40, "only {} routes found", out.len());
    out
}

/// `path` with every `{param}` set: valid names that exist nowhere, except
/// `hostile` put in place of `param_at` (the n-th parameter).
fn fill(path: &str, param_at: Option<usize>, hostile: &str) -> String {
    let valid = ["ghost", "ghost-two", "ghost-three"];
    let mut out = String::new();
    let mut rest = path;
    let mut index = 0;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').expect("closing brace") + start;
        if param_at == Some(index) {
            out.push_str(hostile);
        } else {
            out.push_str(valid[index.min(2)]);
        }
        index += 1;
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

fn param_count(path: &str) -> usize {
    path.matches('{').count()
}

struct Harness {
    router: Router,
    shutdown: tokio::sync::watch::Receiver<bool>,
    _temp: tempfile::TempDir,
}

async fn send(harness: &Harness, method: &str, uri: &str, body: Vec<u8>) -> (StatusCode, Value) {
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .expect("request");
    request
        .extensions_mut()
        .insert(ConnectInfo(PeerCredentials {
            uid: Some(OWNER),
            pid: Some(1),
        }));
    let response = harness
        .router
        .clone()
        .oneshot(request)
        .await
        .expect("infallible");
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    let json = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| json!({"non_json_body": String::from_utf8_lossy(&bytes)}));
    (status, json)
}

/// What the lists show, to prove nothing was created or removed.
async fn listing(harness: &Harness) -> Vec<Value> {
    let mut out = Vec::new();
    for path in ["/v1/vms", "/v1/images", "/v1/kernels", "/v1/orphans"] {
        let (status, body) = send(harness, "GET", path, Vec::new()).await;
        assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
        out.push(body);
    }
    out
}

/// Checks one response; returns a description of what is wrong, if anything.
fn judge(case: &str, status: StatusCode, body: &Value) -> Option<String> {
    let code = body["code"].as_str().unwrap_or_default();
    let message = body["message"].as_str().unwrap_or_default();
    if !status.is_client_error() || code.is_empty() || message.trim().is_empty() {
        let shown: String = body.to_string().chars().take(300).collect();
        return Some(format!("{case}: {status} {shown}"));
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_refuses_hostile_input_without_changing_anything() {
    let temp = tempfile::tempdir().expect("tempdir");
    let (state, shutdown) = AppState::for_tests(temp.path());
    let harness = Harness {
        router: router(state, OwnerUid(OWNER)),
        shutdown,
        _temp: temp,
    };
    let before = listing(&harness).await;
    let mut failures = Vec::new();
    let mut cases = 0;

    for route in routes() {
        let method = route.method.as_str();
        // Path parameters, one at a time.
        for at in 0..param_count(&route.path) {
            for segment in hostile_segments() {
                let uri = fill(&route.path, Some(at), &segment);
                let body = if route.fields.is_some() {
                    b"{}".to_vec()
                } else {
                    Vec::new()
                };
                let (status, reply) = send(&harness, method, &uri, body).await;
                cases += 1;
                let shown: String = segment.chars().take(30).collect();
                failures.extend(judge(
                    &format!("{method} {} with param {at} = {shown}", route.path),
                    status,
                    &reply,
                ));
            }
        }
        // Query parameters, one at a time, plus an unknown one.
        let base = fill(&route.path, None, "");
        for name in route
            .query
            .iter()
            .map(String::as_str)
            .chain(["no_such_param"])
        {
            if name == "no_such_param" && route.query.is_empty() {
                continue;
            }
            for value in hostile_query_values() {
                let uri = format!("{base}?{name}={value}");
                let (status, reply) = send(&harness, method, &uri, Vec::new()).await;
                cases += 1;
                let shown: String = value.chars().take(30).collect();
                failures.extend(judge(
                    &format!("{method} {}?{name}={shown}", route.path),
                    status,
                    &reply,
                ));
            }
        }
        // Bodies: whole-body garbage, then each field with each value.
        let Some(fields) = &route.fields else {
            continue;
        };
        for (what, body) in hostile_bodies() {
            let (status, reply) = send(&harness, method, &base, body).await;
            cases += 1;
            failures.extend(judge(
                &format!("{method} {} with {what}", route.path),
                status,
                &reply,
            ));
        }
        for (field, schema) in fields {
            for value in hostile_values() {
                // `true` is a valid boolean, and free text is free.
                let valid = (value.is_boolean() && is_boolean(schema))
                    || (value.is_string() && free_text(&route.path, field));
                if valid {
                    continue;
                }
                let body = serde_json::to_vec(&json!({ field.as_str(): value })).expect("body");
                let (status, reply) = send(&harness, method, &base, body).await;
                cases += 1;
                let shown: String = value.to_string().chars().take(30).collect();
                let case = format!("{method} {} with {field} = {shown}", route.path);
                failures.extend(judge(&case, status, &reply));
                // The message names the field (or the required field that
                // is missing), so the caller knows what to fix.
                let message = reply["message"].as_str().unwrap_or_default();
                let named = message.contains(field.as_str())
                    || message.contains("missing field")
                    // Domain checks name the value with the CLI's flag
                    // (`--vcpu 0 is out of range`).
                    || (value.is_number() && message.contains("--") && message.contains(&value.to_string()))
                    || status == StatusCode::NOT_FOUND;
                if !named {
                    failures.push(format!(
                        "{case}: message does not name the field: {message}"
                    ));
                }
            }
        }
    }

    assert!(
        failures.is_empty(),
        "{} of {cases} hostile requests were not refused with a JSON 4xx:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(
        listing(&harness).await,
        before,
        "hostile input changed the store"
    );
    assert!(
        !*harness.shutdown.borrow(),
        "hostile input stopped the daemon"
    );
}
