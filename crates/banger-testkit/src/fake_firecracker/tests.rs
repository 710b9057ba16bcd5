//! Tests of the validator and the fake server against the real spec file.
//! Without the spec they fail under CI and report themselves SKIPPED
//! elsewhere (`crate::skip_or_fail`).

use super::*;

fn spec() -> Option<ApiSpec> {
    match ApiSpec::load_default() {
        Ok(spec) => Some(spec),
        Err(SpecLoadError::NotFound(reason)) => {
            crate::skip_or_fail(reason);
            None
        }
        Err(error) => panic!("spec does not load: {}", error_chain(&error)),
    }
}

#[test]
fn valid_requests_pass() {
    let Some(spec) = spec() else { return };
    assert_eq!(spec.version, "1.16.1");
    let ok = |method: &str, path: &str, body: Value| {
        let bytes = if body.is_null() {
            Vec::new()
        } else {
            body.to_string().into_bytes()
        };
        spec.check(method, path, &bytes)
            .unwrap_or_else(|e| panic!("{method} {path} {body}: {e}"))
    };
    ok("GET", "/", Value::Null);
    ok(
        "PUT",
        "/machine-config",
        json!({"vcpu_count": 2, "mem_size_mib": 512}),
    );
    ok(
        "PUT",
        "/drives/vda",
        json!({"drive_id": "vda", "path_on_host": "/a",
        "is_root_device": false, "is_read_only": true,
        "rate_limiter": {"bandwidth": {"size": 1, "refill_time": 100}}}),
    );
    let matched = ok("PUT", "/actions", json!({"action_type": "InstanceStart"}));
    assert_eq!(matched.template, "/actions");
    assert!(ok("PUT", "/boot-source", json!({"kernel_image_path": "/k"})).pre_boot_only);
    // additionalProperties: true allows anything.
    ok("PUT", "/mmds", json!({"anything": {"nested": 1}}));
}

#[test]
fn invalid_requests_are_refused_with_reasons() {
    let Some(spec) = spec() else { return };
    let refused = |method: &str, path: &str, body: &str, expect: &str| {
        let error = spec
            .check(method, path, body.as_bytes())
            .expect_err(path)
            .to_string();
        assert!(error.contains(expect), "{method} {path} {body}: {error}");
    };
    refused("PUT", "/nope", "{}", "Invalid request method and/or path");
    refused("DELETE", "/machine-config", "", "not defined");
    refused(
        "PUT",
        "/machine-config",
        r#"{"vcpu_count": 2}"#,
        "missing field `mem_size_mib`",
    );
    refused(
        "PUT",
        "/machine-config",
        r#"{"vcpu_count": 2, "mem_size_mib": 1, "bogus": 1}"#,
        "unknown field `bogus`",
    );
    refused(
        "PUT",
        "/machine-config",
        r#"{"vcpu_count": "2", "mem_size_mib": 1}"#,
        "invalid type",
    );
    refused(
        "PUT",
        "/machine-config",
        r#"{"vcpu_count": 33, "mem_size_mib": 1}"#,
        "maximum",
    );
    refused(
        "PUT",
        "/machine-config",
        r#"{"vcpu_count": 2.5, "mem_size_mib": 1}"#,
        "invalid type",
    );
    refused(
        "PUT",
        "/actions",
        r#"{"action_type": "Reboot"}"#,
        "unknown variant",
    );
    refused("PUT", "/actions", "", "Empty request body");
    refused("PUT", "/actions", "{not json", "deserializing");
    refused(
        "PUT",
        "/vsock",
        r#"{"guest_cid": 2, "uds_path": "/v"}"#,
        "minimum",
    );
    // Nested $ref: TokenBucket inside RateLimiter inside Drive.
    refused(
        "PUT",
        "/drives/vda",
        r#"{"drive_id": "vda", "is_root_device": false,
        "rate_limiter": {"bandwidth": {"size": 1}}}"#,
        "missing field `refill_time`",
    );
    refused(
        "PUT",
        "/drives/vda",
        r#"{"drive_id": "vdb", "is_root_device": false}"#,
        "does not match",
    );
    refused(
        "PUT",
        "/drives/",
        r#"{"drive_id": "", "is_root_device": false}"#,
        "Invalid request",
    );
    refused("GET", "/", "{}", "takes no body");
}

async fn http(socket: &Path, method: &str, path: &str, body: &str) -> (u16, String) {
    let stream = UnixStream::connect(socket).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("Host", "localhost")
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

#[tokio::test]
async fn server_enforces_state_and_records_everything() {
    let Some(spec) = spec() else { return };
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("fc.sock");
    let fake = FakeFirecracker::start(&socket, spec).unwrap();
    let start = r#"{"action_type": "InstanceStart"}"#;
    let (status, body) = http(&socket, "PUT", "/actions", start).await;
    assert_eq!(status, 400);
    assert!(body.contains("without kernel configuration"), "{body}");
    let (status, _) = http(
        &socket,
        "PUT",
        "/boot-source",
        r#"{"kernel_image_path": "/k"}"#,
    )
    .await;
    assert_eq!(status, 204);
    let uds = dir.path().join("v.sock");
    let vsock = json!({"guest_cid": 3, "uds_path": uds}).to_string();
    assert_eq!(http(&socket, "PUT", "/vsock", &vsock).await.0, 204);
    assert_eq!(http(&socket, "PUT", "/actions", start).await.0, 204);
    let (status, body) = http(&socket, "GET", "/", "").await;
    assert_eq!(status, 200);
    assert!(body.contains("\"Running\""), "{body}");
    // Pre-boot only after start.
    let (status, body) = http(
        &socket,
        "PUT",
        "/boot-source",
        r#"{"kernel_image_path": "/k"}"#,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    // Hybrid vsock echo.
    let mut stream = UnixStream::connect(&uds).await.unwrap();
    stream.write_all(b"CONNECT 1024\nping").await.unwrap();
    let mut buf = [0u8; 12];
    stream.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"OK 1024\nping");

    assert_eq!(
        http(
            &socket,
            "PUT",
            "/actions",
            r#"{"action_type": "SendCtrlAltDel"}"#
        )
        .await
        .0,
        204
    );
    tokio::time::timeout(Duration::from_secs(1), fake.ctrl_alt_del())
        .await
        .unwrap();
    let seen: Vec<(String, u16)> = fake
        .requests()
        .into_iter()
        .map(|r| (format!("{} {}", r.method, r.path), r.status))
        .collect();
    assert_eq!(
        seen,
        [
            ("PUT /actions".to_owned(), 400),
            ("PUT /boot-source".to_owned(), 204),
            ("PUT /vsock".to_owned(), 204),
            ("PUT /actions".to_owned(), 204),
            ("GET /".to_owned(), 200),
            ("PUT /boot-source".to_owned(), 400),
            ("PUT /actions".to_owned(), 204),
        ]
    );
}

#[test]
fn spec_is_found_upward_and_through_a_local_origin() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().canonicalize().expect("canonical");
    let spec = root.join(schema::SPEC_RELATIVE);
    fs_err::create_dir_all(spec.parent().expect("parent")).expect("mkdir");
    fs_err::write(&spec, "paths: {}\n").expect("spec");
    let checkout = root.join("main");
    let deep = checkout.join("a/b");
    fs_err::create_dir_all(&deep).expect("mkdir");
    assert_eq!(
        schema::find_upward(std::slice::from_ref(&deep)),
        Some(spec.clone())
    );

    // A clone elsewhere finds nothing above itself, but its origin does.
    let git = |args: &[&str], cwd: &Path| {
        let status = std::process::Command::new("git")
            .args(args)
            .current_dir(cwd)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("git runs");
        assert!(status.success(), "git {args:?}");
    };
    git(&["init", "-q"], &checkout);
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let clone = elsewhere.path().join("fresh");
    git(
        &[
            "clone",
            "-q",
            checkout.to_str().expect("utf-8"),
            clone.to_str().expect("utf-8"),
        ],
        elsewhere.path(),
    );
    let origin = schema::local_origin(&clone).expect("local origin");
    assert_eq!(origin, checkout);
    assert_eq!(schema::find_upward(&[clone.clone(), origin]), Some(spec));
    assert_eq!(schema::local_origin(&checkout), None, "no origin remote");
}

#[test]
fn not_found_says_where_it_looked() {
    let error = SpecNotFound::NotAbove {
        workspace: "/w".into(),
        origin: Some("/o".into()),
    };
    assert_eq!(
        error.to_string(),
        "Firecracker API spec not found: no shared/firecracker/firecracker.yaml in or above /w \
         nor in or above its origin /o; set BANGER_FC_SPEC to the path of firecracker.yaml"
    );
    let error = SpecNotFound::NotAbove {
        workspace: "/w".into(),
        origin: None,
    };
    assert!(error.to_string().contains("in or above /w; set"), "{error}");
}
