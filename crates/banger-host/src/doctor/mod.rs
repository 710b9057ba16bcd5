//! `banger doctor`: every host prerequisite as a pass/warn/fail line.
//!
//! Each check is independent and returns a [`Check`]; a warning or failure
//! always carries a one-line fix. The CLI prints them (or JSON) and exits
//! non-zero when anything failed.

mod root_helper;
mod system;

use std::path::Path;

use banger_config::{Config, Paths};
use serde::Serialize;

use crate::kvm::{self, KvmVerdict};
use crate::tools::{find_program, is_static_elf, version_line};
use crate::vmm_choice::{self, Backend};

/// Outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Fine.
    Pass,
    /// Works, but something is missing or degraded.
    Warn,
    /// banger cannot work until this is fixed.
    Fail,
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Short stable identifier, e.g. `kvm`.
    pub name: &'static str,
    /// The verdict.
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// How to fix it; always set for warn and fail.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    fn pass(name: &'static str, detail: impl Into<String>) -> Self {
        Self {
            name,
            status: Status::Pass,
            detail: detail.into(),
            fix: None,
        }
    }

    fn warn(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            name,
            status: Status::Warn,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }

    fn fail(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            name,
            status: Status::Fail,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

/// Runs every check for `config` (already validated) and `paths`.
pub fn run(paths: &Paths, config: &Config) -> Vec<Check> {
    let kvm = kvm::probe();
    let firecracker = find_program(&config.firecracker_bin);
    let mut checks = vec![
        kvm_check(&kvm),
        vmm_check(config, &kvm, firecracker.is_some()),
    ];
    checks.push(firecracker_check(config, &kvm, firecracker.as_deref()));
    checks.push(qemu_check(config));
    checks.push(vhost_vsock_check());
    checks.push(e2fsprogs_check());
    checks.push(busybox_check());
    checks.push(system::tun_check());
    checks.push(system::nftables_check());
    checks.push(system::ip_forward_check());
    // Root (CAP_NET_ADMIN) does the network plumbing itself; anyone else
    // needs the system install's root helper.
    checks.push(if system::has_net_admin() {
        system::bridge_permission_check()
    } else {
        root_helper::check()
    });
    checks.push(system::disk_space_check(&paths.state_dir));
    checks.extend(system::xdg_dir_checks(paths));
    checks
}

/// The check reported when config.toml does not load: doctor still runs the
/// rest with defaults, but this line fails.
pub fn config_failure(message: String, file: &Path) -> Check {
    Check::fail(
        "config",
        message,
        format!(
            "edit {} (see `banger config show` for the keys)",
            file.display()
        ),
    )
}

fn kvm_check(kvm: &KvmVerdict) -> Check {
    if kvm.can_run_guests {
        Check::pass("kvm", kvm.detail.clone())
    } else if kvm.accessible {
        Check::warn(
            "kvm",
            format!("/dev/kvm works but cannot run guests: {}", kvm.detail),
            "VMs will use QEMU with slow TCG emulation; use a host with hardware virtualisation for full speed",
        )
    } else {
        Check::warn(
            "kvm",
            kvm.detail.clone(),
            "load kvm_intel or kvm_amd and add your user to the kvm group (sudo usermod -aG kvm $USER); until then QEMU uses TCG",
        )
    }
}

fn vmm_check(config: &Config, kvm: &KvmVerdict, firecracker_found: bool) -> Check {
    let decision = vmm_choice::decide(config.vmm, kvm, firecracker_found);
    let name = match decision.backend {
        Backend::Firecracker => "firecracker",
        Backend::Qemu => "qemu",
    };
    match decision.problem {
        Some(problem) => Check::fail(
            "vmm",
            format!("{name} chosen ({}) but {problem}", decision.reason),
            "set vmm = \"auto\" or \"qemu\" in config.toml (or BANGER_VMM), or fix KVM/firecracker",
        ),
        None => Check::pass("vmm", format!("{name}: {}", decision.reason)),
    }
}

fn firecracker_check(config: &Config, kvm: &KvmVerdict, found: Option<&Path>) -> Check {
    match found {
        Some(path) => {
            let version =
                version_line(path, &["--version"]).unwrap_or_else(|| "version unknown".into());
            Check::pass("firecracker", format!("{} ({version})", path.display()))
        }
        None if kvm.can_run_guests => Check::warn(
            "firecracker",
            format!("{} not found", config.firecracker_bin.display()),
            "install Firecracker from its GitHub releases and put it on PATH or set firecracker_bin",
        ),
        None => Check::pass(
            "firecracker",
            format!(
                "{} not found (not needed: KVM cannot run guests here)",
                config.firecracker_bin.display()
            ),
        ),
    }
}

/// QEMU's TCG before this major version crashes Linux 6.12 guests in
/// early boot (seen with 7.2; 10.0 boots them).
const MIN_QEMU_MAJOR_FOR_6_12: u32 = 8;

/// The major version in `qemu --version`'s first line ("QEMU emulator
/// version 7.2.22 (Debian …)").
fn qemu_major(version_line: &str) -> Option<u32> {
    version_line
        .split_whitespace()
        .skip_while(|word| *word != "version")
        .nth(1)?
        .split('.')
        .next()?
        .parse()
        .ok()
}

fn qemu_check(config: &Config) -> Check {
    match find_program(&config.qemu_bin) {
        Some(path) => {
            let version =
                version_line(&path, &["--version"]).unwrap_or_else(|| "version unknown".into());
            match qemu_major(&version) {
                Some(major) if major < MIN_QEMU_MAJOR_FOR_6_12 => Check::warn(
                    "qemu",
                    format!(
                        "{} ({version}): under TCG it crashes Linux 6.12 guests (the generic-6-12 kernel) in early boot",
                        path.display()
                    ),
                    "install QEMU 8 or newer (Debian 12: qemu-system-x86 from bookworm-backports, as scripts/install-deps.sh does)",
                ),
                _ => Check::pass("qemu", format!("{} ({version})", path.display())),
            }
        }
        None => Check::fail(
            "qemu",
            format!("{} not found", config.qemu_bin.display()),
            "sudo apt-get install qemu-system-x86 (or set qemu_bin)",
        ),
    }
}

fn vhost_vsock_check() -> Check {
    match find_program(Path::new("vhost-device-vsock")).or_else(|| {
        let home = std::env::var_os("HOME")?;
        let candidate = Path::new(&home).join(".cargo/bin/vhost-device-vsock");
        find_program(&candidate)
    }) {
        Some(path) => {
            let version =
                version_line(&path, &["--version"]).unwrap_or_else(|| "version unknown".into());
            Check::pass(
                "vhost-device-vsock",
                format!("{} ({version})", path.display()),
            )
        }
        None => Check::fail(
            "vhost-device-vsock",
            "not found; QEMU guests need it for the guest agent's vsock",
            "cargo install --locked vhost-device-vsock",
        ),
    }
}

fn e2fsprogs_check() -> Check {
    let tools = ["mkfs.ext4", "e2fsck", "resize2fs", "debugfs"];
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|tool| find_program(Path::new(tool)).is_none())
        .collect();
    if !missing.is_empty() {
        return Check::fail(
            "e2fsprogs",
            format!("missing {}", missing.join(", ")),
            "sudo apt-get install e2fsprogs",
        );
    }
    let version = find_program(Path::new("mke2fs"))
        .and_then(|path| version_line(&path, &["-V"]))
        .unwrap_or_else(|| "version unknown".into());
    Check::pass("e2fsprogs", version)
}

fn busybox_check() -> Check {
    let fix = "sudo apt-get install busybox-static";
    let Some(path) = find_program(Path::new("busybox")) else {
        return Check::fail(
            "busybox-static",
            "busybox not found; the banger initramfs is built from it",
            fix,
        );
    };
    match is_static_elf(&path) {
        Some(true) => Check::pass(
            "busybox-static",
            format!("{} (statically linked)", path.display()),
        ),
        Some(false) => Check::fail(
            "busybox-static",
            format!(
                "{} is dynamically linked and cannot run in the initramfs",
                path.display()
            ),
            fix,
        ),
        None => Check::fail(
            "busybox-static",
            format!("{} is not a 64-bit ELF binary", path.display()),
            fix,
        ),
    }
}

/// True when any check failed.
pub fn any_failed(checks: &[Check]) -> bool {
    checks.iter().any(|check| check.status == Status::Fail)
}

#[cfg(test)]
mod tests;
