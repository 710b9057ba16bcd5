//! End-to-end: a real `sshd` on loopback with a banger-generated host key,
//! reached with `ssh_command` through banger's known_hosts and
//! `HostKeyAlias`.
//!
//! Needs `/usr/sbin/sshd` (openssh-server) and `ssh` (openssh-client);
//! without sshd it fails under CI and reports itself SKIPPED elsewhere
//! (`banger_testkit::skip_or_fail`). sshd runs in the
//! foreground under a guard that kills it when the test ends or fails.

use fs_err as fs;
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use banger_host::ssh::{
    SshTarget, TtyMode, ensure_user_key, generate_host_key, set_host, ssh_command, wait_for_ssh,
};

const SSHD: &str = "/usr/sbin/sshd";
const ALIAS: &str = "devbox.vm";

/// Kills and reaps sshd when dropped.
struct SshdGuard {
    child: Child,
    log: PathBuf,
}

impl SshdGuard {
    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for SshdGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

fn current_user() -> String {
    let output = Command::new("id").arg("-un").output().expect("id -un");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn write_mode(path: &Path, contents: &str, mode: u32) {
    fs::write(path, contents).expect("write");
    fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn run(mut command: Command) -> Output {
    command.stdin(Stdio::null()).output().expect("run ssh")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_to_a_real_sshd_with_pinned_host_key() {
    if !Path::new(SSHD).exists() {
        banger_testkit::skip_or_fail(format!(
            "{SSHD} not installed (apt-get install openssh-server)"
        ));
        return;
    }
    let ssh = banger_host::tools::find_program(Path::new("ssh")).expect("ssh client on PATH");
    if rustix::process::geteuid().is_root() {
        // sshd's privilege separation directory.
        fs::create_dir_all("/run/sshd").expect("create /run/sshd");
    }

    let dir = tempfile::tempdir().expect("tempdir");
    // Key files live in a directory whose name needs escaping for ssh.
    let key_dir = dir.path().join("state dir 100%");
    let user_key = ensure_user_key(&key_dir.join("id_ed25519")).expect("user key");
    let known_hosts = key_dir.join("known_hosts");

    let host_key = generate_host_key().expect("host key");
    let host_key_path = dir.path().join("ssh_host_ed25519_key");
    write_mode(&host_key_path, &host_key.private_openssh, 0o600);
    let authorized = dir.path().join("authorized_keys");
    write_mode(
        &authorized,
        &format!("{}\n", user_key.public_key_line),
        0o600,
    );
    let config = dir.path().join("sshd_config");
    write_mode(&config, "", 0o600);
    let log = dir.path().join("sshd.log");

    let port = free_port();
    let child = Command::new(SSHD)
        .arg("-D")
        .arg("-e")
        .arg("-f")
        .arg(&config)
        .arg("-p")
        .arg(port.to_string())
        .arg("-h")
        .arg(&host_key_path)
        .arg("-o")
        .arg("ListenAddress=127.0.0.1")
        .arg("-o")
        .arg(format!("AuthorizedKeysFile={}", authorized.display()))
        .arg("-o")
        .arg("PidFile=none")
        .arg("-o")
        .arg("UsePAM=no")
        .arg("-o")
        .arg("StrictModes=no")
        .arg("-o")
        .arg("PermitRootLogin=prohibit-password")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log).expect("log file").into_file())
        .spawn()
        .expect("start sshd");
    let sshd = SshdGuard { child, log };

    let took = match wait_for_ssh(Ipv4Addr::LOCALHOST, port, Duration::from_secs(10)).await {
        Ok(took) => took,
        Err(error) => panic!("{error}\nsshd log:\n{}", sshd.log()),
    };
    eprintln!("sshd answered after {took:?}");

    let target = SshTarget {
        user: current_user(),
        ip: Ipv4Addr::LOCALHOST,
        port,
        alias: ALIAS.to_owned(),
        identity: user_key.private_key.clone(),
        known_hosts: known_hosts.clone(),
    };
    let args = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();

    // 1. No entry for the alias yet: refused, without a prompt.
    let output = run(ssh_command(&ssh, &target, &args(&["true"]), TtyMode::Batch));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(255), "unknown host: {stderr}");
    assert!(
        stderr.contains("Host key verification failed"),
        "unknown host: {stderr}"
    );
    assert!(
        !known_hosts.exists() || fs::read_to_string(&known_hosts).expect("read").is_empty(),
        "ssh must not add keys to banger's known_hosts"
    );

    // 2. Pinned: the exit status comes through.
    set_host(&known_hosts, ALIAS, &host_key.public_line).expect("pin");
    let pinned = fs::read_to_string(&known_hosts).expect("read");
    let output = run(ssh_command(
        &ssh,
        &target,
        &args(&["sh", "-c", "exit 7"]),
        TtyMode::Batch,
    ));
    assert_eq!(
        output.status.code(),
        Some(7),
        "stderr: {}\nsshd log:\n{}",
        String::from_utf8_lossy(&output.stderr),
        sshd.log()
    );

    // 3. Arguments with spaces, quotes and shell syntax arrive intact.
    let tricky = [
        "two  spaces",
        "it's \"quoted\"",
        "$HOME `id` $(id) ${PATH}",
        "",
        "semi;colon|pipe&amp",
        "* ? ~ # !",
        "back\\slash",
        "new\nline",
    ];
    let mut command = vec!["printf", "%s\\n"];
    command.extend(tricky);
    let output = run(ssh_command(&ssh, &target, &args(&command), TtyMode::Batch));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let expected: String = tricky.iter().map(|s| format!("{s}\n")).collect();
    assert_eq!(String::from_utf8_lossy(&output.stdout), expected);

    // ssh wrote nothing into banger's known_hosts.
    assert_eq!(fs::read_to_string(&known_hosts).expect("read"), pinned);

    // 4. A different key pinned for the alias: ssh refuses, no prompt,
    //    in both modes.
    let impostor = generate_host_key().expect("other key");
    set_host(&known_hosts, ALIAS, &impostor.public_line).expect("re-pin");
    for mode in [TtyMode::Batch, TtyMode::Interactive] {
        let output = run(ssh_command(&ssh, &target, &args(&["true"]), mode));
        let stderr = String::from_utf8_lossy(&output.stderr);
        eprintln!("changed key, {mode:?}: ssh said:\n{stderr}");
        assert_eq!(output.status.code(), Some(255), "{mode:?}: {stderr}");
        assert!(
            stderr.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
                && stderr.contains("Host key verification failed"),
            "{mode:?}: {stderr}"
        );
    }
    assert_eq!(
        fs::read_to_string(&known_hosts).expect("read"),
        format!("{ALIAS} {}\n", impostor.public_line),
        "ssh must not rewrite banger's known_hosts"
    );

    drop(sshd);
}
