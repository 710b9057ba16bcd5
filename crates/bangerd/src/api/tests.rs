//! Route handler tests through `Router` + `oneshot`, and the OpenAPI drift check.

use axum::body::Body;
use axum::extract::connect_info::ConnectInfo;
use axum::http::{Request, StatusCode, header};
use banger_api::daemon::{DaemonStatus, IntegrityReport};
use http_body_util::BodyExt;
use tokio::sync::watch;
use tower::ServiceExt;

use super::*;
use crate::api::peer::PeerCredentials;

const OWNER: u32 = 4242;

struct Harness {
    router: Router,
    shutdown: watch::Receiver<bool>,
    _temp: tempfile::TempDir,
}

fn harness() -> Harness {
    let temp = tempfile::tempdir().expect("tempdir");
    let (state, shutdown) = AppState::for_tests(temp.path());
    Harness {
        router: router(state, OwnerUid(OWNER)),
        shutdown,
        _temp: temp,
    }
}

fn request(method: &str, uri: &str, uid: Option<u32>, body: Body) -> Request<Body> {
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body)
        .expect("request");
    if let Some(uid) = uid {
        request
            .extensions_mut()
            .insert(ConnectInfo(PeerCredentials {
                uid: Some(uid),
                pid: Some(1),
            }));
    }
    request
}

async fn send(harness: &Harness, request: Request<Body>) -> (StatusCode, serde_json::Value) {
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
    let json = serde_json::from_slice(&bytes).unwrap_or_else(|error| {
        panic!(
            "non-JSON body {:?}: {error}",
            String::from_utf8_lossy(&bytes)
        )
    });
    (status, json)
}

#[tokio::test]
async fn status_reports_the_daemon() {
    let harness = harness();
    let (status, body) = send(
        &harness,
        request("GET", "/v1/daemon/status", Some(OWNER), Body::empty()),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let reply: DaemonStatus = serde_json::from_value(body).expect("DaemonStatus");
    assert_eq!(reply.pid, std::process::id());
    assert_eq!(reply.version, banger_api::VERSION);
    assert!(
        reply.socket.ends_with("run/bangerd.sock"),
        "{}",
        reply.socket
    );
    assert_eq!(reply.dns.listen_addr, "127.0.0.1:42069");
    assert!(!reply.dns.serving);
}

#[tokio::test]
async fn other_users_are_refused_with_json() {
    let harness = harness();
    let (status, body) = send(
        &harness,
        request("GET", "/v1/daemon/status", Some(1001), Body::empty()),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["code"], "forbidden");
    assert!(
        body["message"]
            .as_str()
            .expect("message")
            .contains("uid 1001"),
        "{body}"
    );
    let (status, _) = send(
        &harness,
        request("GET", "/v1/daemon/status", None, Body::empty()),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "unknown peers are refused too"
    );
}

#[tokio::test]
async fn unknown_routes_and_methods_get_json_errors() {
    let harness = harness();
    let (status, body) = send(
        &harness,
        request("GET", "/v1/nope", Some(OWNER), Body::empty()),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["code"], "not_found");
    let (status, body) = send(
        &harness,
        request("DELETE", "/v1/daemon/status", Some(OWNER), Body::empty()),
    )
    .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(body["code"], "method_not_allowed");
}

#[tokio::test]
async fn malformed_stop_body_is_refused_and_changes_nothing() {
    let harness = harness();
    for body in [
        "{not json",
        "{\"reason\": 5}",
        "{\"unexpected\": true}",
        "\"stop\"",
        "",
    ] {
        let (status, reply) = send(
            &harness,
            request("POST", "/v1/daemon/stop", Some(OWNER), Body::from(body)),
        )
        .await;
        assert!(status.is_client_error(), "{body}: {status}");
        assert_eq!(reply["code"], "bad_request", "{body}: {reply}");
        assert!(
            !*harness.shutdown.borrow(),
            "{body} must not stop the daemon"
        );
    }
}

#[tokio::test]
async fn oversized_body_is_refused_and_changes_nothing() {
    let harness = harness();
    let huge = format!("{{\"reason\": \"{}\"}}", "x".repeat(MAX_BODY_BYTES + 1));
    let (status, reply) = send(
        &harness,
        request("POST", "/v1/daemon/stop", Some(OWNER), Body::from(huge)),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(reply["code"], "payload_too_large");
    assert!(!*harness.shutdown.borrow());
}

#[tokio::test]
async fn stop_requests_shutdown() {
    let harness = harness();
    let (status, reply) = send(
        &harness,
        request(
            "POST",
            "/v1/daemon/stop",
            Some(OWNER),
            Body::from("{\"reason\": \"test\"}"),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(reply["pid"], std::process::id());
    assert!(*harness.shutdown.borrow());
}

#[tokio::test]
async fn check_reports_a_healthy_database() {
    let harness = harness();
    let (status, body) = send(
        &harness,
        request("POST", "/v1/daemon/check", Some(OWNER), Body::empty()),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let report: IntegrityReport = serde_json::from_value(body).expect("report");
    assert!(report.ok);
    assert_eq!(report.schema_version, crate::store::LATEST_VERSION);
}

#[tokio::test]
async fn every_client_path_is_routed() {
    let harness = harness();
    for (method, path) in [
        ("GET", banger_api::paths::DAEMON_STATUS),
        ("POST", banger_api::paths::DAEMON_CHECK),
        ("GET", banger_api::paths::OPENAPI),
    ] {
        let (status, _) = send(&harness, request(method, path, Some(OWNER), Body::empty())).await;
        assert_eq!(status, StatusCode::OK, "{method} {path}");
    }
}

#[tokio::test]
async fn session_routes_name_what_is_wrong() {
    let harness = harness();
    let create = |json: serde_json::Value| {
        request(
            "POST",
            &banger_api::paths::vm_sessions("ghost"),
            Some(OWNER),
            Body::from(json.to_string()),
        )
    };
    let message = |error: &serde_json::Value| error["message"].as_str().unwrap_or("").to_owned();
    // Unknown VM: 404 naming it, for every session route.
    let (status, error) = send(
        &harness,
        create(serde_json::json!({"name": "web", "command": ["true"]})),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{error}");
    assert!(message(&error).contains("ghost"), "{error}");
    for (method, path) in [
        ("GET", banger_api::paths::vm_sessions("ghost")),
        ("GET", banger_api::paths::vm_session("ghost", "web")),
        ("DELETE", banger_api::paths::vm_session("ghost", "web")),
        (
            "POST",
            banger_api::paths::vm_session_action("ghost", "web", "stop"),
        ),
        (
            "POST",
            banger_api::paths::vm_session_action("ghost", "web", "kill"),
        ),
        (
            "GET",
            banger_api::paths::vm_session_action("ghost", "web", "logs"),
        ),
    ] {
        let (status, error) =
            send(&harness, request(method, &path, Some(OWNER), Body::empty())).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {error}");
    }
    // An empty command: 400 before the VM is looked up; a name breaking
    // the rule or an unknown field: 422, as every mistyped body (the body
    // does not deserialise into the typed request).
    for (body, expected, named) in [
        (
            serde_json::json!({"name": "Web Server", "command": ["true"]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "session name \"Web Server\"",
        ),
        (
            serde_json::json!({"name": "web", "command": []}),
            StatusCode::BAD_REQUEST,
            "command",
        ),
        (
            serde_json::json!({"name": "web", "command": ["true"], "env": {}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "env",
        ),
    ] {
        let (status, error) = send(&harness, create(body.clone())).await;
        assert_eq!(status, expected, "{body}: {error}");
        assert_eq!(error["code"], "bad_request", "{body}: {error}");
        assert!(message(&error).contains(named), "{body}: {error}");
    }
    // Attach without the upgrade headers says which headers it needs.
    let attach = banger_api::paths::vm_session_action("ghost", "web", "attach");
    let (status, error) = send(
        &harness,
        request("GET", &attach, Some(OWNER), Body::empty()),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    assert!(message(&error).contains("banger-attach"), "{error}");
}

#[tokio::test]
async fn names_in_paths_are_parsed_before_any_handler_runs() {
    use banger_api::paths;
    let harness = harness();
    let refused = |name: &str, rule: Result<(), banger_api::NameError>| {
        (name.to_owned(), rule.expect_err("invalid").to_string())
    };
    let (bad_vm, vm_error) = refused("Dev", banger_api::VmName::parse("Dev").map(drop));
    let (bad_image, image_error) = refused("-img", banger_api::ImageName::parse("-img").map(drop));
    let (bad_kernel, kernel_error) = refused("k_1", banger_api::KernelName::parse("k_1").map(drop));
    let (bad_session, session_error) =
        refused("-web", banger_api::SessionName::parse("-web").map(drop));
    for (method, path, expected) in [
        ("GET", paths::vm(&bad_vm), &vm_error),
        ("DELETE", paths::vm(&bad_vm), &vm_error),
        ("POST", paths::vm_action(&bad_vm, "stop"), &vm_error),
        ("GET", paths::vm_console(&bad_vm), &vm_error),
        ("GET", paths::vm_ports(&bad_vm), &vm_error),
        ("GET", paths::vm_stats(&bad_vm), &vm_error),
        (
            "GET",
            format!("{}/history", paths::vm_stats(&bad_vm)),
            &vm_error,
        ),
        ("GET", paths::vm_agent(&bad_vm), &vm_error),
        ("GET", paths::vm_sessions(&bad_vm), &vm_error),
        ("GET", paths::vm_session(&bad_vm, "web"), &vm_error),
        (
            "GET",
            paths::vm_session("ghost", &bad_session),
            &session_error,
        ),
        (
            "POST",
            paths::vm_session_action("ghost", &bad_session, "stop"),
            &session_error,
        ),
        ("GET", paths::image(&bad_image), &image_error),
        ("POST", paths::image_promote(&bad_image), &image_error),
        ("GET", paths::kernel(&bad_kernel), &kernel_error),
        ("DELETE", paths::kernel(&bad_kernel), &kernel_error),
    ] {
        let (status, error) =
            send(&harness, request(method, &path, Some(OWNER), Body::empty())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{method} {path}: {error}");
        assert_eq!(error["code"], "bad_request", "{method} {path}: {error}");
        assert_eq!(error["message"], **expected, "{method} {path}");
    }
    // Valid names reach the handler: unknown things are 404, and a session
    // name may start with a digit (the guest agent's rule, not the VM rule).
    for (method, path) in [
        ("GET", paths::vm("ghost")),
        ("GET", paths::image("ghost")),
        ("GET", paths::kernel("ghost")),
        ("GET", paths::vm_session("ghost", "2web")),
    ] {
        let (status, error) =
            send(&harness, request(method, &path, Some(OWNER), Body::empty())).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {error}");
    }
}

#[tokio::test]
async fn names_in_bodies_are_part_of_the_typed_request() {
    let harness = harness();
    for (path, body, named) in [
        (
            banger_api::paths::VMS,
            serde_json::json!({"name": "Dev"}),
            "VM name \"Dev\"",
        ),
        (
            banger_api::paths::VMS,
            serde_json::json!({"image": "../x"}),
            "image name \"../x\"",
        ),
        (
            banger_api::paths::KERNEL_PULL,
            serde_json::json!({"name": "../x"}),
            "kernel name \"../x\"",
        ),
        (
            banger_api::paths::IMAGE_BUILD,
            serde_json::json!({"name": "ok", "kernel_ref": "Bad"}),
            "kernel name \"Bad\"",
        ),
        (
            banger_api::paths::IMAGE_REGISTER,
            serde_json::json!({"name": "a b", "rootfs": "/x"}),
            "image name \"a b\"",
        ),
    ] {
        let (status, error) = send(
            &harness,
            request("POST", path, Some(OWNER), Body::from(body.to_string())),
        )
        .await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{path} {body}: {error}"
        );
        assert_eq!(error["code"], "bad_request", "{path} {body}: {error}");
        let message = error["message"].as_str().unwrap_or_default();
        assert!(message.contains(named), "{path} {body}: {error}");
    }
}

fn message_of(error: &serde_json::Value) -> &str {
    error["message"].as_str().unwrap_or_default()
}

fn json_body(value: &serde_json::Value) -> Body {
    Body::from(value.to_string())
}

#[tokio::test]
async fn create_with_memory_over_host_ram_is_a_400_naming_the_limit() {
    let harness = harness();
    let host_mib = crate::vms::host_memory_mib().expect("host memory");
    let (status, error) = send(
        &harness,
        request(
            "POST",
            banger_api::paths::VMS,
            Some(OWNER),
            json_body(&serde_json::json!({"memory_mib": u32::MAX, "no_start": true})),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    assert_eq!(error["code"], "bad_request", "{error}");
    let message = message_of(&error);
    assert!(message.contains(&u32::MAX.to_string()), "{message}");
    assert!(message.contains(&format!("{host_mib} MiB")), "{message}");
}

#[tokio::test]
async fn create_with_disk_over_max_disk_size_is_a_400_naming_the_limit() {
    let harness = harness();
    let (status, error) = send(
        &harness,
        request(
            "POST",
            banger_api::paths::VMS,
            Some(OWNER),
            json_body(&serde_json::json!({"disk_bytes": 4000_u64 << 40, "no_start": true})),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    assert_eq!(error["code"], "bad_request", "{error}");
    let message = message_of(&error);
    assert!(message.contains("4000T"), "{message}");
    assert!(
        message.contains(&(1_u64 << 40).to_string()) && message.contains("max_disk_size"),
        "{message}"
    );
}

#[tokio::test]
async fn vm_set_over_bounds_is_a_400_naming_the_limit() {
    let harness = harness();
    let host_mib = crate::vms::host_memory_mib().expect("host memory");
    for (body, limit) in [
        (
            serde_json::json!({"memory_mib": u32::MAX}),
            format!("{host_mib} MiB"),
        ),
        (
            serde_json::json!({"disk_bytes": 4000_u64 << 40}),
            (1_u64 << 40).to_string(),
        ),
        (serde_json::json!({"vcpus": 0}), "1 to".to_owned()),
    ] {
        let (status, error) = send(
            &harness,
            request(
                "PATCH",
                &banger_api::paths::vm("ghost"),
                Some(OWNER),
                json_body(&body),
            ),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {error}");
        assert_eq!(error["code"], "bad_request", "{body}: {error}");
        assert!(message_of(&error).contains(&limit), "{body}: {error}");
    }
}

#[tokio::test]
async fn unknown_query_parameter_is_a_400_json_bad_request() {
    let harness = harness();
    for (method, uri, parameter) in [
        ("DELETE", "/v1/vms/x?forse=true", "forse"),
        ("DELETE", "/v1/images/x?forse=true", "forse"),
        ("GET", "/v1/vms/x/console?ofset=3", "ofset"),
        ("GET", "/v1/vms/x/sessions/web/logs?folow=true", "folow"),
    ] {
        let (status, error) =
            send(&harness, request(method, uri, Some(OWNER), Body::empty())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{method} {uri}: {error}");
        assert_eq!(error["code"], "bad_request", "{method} {uri}: {error}");
        assert!(message_of(&error).contains(parameter), "{uri}: {error}");
    }
}

#[tokio::test]
async fn mistyped_query_value_is_a_400_json_bad_request() {
    let harness = harness();
    for (method, uri) in [
        ("DELETE", "/v1/vms/x?force=maybe"),
        ("GET", "/v1/vms/x/console?offset=-1"),
        ("GET", "/v1/vms/x/sessions/web/logs?stream=both"),
    ] {
        let (status, error) =
            send(&harness, request(method, uri, Some(OWNER), Body::empty())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{method} {uri}: {error}");
        assert_eq!(error["code"], "bad_request", "{method} {uri}: {error}");
    }
}

#[tokio::test]
async fn invalid_utf8_in_a_path_name_is_a_400_json_bad_request() {
    let harness = harness();
    for (method, uri) in [
        ("GET", "/v1/vms/%FF"),
        ("DELETE", "/v1/vms/%FF"),
        ("GET", "/v1/vms/%FF/stats/history"),
        ("GET", "/v1/images/a%FFb"),
        ("GET", "/v1/vms/ghost/sessions/%FF"),
    ] {
        let (status, error) =
            send(&harness, request(method, uri, Some(OWNER), Body::empty())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{method} {uri}: {error}");
        assert_eq!(error["code"], "bad_request", "{method} {uri}: {error}");
    }
}

#[tokio::test]
async fn stats_of_an_unknown_vm_is_a_404_json() {
    let harness = harness();
    for path in [
        format!("{}/history", banger_api::paths::vm_stats("ghost")),
        banger_api::paths::vm_stats("ghost"),
    ] {
        let (status, error) =
            send(&harness, request("GET", &path, Some(OWNER), Body::empty())).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {error}");
        assert_eq!(error["code"], "not_found", "{path}: {error}");
        assert!(message_of(&error).contains("ghost"), "{path}: {error}");
    }
}

#[tokio::test]
async fn no_fixed_route_shadows_a_vm_name() {
    // Every valid VM name, "adopt" and "orphans" included, reaches the VM's
    // own routes: an unknown one is that VM's 404, not another route.
    let harness = harness();
    for name in ["adopt", "orphans", "catalog"] {
        let path = banger_api::paths::vm(name);
        let (status, error) =
            send(&harness, request("GET", &path, Some(OWNER), Body::empty())).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {error}");
        assert!(
            message_of(&error).contains(&format!("VM {name} does not exist")),
            "{path}: {error}"
        );
    }
}

/// The checked-in document must equal the generated one. Regenerate with
/// `cargo run -p bangerd -- openapi > docs/api/openapi.json`.
#[test]
fn openapi_document_matches_the_checked_in_file() {
    let checked_in_path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/api/openapi.json");
    let generated = openapi_json();
    if std::env::var_os("BANGER_UPDATE_OPENAPI").is_some() {
        fs_err::write(checked_in_path, &generated).expect("write openapi.json");
    }
    let checked_in = fs_err::read_to_string(checked_in_path).expect("docs/api/openapi.json exists");
    assert!(
        checked_in == generated,
        "docs/api/openapi.json is out of date; run `cargo run -p bangerd -- openapi > docs/api/openapi.json`"
    );
}

#[tokio::test]
async fn orphans_lists_vm_directories_no_vm_owns() {
    let harness = harness();
    let vms_dir = harness._temp.path().join("state/vms");
    let (status, body) = send(
        &harness,
        request("GET", "/v1/orphans", Some(OWNER), Body::empty()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, serde_json::json!([]), "no VMs directory: no orphans");
    fs_err::create_dir_all(vms_dir.join("lost-vm")).expect("orphan dir");
    fs_err::write(vms_dir.join("lost-vm/work.ext4"), b"12345").expect("disk");
    fs_err::create_dir_all(vms_dir.join("Not_A_Name")).expect("odd dir");
    fs_err::write(vms_dir.join("stray-file"), b"x").expect("file");
    let (status, body) = send(
        &harness,
        request("GET", "/v1/orphans", Some(OWNER), Body::empty()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        serde_json::json!([
            {
                "name": "Not_A_Name",
                "dir": vms_dir.join("Not_A_Name").display().to_string(),
                "bytes": 0,
                "adoptable": false,
            },
            {
                "name": "lost-vm",
                "dir": vms_dir.join("lost-vm").display().to_string(),
                "bytes": 5,
                "adoptable": true,
            },
        ])
    );
    let (status, body) = send(
        &harness,
        request(
            "POST",
            "/v1/orphans/adopt",
            Some(OWNER),
            json_body(&serde_json::json!({"dir": "/etc", "surprise": 1})),
        ),
    )
    .await;
    assert!(status.is_client_error(), "{status}: {body}");
    assert_eq!(body["code"], "bad_request", "{body}");
    let (status, body) = send(
        &harness,
        request(
            "POST",
            "/v1/orphans/adopt",
            Some(OWNER),
            json_body(&serde_json::json!({"dir": "/etc/passwd"})),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(message_of(&body).contains("not a VM directory"), "{body}");
}

/// The next NDJSON event of an event stream body.
async fn next_event(body: &mut Body) -> Option<banger_api::events::DaemonEvent> {
    let frame = tokio::time::timeout(std::time::Duration::from_secs(10), body.frame())
        .await
        .expect("an event within 10 s")?
        .expect("a body frame");
    let data = frame.into_data().expect("a data frame");
    Some(serde_json::from_slice(&data).expect("one JSON event per frame"))
}

#[tokio::test]
async fn events_stream_changes_drop_a_client_that_falls_behind_and_end_at_shutdown() {
    use banger_api::events::EventKind;
    let temp = tempfile::tempdir().expect("tempdir");
    let (state, _shutdown) = AppState::for_tests(temp.path());
    let app = router(state.clone(), OwnerUid(OWNER));
    let open = || async {
        let response = app
            .clone()
            .oneshot(request("GET", "/v1/events", Some(OWNER), Body::empty()))
            .await
            .expect("infallible");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            banger_api::operation::NDJSON
        );
        response.into_body()
    };
    let created = |name: &str| EventKind::VmCreated {
        vm: banger_api::VmName::parse(name).expect("name"),
    };

    let mut watching = open().await;
    state.events().publish(created("first"));
    let event = next_event(&mut watching).await.expect("an event");
    assert_eq!(event.event, created("first"));
    assert!(event.seq >= 1 && event.time_unix_ms > 0);

    // A client that reads nothing while the daemon publishes far more than
    // the bus keeps: publishing does not wait for it, and its stream ends
    // with `lagged` once it reads again.
    let mut slow = open().await;
    let started = std::time::Instant::now();
    for n in 0..crate::events::CAPACITY + 100 {
        state.events().publish(created(&format!("n{n}")));
    }
    assert!(
        started.elapsed() < std::time::Duration::from_secs(2),
        "publishing waited for a slow client"
    );
    let mut last = None;
    while let Some(event) = next_event(&mut slow).await {
        last = Some(event);
    }
    assert!(
        matches!(last.map(|event| event.event), Some(EventKind::Lagged { missed }) if missed > 0),
        "the slow client's stream ends with lagged"
    );

    drop(watching);

    // Shutdown ends a quiet stream, so none holds the daemon's stop up.
    let mut quiet = open().await;
    state.request_shutdown();
    assert_eq!(next_event(&mut quiet).await, None, "the stream ended");
}
