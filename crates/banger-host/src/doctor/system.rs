//! Doctor checks about the kernel and the filesystem: TUN, nftables, IPv4
//! forwarding, network privileges, free disk space and writable directories.

use std::path::Path;

use banger_config::{Paths, PathsError};

use super::Check;

use crate::net::firewall::FirewallError;
use crate::tools::{find_program, version_line};

/// Free space below which doctor fails: a base image alone is ~1 GiB.
const FAIL_BELOW_BYTES: u64 = 2 << 30;
/// Free space below which doctor warns.
const WARN_BELOW_BYTES: u64 = 10 << 30;
/// `CAP_NET_ADMIN`'s bit in the capability sets.
const CAP_NET_ADMIN: u32 = 12;

pub(super) fn tun_check() -> Check {
    match fs_err::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
    {
        Ok(_) => Check::pass("tun", "/dev/net/tun opens read-write"),
        Err(error) => Check::fail(
            "tun",
            format!("cannot open /dev/net/tun: {error}"),
            "sudo modprobe tun (and make sure /dev/net/tun exists)",
        ),
    }
}

pub(super) fn nftables_check() -> Check {
    match find_program(Path::new("nft")) {
        Some(path) => {
            let version =
                version_line(&path, &["--version"]).unwrap_or_else(|| "version unknown".into());
            Check::pass("nftables", format!("{} ({version})", path.display()))
        }
        None => Check::warn(
            "nftables",
            "nft not found; NAT for guests (vm --nat) will be unavailable",
            "sudo apt-get install nftables",
        ),
    }
}

/// Whether the effective capability set holds `CAP_NET_ADMIN`.
pub(super) fn has_net_admin() -> bool {
    fs_err::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|line| line.starts_with("CapEff:"))?;
            u64::from_str_radix(line.trim_start_matches("CapEff:").trim(), 16).ok()
        })
        .is_some_and(|capabilities| capabilities & (1 << CAP_NET_ADMIN) != 0)
}

pub(super) fn ip_forward_check() -> Check {
    let state = crate::net::firewall::ipv4_forwarding();
    ip_forward_verdict(state, has_net_admin())
}

/// The `ip-forward` line for a read of `net.ipv4.ip_forward` (`Ok(on)` or
/// why it failed) and whether banger could switch it on itself.
pub(super) fn ip_forward_verdict(state: Result<bool, FirewallError>, can_enable: bool) -> Check {
    const NAME: &str = "ip-forward";
    const FIX: &str = "sudo sysctl -w net.ipv4.ip_forward=1 (only needed for vm --nat)";
    match state {
        Ok(true) => Check::pass(
            NAME,
            "net.ipv4.ip_forward = 1: guests with --nat can reach the network",
        ),
        Ok(false) if can_enable => Check::pass(
            NAME,
            "net.ipv4.ip_forward = 0: banger turns it on when the first --nat VM starts",
        ),
        Ok(false) => Check::warn(
            NAME,
            "net.ipv4.ip_forward = 0 and no CAP_NET_ADMIN to turn it on: vm --nat guests cannot reach the network",
            FIX,
        ),
        Err(error) => Check::warn(
            NAME,
            format!(
                "cannot read IPv4 forwarding state: {}",
                crate::error_chain(&error)
            ),
            "make sure /proc/sys is mounted; vm --nat needs net.ipv4.ip_forward",
        ),
    }
}

pub(super) fn bridge_permission_check() -> Check {
    if has_net_admin() {
        Check::pass(
            "bridge-permissions",
            "CAP_NET_ADMIN held: banger can create its bridge and TAP devices",
        )
    } else {
        Check::warn(
            "bridge-permissions",
            "no CAP_NET_ADMIN: creating the bridge and TAP devices needs root",
            "sudo banger system install (the root helper does it for the owner)",
        )
    }
}

/// The nearest existing ancestor of `path` (statvfs needs an existing path).
fn existing_ancestor(path: &Path) -> &Path {
    let mut current = path;
    while !current.exists() {
        match current.parent() {
            Some(parent) => current = parent,
            None => break,
        }
    }
    current
}

pub(super) fn disk_space_check(state_dir: &Path) -> Check {
    let probe_path = existing_ancestor(state_dir);
    match rustix::fs::statvfs(probe_path) {
        Ok(stat) => {
            let free = stat.f_bavail.saturating_mul(stat.f_frsize);
            let gib = free as f64 / f64::from(1u32 << 30);
            let detail = format!("{gib:.1} GiB free for {}", state_dir.display());
            if free < FAIL_BELOW_BYTES {
                Check::fail(
                    "disk-space",
                    detail,
                    "free at least 2 GiB (10 GiB recommended) or set BANGER_STATE_DIR elsewhere",
                )
            } else if free < WARN_BELOW_BYTES {
                Check::warn(
                    "disk-space",
                    detail,
                    "free up space: images and VM disks need 10 GiB or more",
                )
            } else {
                Check::pass("disk-space", detail)
            }
        }
        Err(error) => Check::fail(
            "disk-space",
            format!(
                "cannot stat the filesystem of {}: {error}",
                probe_path.display()
            ),
            "make sure the state directory's filesystem is mounted and readable",
        ),
    }
}

/// Creates each directory if needed and writes and removes a probe file.
pub(super) fn xdg_dir_checks(paths: &Paths) -> Vec<Check> {
    [
        (
            "config-dir",
            &paths.config_dir,
            "BANGER_CONFIG_DIR or XDG_CONFIG_HOME",
        ),
        (
            "state-dir",
            &paths.state_dir,
            "BANGER_STATE_DIR or XDG_STATE_HOME",
        ),
        (
            "cache-dir",
            &paths.cache_dir,
            "BANGER_CACHE_DIR or XDG_CACHE_HOME",
        ),
        (
            "runtime-dir",
            &paths.runtime_dir,
            "BANGER_RUNTIME_DIR or XDG_RUNTIME_DIR",
        ),
    ]
    .into_iter()
    .map(|(name, dir, variables)| match probe_writable(dir) {
        Ok(()) => Check::pass(name, format!("{} is writable", dir.display())),
        Err(error) => Check::fail(
            name,
            format!(
                "{} is not writable: {}",
                dir.display(),
                crate::error_chain(&error)
            ),
            format!("fix its ownership/permissions or point {variables} at a writable directory"),
        ),
    })
    .collect()
}

/// Why a directory failed doctor's write probe.
#[derive(Debug, thiserror::Error)]
enum WritableError {
    /// Creating or securing the directory failed (the error names it).
    #[error(transparent)]
    Prepare(#[from] PathsError),
    /// Writing or removing the probe file failed (an `fs_err` error, which
    /// names the file).
    #[error(transparent)]
    ProbeFile(#[from] std::io::Error),
}

/// Makes sure `dir` exists privately, then writes and removes a probe file.
fn probe_writable(dir: &Path) -> Result<(), WritableError> {
    banger_config::paths::ensure_private_dir(dir)?;
    let probe = dir.join(format!(".doctor-probe-{}", std::process::id()));
    fs_err::write(&probe, b"probe")?;
    fs_err::remove_file(&probe)?;
    Ok(())
}
