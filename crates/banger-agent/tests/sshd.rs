//! The agent's SSH server (`banger_agent::sshd`) against the system `ssh`
//! client, driven exactly as banger drives it (`ssh_command`: banger's
//! known_hosts, `HostKeyAlias`, `StrictHostKeyChecking=yes`): exec with exit
//! status, stdout and stderr apart, stdin with EOF, a PTY, a changed host
//! key and an unknown client key refused. Runs on 127.0.0.1, ~2 s.

#![allow(clippy::unwrap_used)]

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use banger_host::ssh::{
    SshTarget, TtyMode, ensure_user_key, generate_host_key, set_host, ssh_command, wait_for_ssh,
};

const ALIAS: &str = "busybox.vm";

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

struct Fixture {
    _temp: tempfile::TempDir,
    target: SshTarget,
    host_pub: String,
}

/// Host key and authorized_keys in a temp dir, the server on a free port
/// in a thread of its own (it ends with the test process).
fn start() -> Fixture {
    let temp = tempfile::tempdir().unwrap();
    let keys = temp.path().join("etc-ssh");
    fs_err::create_dir_all(&keys).unwrap();
    let host = generate_host_key().unwrap();
    fs_err::write(keys.join("ssh_host_ed25519_key"), &host.private_openssh).unwrap();
    let user = ensure_user_key(&temp.path().join("id_ed25519")).unwrap();
    let authorized = temp.path().join("authorized_keys");
    fs_err::write(&authorized, format!("{}\n", user.public_key_line)).unwrap();
    let known_hosts = temp.path().join("known_hosts");
    set_host(&known_hosts, ALIAS, &host.public_line).unwrap();
    let port = free_port();
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime
            .block_on(banger_agent::sshd::serve(address, &keys, authorized))
            .unwrap();
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime
        .block_on(wait_for_ssh(
            Ipv4Addr::LOCALHOST,
            port,
            Duration::from_secs(10),
        ))
        .unwrap();
    Fixture {
        target: SshTarget {
            user: "root".to_owned(),
            ip: Ipv4Addr::LOCALHOST,
            port,
            alias: ALIAS.to_owned(),
            identity: temp.path().join("id_ed25519"),
            known_hosts,
        },
        host_pub: host.public_line,
        _temp: temp,
    }
}

fn ssh(target: &SshTarget, command: &[&str], tty: TtyMode, stdin: &[u8]) -> Output {
    let argv: Vec<String> = command.iter().map(|arg| (*arg).to_owned()).collect();
    let mut command = ssh_command(Path::new("ssh"), target, &argv, tty);
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    {
        use std::io::Write;
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin).unwrap();
    }
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn the_agents_ssh_server_serves_banger_s_ssh_command_line() {
    if Command::new("ssh").arg("-V").output().is_err() {
        banger_testkit::skip_or_fail("the ssh client (openssh-client) is not installed");
        return;
    }
    let fixture = start();
    let target = &fixture.target;

    // exec: arguments quoted by banger, output apart, the exit status back.
    let out = ssh(
        target,
        &["sh", "-c", "echo out; echo 'e r r' >&2; exit 7"],
        TtyMode::Batch,
        b"",
    );
    assert_eq!(out.status.code(), Some(7), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "out\n");
    assert!(text(&out.stderr).contains("e r r"), "{}", text(&out.stderr));

    // stdin to EOF, binary-safe.
    let data: Vec<u8> = (0..=255u8).cycle().take(200_000).collect();
    let out = ssh(target, &["cat"], TtyMode::Batch, &data);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(out.stdout, data);

    // The environment a command sees.
    let out = ssh(
        target,
        &["sh", "-c", "echo $HOME:$USER:$PWD"],
        TtyMode::Batch,
        b"",
    );
    assert_eq!(text(&out.stdout).trim(), "/root:root:/root");

    // A PTY (`-tt`: forced, since the test has no terminal).
    let mut command = Command::new("ssh");
    command
        .args(["-tt", "-i"])
        .arg(&target.identity)
        .args(["-o", "IdentitiesOnly=yes", "-o"])
        .arg(format!(
            "UserKnownHostsFile={}",
            target.known_hosts.display()
        ))
        .args([
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            &format!("HostKeyAlias={ALIAS}"),
            "-o",
            "BatchMode=yes",
            "-o",
            "LogLevel=ERROR",
            "-p",
            &target.port.to_string(),
            "root@127.0.0.1",
            "tty; stty size",
        ])
        .stdin(Stdio::null());
    let out = command.output().unwrap();
    let shown = text(&out.stdout);
    assert!(out.status.success(), "{shown} {}", text(&out.stderr));
    assert!(shown.starts_with("/dev/pts/"), "{shown}");

    // Strict host key checking: another key pinned for the alias is refused.
    let other = generate_host_key().unwrap();
    set_host(&target.known_hosts, ALIAS, &other.public_line).unwrap();
    let out = ssh(target, &["true"], TtyMode::Batch, b"");
    assert_eq!(out.status.code(), Some(255));
    assert!(
        text(&out.stderr).contains("IDENTIFICATION HAS CHANGED"),
        "{}",
        text(&out.stderr)
    );
    set_host(&target.known_hosts, ALIAS, &fixture.host_pub).unwrap();

    // A client key that is not in authorized_keys, and another user.
    let stranger = tempfile::tempdir().unwrap();
    ensure_user_key(&stranger.path().join("id")).unwrap();
    let mut wrong = target.clone();
    wrong.identity = stranger.path().join("id");
    let out = ssh(&wrong, &["true"], TtyMode::Batch, b"");
    assert_eq!(out.status.code(), Some(255), "{}", text(&out.stderr));
    let mut nobody = target.clone();
    nobody.user = "nobody".to_owned();
    let out = ssh(&nobody, &["true"], TtyMode::Batch, b"");
    assert_eq!(out.status.code(), Some(255), "{}", text(&out.stderr));

    // And the right one still works.
    let out = ssh(target, &["echo", "ok"], TtyMode::Batch, b"");
    assert_eq!(text(&out.stdout), "ok\n");
}
