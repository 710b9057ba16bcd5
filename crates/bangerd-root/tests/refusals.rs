//! `bangerd-root` refuses, each in its own test: peers with another uid,
//! TAP names banger would not make, interfaces that are not banger's,
//! networks outside the allowed ones, garbage and oversized frames, and a
//! slow client cannot hold up another. The helper serves a `FakeNetwork`
//! here (the refusals happen before any operation); `netns.rs` runs the
//! real operations.

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::time::{Duration, Instant};

use banger_host::root_helper::proto::{self, Reply, Response};
use banger_testkit::fake_network::CallKind;
use common::{BRIDGE, FakeServer, OTHER, OWNER, Outcome, Step, code, run_client, spawn_client};

/// The entry point of the client processes (a no-op in a normal run).
#[test]
fn client_mode() {
    common::client_mode();
}

fn send(text: &str) -> Step {
    Step::Send(text.to_owned())
}

const HELLO: &str = r#""hello""#;

fn server() -> FakeServer {
    FakeServer::start(Duration::from_secs(10))
}

#[test]
fn the_owner_is_served() {
    let server = server();
    let outcomes = run_client(&server.socket, OWNER, &[send(HELLO)]);
    match &outcomes[..] {
        [Outcome::Reply(Response::Ok(Reply::Hello(hello)))] => {
            assert_eq!(hello.owner_uid, OWNER);
            assert_eq!(hello.bridge.as_str(), BRIDGE);
        }
        other => panic!("expected a hello reply, got {other:?}"),
    }
    let mode = fs_err::metadata(&server.socket).expect("socket");
    use std::os::unix::fs::MetadataExt as _;
    assert_eq!(mode.mode() & 0o777, 0o600);
    assert_eq!(mode.uid(), OWNER);
}

#[test]
fn a_peer_with_another_uid_is_refused() {
    let server = server();
    // First layer: the socket is the owner's, mode 0600.
    let outcomes = run_client(&server.socket, OTHER, &[send(HELLO)]);
    assert_eq!(outcomes, [Outcome::Denied]);
    // The real gate does not depend on the mode: with the socket opened up,
    // the peer's uid (SO_PEERCRED) is still refused.
    fs_err::set_permissions(&server.socket, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    let outcomes = run_client(&server.socket, OTHER, &[send(HELLO)]);
    assert_eq!(
        code(&outcomes[0]).as_deref(),
        Some("refused"),
        "{outcomes:?}"
    );
    // Root is not the owner either: the helper serves only the owner.
    let mut stream = std::os::unix::net::UnixStream::connect(&server.socket).expect("connect");
    let body = proto::read_frame_blocking(&mut stream).expect("refusal");
    let response: Response = serde_json::from_slice(&body).expect("response");
    assert!(
        matches!(&response, Response::Err(error) if error.code.as_str() == "refused"),
        "{response:?}"
    );
    assert!(server.net.calls().is_empty());
}

#[test]
fn a_tap_name_banger_would_not_make_is_refused() {
    let server = server();
    let outcomes = run_client(
        &server.socket,
        OWNER,
        &[
            send(&format!(
                r#"{{"create_tap": {{"tap": "eth0", "bridge": "{BRIDGE}"}}}}"#
            )),
            send(r#"{"delete_tap": {"tap": "bgtap01"}}"#),
            send(r#"{"delete_tap": {"tap": "../../x"}}"#),
        ],
    );
    let codes: Vec<_> = outcomes.iter().map(code).collect();
    assert_eq!(
        codes,
        vec![Some("bad_request".to_owned()); 3],
        "{outcomes:?}"
    );
    assert!(server.net.calls().is_empty());
}

#[test]
fn an_interface_that_is_not_banger_s_is_refused() {
    let server = server();
    let outcomes = run_client(
        &server.socket,
        OWNER,
        &[
            send(r#"{"ensure_bridge": {"bridge": "eth0", "ip": "10.213.0.1", "prefix": 24}}"#),
            send(r#"{"delete_bridge": {"bridge": "docker0"}}"#),
            send(r#"{"create_tap": {"tap": "bgtap0", "bridge": "virbr0"}}"#),
            send(r#"{"route_vm_domain": {"bridge": "lo", "server": "127.0.0.1:53"}}"#),
            // The installed bridge is accepted (the fake records the call).
            send(&format!(r#"{{"delete_bridge": {{"bridge": "{BRIDGE}"}}}}"#)),
        ],
    );
    let codes: Vec<_> = outcomes.iter().map(code).collect();
    assert_eq!(
        codes,
        [
            Some("forbidden".to_owned()),
            Some("forbidden".to_owned()),
            Some("forbidden".to_owned()),
            Some("forbidden".to_owned()),
            None
        ],
        "{outcomes:?}"
    );
    assert_eq!(server.net.calls().len(), 1);
    assert_eq!(server.net.count(CallKind::DeleteBridge), 1);
}

#[test]
fn networks_and_addresses_outside_the_allowed_ones_are_refused() {
    let server = server();
    let firewall = |cidr: &str, bridge_ip: &str| {
        format!(
            r#"{{"apply_firewall": {{"state": {{"bridge": "{BRIDGE}", "bridge_ip": "{bridge_ip}",
                "cidr": "{cidr}", "dns_ports": [53], "allowed_host_ports": [], "guests": []}}}}}}"#
        )
    };
    let outcomes = run_client(
        &server.socket,
        OWNER,
        &[
            send(&format!(
                r#"{{"ensure_bridge": {{"bridge": "{BRIDGE}", "ip": "192.168.1.1", "prefix": 24}}}}"#
            )),
            // Inside the allowed /24 but wider than it.
            send(&format!(
                r#"{{"ensure_bridge": {{"bridge": "{BRIDGE}", "ip": "10.213.0.1", "prefix": 16}}}}"#
            )),
            send(&firewall("192.168.1.0/24", "192.168.1.1")),
            send(&format!(
                r#"{{"route_vm_domain": {{"bridge": "{BRIDGE}", "server": "8.8.8.8:53"}}}}"#
            )),
            // What the install allows passes.
            send(&format!(
                r#"{{"ensure_bridge": {{"bridge": "{BRIDGE}", "ip": "10.213.0.1", "prefix": 24}}}}"#
            )),
            send(&firewall("10.213.0.0/24", "10.213.0.1")),
        ],
    );
    let codes: Vec<_> = outcomes.iter().map(code).collect();
    assert_eq!(
        codes,
        [
            Some("forbidden".to_owned()),
            Some("forbidden".to_owned()),
            Some("forbidden".to_owned()),
            Some("forbidden".to_owned()),
            None,
            None
        ],
        "{outcomes:?}"
    );
    assert_eq!(
        server.net.calls().len(),
        2,
        "only the allowed requests reached the operations"
    );
}

#[test]
fn garbage_frames_get_bad_request_and_the_connection_stays_usable() {
    let server = server();
    let mut binary = 6u32.to_be_bytes().to_vec();
    binary.extend_from_slice(&[0xff, 0x00, 0xfe, 0x01, 0x80, 0x7f]);
    let outcomes = run_client(
        &server.socket,
        OWNER,
        &[
            send("not json at all"),
            Step::Raw(binary),
            send(r#"{"run_command": {"argv": ["sh", "-c", "id"]}}"#),
            send(r#"{"create_tap": {"tap": "bgtap0", "bridge": "bgrtest0", "owner_uid": 0}}"#),
            send(HELLO),
        ],
    );
    let codes: Vec<_> = outcomes.iter().map(code).collect();
    assert_eq!(
        codes,
        [
            Some("bad_request".to_owned()),
            Some("bad_request".to_owned()),
            Some("bad_request".to_owned()),
            Some("bad_request".to_owned()),
            None
        ],
        "{outcomes:?}"
    );
    // A frame cut short by a client that goes away does not stop the server.
    let outcomes = run_client(&server.socket, OWNER, &[Step::Raw(vec![0, 0, 0, 50, b'{'])]);
    assert!(outcomes.is_empty() || outcomes == [Outcome::Closed] || code(&outcomes[0]).is_some());
    let outcomes = run_client(&server.socket, OWNER, &[send(HELLO)]);
    assert_eq!(code(&outcomes[0]), None, "still serving: {outcomes:?}");
    assert!(server.net.calls().is_empty());
}

#[test]
fn oversized_frames_are_refused_without_reading_them() {
    let server = server();
    for len in [u32::MAX, proto::MAX_FRAME + 1] {
        let outcomes = run_client(
            &server.socket,
            OWNER,
            &[Step::Raw(len.to_be_bytes().to_vec()), send(HELLO)],
        );
        assert_eq!(
            outcomes.iter().map(code).collect::<Vec<_>>(),
            [Some("too_large".to_owned()), Some("closed".to_owned())],
            "{outcomes:?}"
        );
    }
    let outcomes = run_client(&server.socket, OWNER, &[send(HELLO)]);
    assert_eq!(code(&outcomes[0]), None, "still serving: {outcomes:?}");
}

#[test]
fn a_slow_client_times_out_while_another_is_served_promptly() {
    let server = FakeServer::start(Duration::from_secs(3));
    // 11 bytes at one a second: longer than the 3 s frame limit.
    let slow = spawn_client(&server.socket, OWNER, &[Step::Slow(HELLO.to_owned())]);
    std::thread::sleep(Duration::from_millis(1500));
    let started = Instant::now();
    let outcomes = run_client(&server.socket, OWNER, &[send(HELLO)]);
    let took = started.elapsed();
    assert_eq!(code(&outcomes[0]), None, "{outcomes:?}");
    assert!(
        took < Duration::from_secs(2),
        "the fast client took {took:?}"
    );
    let slow = common::outcomes(slow);
    assert_eq!(
        code(&slow[0]).as_deref(),
        Some("timeout"),
        "the slow client: {slow:?}"
    );
}
