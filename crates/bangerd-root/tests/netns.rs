//! The real `bangerd-root` binary with the real network operations, inside
//! a network namespace this test creates: a TAP made through the helper is
//! owned by the installed owner and deleted again, and SIGTERM removes the
//! socket. The client is another process running as the owner's uid.

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use banger_host::root_helper::proto::{Reply, Response};
use banger_testkit::netns::NetNs;
use common::{BRIDGE, OWNER, Outcome, Step, code, run_client};

/// The entry point of the client processes (a no-op in a normal run).
#[test]
fn client_mode() {
    common::client_mode();
}

fn in_namespace(ns: &NetNs, program: &str, args: &[&str]) -> std::process::Output {
    let mut command = Command::new(program);
    command.args(args);
    ns.wrap(&command).output().expect("ip netns exec runs")
}

#[test]
fn a_tap_made_through_the_helper_belongs_to_the_owner() {
    if !rustix::process::geteuid().is_root() || !std::path::Path::new("/dev/net/tun").exists() {
        banger_testkit::skip_or_fail("needs root and /dev/net/tun");
        return;
    }
    let ns = NetNs::new("broot");
    let dir = common::open_tempdir();
    let socket = dir.path().join("run/root.sock");
    let metadata_path = dir.path().join("install.toml");
    let text = common::metadata(&socket).to_toml().expect("toml");
    fs_err::write(&metadata_path, text).expect("metadata");
    fs_err::set_permissions(&metadata_path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let log = dir.path().join("helper.log");
    let mut helper = ns
        .wrap(
            Command::new(env!("CARGO_BIN_EXE_bangerd-root"))
                .arg("--metadata")
                .arg(&metadata_path)
                .env("RUST_LOG", "info"),
        )
        .stdout(Stdio::null())
        .stderr(fs_err::File::create(&log).expect("log").into_parts().0)
        .spawn()
        .expect("start bangerd-root");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !socket.exists() {
        if let Some(status) = helper.try_wait().expect("wait") {
            panic!(
                "bangerd-root exited ({status}): {}",
                fs_err::read_to_string(&log).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "no socket after 10 s");
        std::thread::sleep(Duration::from_millis(20));
    }

    let request = |text: String| Step::Send(text);
    let outcomes = run_client(
        &socket,
        OWNER,
        &[
            request(format!(
                r#"{{"ensure_bridge": {{"bridge": "{BRIDGE}", "ip": "10.213.0.1", "prefix": 24}}}}"#
            )),
            request(format!(
                r#"{{"create_tap": {{"tap": "bgtap0", "bridge": "{BRIDGE}"}}}}"#
            )),
            request(format!(
                r#"{{"create_tap": {{"tap": "bgtap0", "bridge": "{BRIDGE}"}}}}"#
            )),
            request(r#""list_banger_taps""#.to_owned()),
        ],
    );
    let codes: Vec<_> = outcomes.iter().map(code).collect();
    assert_eq!(
        codes,
        [None, None, Some("exists".to_owned()), None],
        "{outcomes:?}"
    );
    assert!(matches!(
        &outcomes[3],
        Outcome::Reply(Response::Ok(Reply::Taps(taps))) if taps.len() == 1 && taps[0].as_str() == "bgtap0"
    ));
    let owner = in_namespace(&ns, "cat", &["/sys/class/net/bgtap0/owner"]);
    assert_eq!(
        String::from_utf8_lossy(&owner.stdout).trim(),
        OWNER.to_string(),
        "the TAP's owner"
    );
    let master = in_namespace(&ns, "readlink", &["/sys/class/net/bgtap0/master"]);
    assert!(
        String::from_utf8_lossy(&master.stdout)
            .trim()
            .ends_with(BRIDGE),
        "the TAP is a port of the bridge"
    );

    let outcomes = run_client(
        &socket,
        OWNER,
        &[
            request(r#"{"delete_tap": {"tap": "bgtap0"}}"#.to_owned()),
            request(r#""list_banger_taps""#.to_owned()),
            request(format!(r#"{{"delete_bridge": {{"bridge": "{BRIDGE}"}}}}"#)),
        ],
    );
    assert_eq!(
        outcomes.iter().map(code).collect::<Vec<_>>(),
        [None, None, None],
        "{outcomes:?}"
    );
    assert!(matches!(
        &outcomes[1],
        Outcome::Reply(Response::Ok(Reply::Taps(taps))) if taps.is_empty()
    ));
    let gone = in_namespace(&ns, "test", &["-e", "/sys/class/net/bgtap0"]);
    assert!(!gone.status.success(), "bgtap0 still exists");

    let pid =
        rustix::process::Pid::from_raw(i32::try_from(helper.id()).expect("pid")).expect("pid");
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).expect("SIGTERM");
    let status = helper.wait().expect("wait");
    assert!(status.success(), "bangerd-root exit: {status}");
    assert!(!socket.exists(), "SIGTERM removes the socket");
    let log = fs_err::read_to_string(&log).expect("log");
    assert!(log.contains("create_tap"), "{log}");
    assert!(log.contains(&format!("uid={OWNER}")), "{log}");
}
