//! The security layer's refusals and the asset budget, through the router
//! with `oneshot` (no socket; the daemon client points at a socket that
//! does not exist, so a request that got through to a handler answers 502).

use std::net::SocketAddr;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use tower::ServiceExt;

use super::*;
use banger_api::VmName;

const ADDR: &str = "127.0.0.1:7777";

fn state() -> WebState {
    let addr: SocketAddr = ADDR.parse().unwrap();
    WebState::new(
        DaemonClient::new("/nonexistent/bangerd.sock"),
        Secret::from_bytes(&[0xab; 32]),
        addr,
    )
}

fn secret() -> String {
    "ab".repeat(32)
}

fn cookie() -> String {
    format!("banger_web_7777={}", secret())
}

fn request(method: Method, uri: &str) -> axum::http::request::Builder {
    Request::builder()
        .method(method)
        .uri(uri)
        .header(header::HOST, ADDR)
}

async fn send(request: Request<Body>) -> axum::response::Response {
    router(state()).oneshot(request).await.unwrap()
}

async fn body_text(response: axum::response::Response) -> String {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn assert_security_headers(response: &axum::response::Response) {
    let headers = response.headers();
    let csp = headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(
        csp.contains("default-src 'self'; frame-ancestors 'none'"),
        "{csp}"
    );
    assert_eq!(headers[header::X_FRAME_OPTIONS], "DENY");
    assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert_eq!(headers[header::REFERRER_POLICY], "no-referrer");
    assert!(
        !headers.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN),
        "no CORS"
    );
}

#[tokio::test]
async fn the_page_with_the_cookie_is_served_with_security_headers() {
    let response = send(
        request(Method::GET, "/")
            .header(header::COOKIE, cookie())
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_security_headers(&response);
    assert!(body_text(response).await.contains("<title>banger</title>"));
}

#[tokio::test]
async fn without_the_cookie_every_path_is_401() {
    for path in ["/", "/assets/app.js", "/api/vms", "/api/events", "/nope"] {
        let response = send(request(Method::GET, path).body(Body::empty()).unwrap()).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{path}");
        assert_security_headers(&response);
    }
}

#[tokio::test]
async fn a_wrong_cookie_or_token_is_401() {
    let wrong = format!("banger_web_7777={}", "cd".repeat(32));
    let response = send(
        request(Method::GET, "/api/vms")
            .header(header::COOKIE, wrong)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    // The right secret under another port's cookie name does not count.
    let response = send(
        request(Method::GET, "/api/vms")
            .header(header::COOKIE, format!("banger_web_7778={}", secret()))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let response = send(
        request(Method::GET, "/?token=short")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_security_headers(&response);
}

#[tokio::test]
async fn the_token_sets_a_strict_httponly_cookie_and_redirects_without_it() {
    let response = send(
        request(Method::GET, &format!("/?token={}", secret()))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()[header::LOCATION], "/");
    let set_cookie = response.headers()[header::SET_COOKIE].to_str().unwrap();
    assert!(set_cookie.starts_with(&cookie()), "{set_cookie}");
    assert!(set_cookie.contains("HttpOnly"), "{set_cookie}");
    assert!(set_cookie.contains("SameSite=Strict"), "{set_cookie}");
    assert_security_headers(&response);

    // Other query parameters survive; the token does not.
    let response = send(
        request(Method::GET, &format!("/?a=1&token={}&b=2", secret()))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(response.headers()[header::LOCATION], "/?a=1&b=2");
}

#[tokio::test]
async fn a_foreign_host_is_refused_even_with_the_cookie() {
    for host in [
        "evil.example:7777",
        "localhost:7778",
        "127.0.0.2:7777",
        "localhost",
    ] {
        let response = send(
            Request::builder()
                .uri("/")
                .header(header::HOST, host)
                .header(header::COOKIE, cookie())
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(response.status(), StatusCode::MISDIRECTED_REQUEST, "{host}");
        assert_security_headers(&response);
    }
    let response = send(Request::builder().uri("/").body(Body::empty()).unwrap()).await;
    assert_eq!(
        response.status(),
        StatusCode::MISDIRECTED_REQUEST,
        "no Host"
    );
}

#[tokio::test]
async fn localhost_and_loopback_hosts_are_accepted() {
    for host in [
        "localhost:7777",
        "LOCALHOST:7777",
        "127.0.0.1:7777",
        "[::1]:7777",
    ] {
        let response = send(
            Request::builder()
                .uri("/")
                .header(header::HOST, host)
                .header(header::COOKIE, cookie())
                .body(Body::empty())
                .unwrap(),
        )
        .await;
        assert_eq!(response.status(), StatusCode::OK, "{host}");
    }
}

#[tokio::test]
async fn state_changing_requests_need_the_uis_own_origin() {
    let foreign = [
        None,
        Some("http://evil.example"),
        Some("http://localhost:7777"),
        Some("null"),
    ];
    for origin in foreign {
        for (method, path) in [
            (Method::POST, "/api/vms/dev/stop"),
            (Method::DELETE, "/api/vms/dev"),
            (Method::POST, "/api/vms"),
        ] {
            let mut builder = request(method.clone(), path).header(header::COOKIE, cookie());
            if let Some(origin) = origin {
                builder = builder.header(header::ORIGIN, origin);
            }
            let response = send(builder.body(Body::empty()).unwrap()).await;
            assert_eq!(
                response.status(),
                StatusCode::FORBIDDEN,
                "{method} {path} from {origin:?}"
            );
            assert_security_headers(&response);
        }
    }
    // From its own origin it reaches the handler, which finds no daemon.
    let response = send(
        request(Method::POST, "/api/vms/dev/stop")
            .header(header::COOKIE, cookie())
            .header(header::ORIGIN, format!("http://{ADDR}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    assert_security_headers(&response);
    let text = body_text(response).await;
    assert!(text.contains("cannot connect to bangerd"), "{text}");
}

#[tokio::test]
async fn no_cors_headers_even_for_a_cross_origin_preflight() {
    let response = send(
        request(Method::OPTIONS, "/api/vms")
            .header(header::COOKIE, cookie())
            .header(header::ORIGIN, "http://evil.example")
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert!(!response.status().is_success());
    assert_security_headers(&response);
}

#[test]
fn the_secret_is_32_random_bytes_in_hex_and_compares_exactly() {
    let one = Secret::generate().unwrap();
    let two = Secret::generate().unwrap();
    assert_eq!(one.as_str().len(), 64);
    assert!(one.as_str().bytes().all(|byte| byte.is_ascii_hexdigit()));
    assert_ne!(one.as_str(), two.as_str());
    assert!(one.matches(one.as_str()));
    assert!(!one.matches(two.as_str()));
    assert!(!one.matches(&one.as_str()[..63]));
    assert!(!one.matches(""));
    assert_eq!(format!("{one:?}"), "Secret(..)");
}

#[test]
fn a_non_loopback_address_needs_web_allow_remote() {
    let remote: SocketAddr = "0.0.0.0:7777".parse().unwrap();
    let error = check_listen_addr(remote, false).unwrap_err();
    assert!(error.to_string().contains("web_allow_remote"), "{error}");
    check_listen_addr(remote, true).unwrap();
    check_listen_addr("127.0.0.1:7777".parse().unwrap(), false).unwrap();
    check_listen_addr("[::1]:7777".parse().unwrap(), false).unwrap();
}

#[test]
fn the_assets_stay_under_300_kb() {
    let total: usize = assets::ALL.iter().map(|asset| asset.len()).sum();
    assert!(total < 300 * 1024, "the embedded assets are {total} bytes");
}

#[tokio::test]
async fn the_stats_history_keeps_the_last_hour() {
    use banger_api::events::{DaemonEvent, EventKind};
    use banger_api::vms::{HostSideStats, VmStats};
    let state = state();
    let vm = VmName::parse("dev").unwrap();
    let sample = |at: i64| DaemonEvent {
        seq: 1,
        time_unix_ms: 0,
        event: EventKind::Stats {
            vm: vm.clone(),
            stats: VmStats {
                vm: vm.clone(),
                sampled_at: at,
                host: HostSideStats {
                    vmm_cpu_percent: Some(1.0),
                    vmm_rss_bytes: None,
                    overlay_allocated_bytes: 0,
                    work_allocated_bytes: 0,
                },
                guest: None,
                guest_error: None,
            },
        },
    };
    let mut feed = state.follower().subscribe();
    for at in [0, 100, 3_000, 3_700] {
        state.follower().record(&sample(at));
    }
    let kept: Vec<i64> = state
        .follower()
        .history(&vm)
        .iter()
        .map(|stats| stats.sampled_at)
        .collect();
    assert_eq!(kept, vec![100, 3_000, 3_700]);
    assert!(feed.recv().await.unwrap().contains("\"type\":\"stats\""));

    let response = router(state.clone())
        .oneshot(
            request(Method::GET, "/api/vms/dev/stats")
                .header(header::COOKIE, cookie())
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let samples: serde_json::Value = serde_json::from_str(&body_text(response).await).unwrap();
    assert_eq!(samples.as_array().unwrap().len(), 3);
}

/// A stand-in daemon on a Unix socket: `routes` answer as bangerd would.
async fn fake_daemon(routes: axum::Router) -> (tempfile::TempDir, WebState) {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("bangerd.sock");
    let listener = tokio::net::UnixListener::bind(&socket).unwrap();
    tokio::spawn(async move { axum::serve(listener, routes).await.unwrap() });
    let state = WebState::new(
        DaemonClient::new(socket),
        Secret::from_bytes(&[0xab; 32]),
        ADDR.parse().unwrap(),
    );
    (dir, state)
}

#[tokio::test]
async fn a_daemon_error_keeps_its_status_and_message() {
    let daemon = axum::Router::new().route(
        "/v1/vms/dev/stop",
        axum::routing::post(|| async {
            (
                StatusCode::CONFLICT,
                axum::Json(
                    serde_json::json!({"code": "conflict", "message": "VM dev is stopped already"}),
                ),
            )
        }),
    );
    let (_dir, state) = fake_daemon(daemon).await;
    let response = router(state)
        .oneshot(
            request(Method::POST, "/api/vms/dev/stop")
                .header(header::COOKIE, cookie())
                .header(header::ORIGIN, format!("http://{ADDR}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CONFLICT);
    let body: serde_json::Value = serde_json::from_str(&body_text(response).await).unwrap();
    assert_eq!(body["message"], "VM dev is stopped already");
    assert_eq!(body["code"], "conflict");
}

#[tokio::test]
async fn create_streams_the_daemons_progress_and_its_failure() {
    let daemon = axum::Router::new().route(
        "/v1/vms",
        axum::routing::post(|| async {
            (
                [(header::CONTENT_TYPE, "application/x-ndjson")],
                concat!(
                    r#"{"event":"progress","stage":"image","message":"building the image","fraction":0.5}"#,
                    "\n",
                    r#"{"event":"failed","error":{"code":"unavailable","message":"no bridge"}}"#,
                    "\n"
                ),
            )
        }),
    );
    let (_dir, state) = fake_daemon(daemon).await;
    let response = router(state)
        .oneshot(
            request(Method::POST, "/api/vms")
                .header(header::COOKIE, cookie())
                .header(header::ORIGIN, format!("http://{ADDR}"))
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(r#"{"name":"dev"}"#))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let text = body_text(response).await;
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(lines[0]["event"], "progress");
    assert_eq!(lines[0]["message"], "building the image");
    assert_eq!(lines[1]["event"], "failed");
    assert_eq!(lines[1]["error"]["message"], "no bridge");
}

#[tokio::test]
async fn a_malformed_create_request_is_400_before_the_daemon() {
    let response = send(
        request(Method::POST, "/api/vms")
            .header(header::COOKIE, cookie())
            .header(header::ORIGIN, format!("http://{ADDR}"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(r#"{"name":"Not A Name"}"#))
            .unwrap(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}
