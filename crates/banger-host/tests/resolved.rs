//! The resolved integration against a fake `resolvectl` that records its
//! arguments, and detection against a fake filesystem root.

use fs_err as fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use banger_host::net::resolved::{self, Integration, Resolvectl, ResolvedError};

/// A fake resolvectl: prints `systemd VERSION` for --version, appends its
/// arguments to `calls`, and fails (with a message) for `fail_on`.
fn fake_resolvectl(dir: &Path, version: u32, fail_on: &str) -> PathBuf {
    let calls = dir.join("calls");
    let script = dir.join("resolvectl");
    banger_testkit::write_executable(
        &script,
        &format!(
            "#!/bin/sh\n\
             if [ \"$1\" = --version ]; then echo 'systemd {version} ({version}.1-1)'; exit 0; fi\n\
             echo \"$*\" >> '{calls}'\n\
             if [ \"$1\" = '{fail_on}' ]; then echo \"Failed to set {fail_on}: Access denied\" >&2; exit 1; fi\n\
             exit 0\n",
            calls = calls.display()
        ),
    );
    script
}

fn calls(dir: &Path) -> Vec<String> {
    fs::read_to_string(dir.join("calls"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn configure_and_revert_a_link() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ctl = Resolvectl::at(fake_resolvectl(dir.path(), 252, "none"));
    assert_eq!(ctl.version().expect("version"), 252);

    let server: SocketAddr = "172.16.0.1:42069".parse().expect("addr");
    let config = ctl.configure_link("banger0", server).expect("configure");
    assert_eq!(
        calls(dir.path()),
        [
            "dns banger0 172.16.0.1:42069",
            "domain banger0 ~vm",
            "default-route banger0 false"
        ]
    );
    assert_eq!(config.domain, "~vm");
    assert_eq!(config.commands.len(), 3);
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);

    ctl.revert_link("banger0").expect("revert");
    assert_eq!(
        calls(dir.path()).last().map(String::as_str),
        Some("revert banger0")
    );

    // Port 53 is spelled without a port, which every version understands.
    fs::remove_file(dir.path().join("calls")).expect("reset");
    let server: SocketAddr = "172.16.0.1:53".parse().expect("addr");
    ctl.configure_link("banger0", server).expect("configure");
    assert_eq!(calls(dir.path())[0], "dns banger0 172.16.0.1");
}

#[test]
fn old_resolved_and_loopback_servers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let old = Resolvectl::at(fake_resolvectl(dir.path(), 245, "none"));
    let server: SocketAddr = "172.16.0.1:42069".parse().expect("addr");
    let err = old.configure_link("banger0", server).expect_err("no ports");
    assert!(
        matches!(&err, ResolvedError::PortUnsupported { version: 245, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("172.16.0.1:53"), "{err}");
    assert!(calls(dir.path()).is_empty(), "nothing was changed");

    let dir = tempfile::tempdir().expect("tempdir");
    let ctl = Resolvectl::at(fake_resolvectl(dir.path(), 252, "none"));
    let config = ctl
        .configure_link("banger0", "127.0.0.1:42069".parse().expect("addr"))
        .expect("configure");
    assert!(
        config.warnings[0].contains("#25397"),
        "{:?}",
        config.warnings
    );
}

#[test]
fn failures_carry_the_command_and_stderr() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ctl = Resolvectl::at(fake_resolvectl(dir.path(), 252, "domain"));
    let err = ctl
        .configure_link("banger0", "172.16.0.1:53".parse().expect("addr"))
        .expect_err("domain fails");
    let text = err.to_string();
    assert!(text.contains("domain banger0 ~vm"), "{text}");
    assert!(text.contains("Access denied"), "{text}");

    // A failing default-route (old systemd) is only a warning.
    let dir = tempfile::tempdir().expect("tempdir");
    let ctl = Resolvectl::at(fake_resolvectl(dir.path(), 239, "default-route"));
    let config = ctl
        .configure_link("banger0", "172.16.0.1:53".parse().expect("addr"))
        .expect("configure");
    assert_eq!(config.commands.len(), 2);
    assert_eq!(config.warnings.len(), 1);

    let err = ctl
        .configure_link("-x", "172.16.0.1:53".parse().expect("addr"))
        .expect_err("bad link");
    assert!(matches!(err, ResolvedError::InvalidLink { .. }));
    let missing = Resolvectl::at(dir.path().join("no-such-resolvectl"));
    assert!(matches!(
        missing.revert_link("banger0"),
        Err(ResolvedError::Spawn { .. })
    ));
}

#[test]
fn detection() {
    let root = tempfile::tempdir().expect("tempdir");
    let bin = root.path().join("bin");
    fs::create_dir_all(&bin).expect("mkdir");

    // No resolvectl on PATH.
    let integration = resolved::detect_in(root.path(), Some(bin.as_os_str()));
    assert!(
        matches!(integration, Integration::Manual { .. }),
        "{integration:?}"
    );

    // Installed, but not running: no socket, no runtime directory.
    fake_resolvectl(&bin, 252, "none");
    let integration = resolved::detect_in(root.path(), Some(bin.as_os_str()));
    let Integration::Manual { reason } = integration else {
        panic!("expected manual: {integration:?}");
    };
    assert!(reason.contains("not running"), "{reason}");

    // Running: its varlink socket accepts connections.
    let run = root.path().join("run/systemd/resolve");
    fs::create_dir_all(&run).expect("mkdir");
    let _listener = std::os::unix::net::UnixListener::bind(run.join("io.systemd.Resolve"))
        .expect("bind fake varlink socket");
    fs::create_dir_all(root.path().join("etc")).expect("mkdir");
    fs::write(
        root.path().join("etc/resolv.conf"),
        "nameserver 127.0.0.53\n",
    )
    .expect("write");
    let integration = resolved::detect_in(root.path(), Some(bin.as_os_str()));
    assert_eq!(
        integration,
        Integration::Resolved {
            resolvectl: bin.join("resolvectl"),
            stub_resolv_conf: true,
        }
    );
}
