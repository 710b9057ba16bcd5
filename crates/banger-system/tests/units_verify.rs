//! The rendered units pass `systemd-analyze verify`, and their exposure
//! scores (`systemd-analyze security --offline=true`) stay where
//! docs/privileges.md records them. Offline: systemd need not be PID 1.
//! The units are rendered with a temporary prefix holding stand-in
//! executables, since verify checks that `ExecStart=` is executable.

#![allow(clippy::unwrap_used, reason = "test helpers panic on setup failures")]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use banger_system::units::{self, DAEMON_UNIT, ROOT_UNIT};
use banger_system::{Layout, Owner};

fn have_systemd_analyze() -> bool {
    Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|output| output.status.success())
}

fn render_into(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let prefix = dir.join("prefix");
    let layout = Layout::with_prefix(&prefix);
    fs_err::create_dir_all(&layout.bin_dir).unwrap();
    for name in ["bangerd", "bangerd-root"] {
        let path = layout.bin_dir.join(name);
        fs_err::write(&path, "#!/bin/sh\nexit 0\n").unwrap();
        fs_err::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let owner = Owner {
        name: "dev".into(),
        uid: 1000,
        gid: 1000,
        group: "dev".into(),
        home: "/home/dev".into(),
    };
    let units_dir = dir.join("units");
    fs_err::create_dir_all(&units_dir).unwrap();
    for unit in units::render(&layout, &owner).unwrap() {
        fs_err::write(units_dir.join(unit.name), unit.text).unwrap();
    }
    (units_dir.join(ROOT_UNIT), units_dir.join(DAEMON_UNIT))
}

#[test]
fn rendered_units_pass_systemd_analyze_verify() {
    if !have_systemd_analyze() {
        banger_testkit::skip_or_fail("systemd-analyze is not installed (apt-get install systemd)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (root_unit, daemon_unit) = render_into(dir.path());
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&root_unit)
        .arg(&daemon_unit)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify: {}\n{stderr}",
        output.status
    );
}

/// The overall exposure `systemd-analyze security --offline=true` gives.
fn exposure(unit: &Path) -> f64 {
    let output = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(unit)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text
        .lines()
        .find(|line| line.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no exposure level in: {text}"));
    line.split(':')
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|score| score.parse().ok())
        .unwrap_or_else(|| panic!("unreadable exposure line: {line}"))
}

#[test]
fn unit_exposure_scores_stay_as_documented() {
    if !have_systemd_analyze() {
        banger_testkit::skip_or_fail("systemd-analyze is not installed (apt-get install systemd)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (root_unit, daemon_unit) = render_into(dir.path());
    let root = exposure(&root_unit);
    let daemon = exposure(&daemon_unit);
    eprintln!("exposure: {ROOT_UNIT} {root}, {DAEMON_UNIT} {daemon}");
    // docs/privileges.md, "Unit hardening", records these; update both together.
    assert!(root <= 2.1, "{ROOT_UNIT} exposure rose to {root}");
    assert!(daemon <= 7.0, "{DAEMON_UNIT} exposure rose to {daemon}");
}
