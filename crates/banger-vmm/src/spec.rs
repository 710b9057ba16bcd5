//! The backend-neutral description of one VM ([`VmSpec`]) and its checks.
//!
//! The daemon fills a [`VmSpec`] from its store (kernel and initrd from
//! `banger-image`, disks in boot-chain order, the TAP it created) and hands it
//! to a backend; both backends read the same fields, so the boot chain stays
//! VMM-agnostic. [`VmSpec::validate`] rejects values a backend would otherwise
//! pass on to a command line or an API body unchecked.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Longest Unix socket path (`sun_path` is 108 bytes including the NUL).
pub const MAX_SOCKET_PATH: usize = 107;

/// Longest Linux interface name (`IFNAMSIZ` - 1).
const MAX_IFNAME: usize = 15;

/// How QEMU executes guest code. Firecracker always uses KVM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Accel {
    /// Hardware virtualisation; only when `banger_host::kvm::probe()` says
    /// guests can run.
    Kvm,
    /// QEMU's software emulation: works everywhere, several times slower.
    Tcg,
}

/// One virtio block device. Attach order is the guest's device order:
/// the first disk is `vda`, the second `vdb`, and so on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskSpec {
    /// Raw disk image on the host.
    pub path: PathBuf,
    /// Attach read-only (the base image and the modules disk).
    pub read_only: bool,
}

/// The VM's one NIC, backed by a TAP device the daemon already created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetSpec {
    /// Host TAP device name.
    pub tap_name: String,
    /// Guest MAC, `xx:xx:xx:xx:xx:xx` (lower or upper case hex).
    pub mac: String,
}

/// Everything a backend needs to start one VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmSpec {
    /// VM name (used in logs and errors only).
    pub name: String,
    /// Number of vCPUs, at least 1.
    pub vcpus: u8,
    /// Guest memory in MiB.
    pub memory_mib: u32,
    /// Kernel: a bzImage for QEMU, an ELF `vmlinux` for Firecracker.
    pub kernel: PathBuf,
    /// The VM's initrd (banger initramfs plus its config archive).
    pub initrd: PathBuf,
    /// Kernel command line.
    pub cmdline: String,
    /// Disks in attach order (`vda`, `vdb`, ...).
    pub disks: Vec<DiskSpec>,
    /// Network interface, if any.
    pub network: Option<NetSpec>,
    /// Guest vsock context id (3 or more; 0-2 are reserved).
    pub vsock_cid: u32,
    /// Per-VM runtime directory for sockets and pid files; created if missing.
    /// Keep it short: socket paths inside it must fit in 107 bytes.
    pub run_dir: PathBuf,
    /// Serial console log (bounded, see [`crate::console`]).
    pub console_log: PathBuf,
    /// Upper bound for the console log and its one rotated copy, each.
    pub console_log_max_bytes: u64,
    /// QEMU only: KVM or TCG.
    pub accel: Accel,
}

/// A [`VmSpec`] that cannot be started.
#[derive(Debug, Error)]
pub enum SpecError {
    /// A field has a value no backend accepts.
    #[error("VM {vm}: invalid {field}: {reason}")]
    Invalid {
        /// VM name.
        vm: String,
        /// Field name.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A file the VM needs does not exist.
    #[error("VM {vm}: {field} {path} does not exist")]
    Missing {
        /// VM name.
        vm: String,
        /// Field name.
        field: &'static str,
        /// The missing path.
        path: PathBuf,
    },
}

impl VmSpec {
    /// Checks every field a backend passes on to a command line or API body.
    pub fn validate(&self) -> Result<(), SpecError> {
        let invalid = |field: &'static str, reason: String| SpecError::Invalid {
            vm: self.name.clone(),
            field,
            reason,
        };
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        {
            return Err(invalid(
                "name",
                format!("{:?} is not [A-Za-z0-9._-]+", self.name),
            ));
        }
        if self.vcpus == 0 || self.vcpus > 32 {
            return Err(invalid("vcpus", format!("{} is not in 1..=32", self.vcpus)));
        }
        if self.memory_mib < 64 {
            return Err(invalid(
                "memory_mib",
                format!("{} MiB is below 64", self.memory_mib),
            ));
        }
        if self.vsock_cid < 3 {
            return Err(invalid(
                "vsock_cid",
                format!("{} is reserved (use 3 or more)", self.vsock_cid),
            ));
        }
        if self.cmdline.contains('\n') || self.cmdline.contains('\0') {
            return Err(invalid("cmdline", "contains a newline or NUL".into()));
        }
        if self.console_log_max_bytes < 4096 {
            return Err(invalid(
                "console_log_max_bytes",
                format!("{} is below 4096", self.console_log_max_bytes),
            ));
        }
        if let Some(net) = &self.network {
            let tap_ok = !net.tap_name.is_empty()
                && net.tap_name.len() <= MAX_IFNAME
                && net
                    .tap_name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
            if !tap_ok {
                return Err(invalid(
                    "network.tap_name",
                    format!("{:?} is not a valid interface name", net.tap_name),
                ));
            }
            if !is_mac(&net.mac) {
                return Err(invalid(
                    "network.mac",
                    format!("{:?} is not xx:xx:xx:xx:xx:xx", net.mac),
                ));
            }
        }
        // Paths end up in comma-separated QEMU option strings; a comma would
        // need escaping there, so refuse it rather than risk a wrong device.
        let mut paths: Vec<(&'static str, &Path)> = vec![
            ("kernel", &self.kernel),
            ("initrd", &self.initrd),
            ("run_dir", &self.run_dir),
            ("console_log", &self.console_log),
        ];
        paths.extend(self.disks.iter().map(|d| ("disk", d.path.as_path())));
        for (field, path) in &paths {
            let text = path.to_string_lossy();
            if !path.is_absolute() || text.contains(',') || text.contains('\n') {
                return Err(invalid(
                    field,
                    format!(
                        "{} must be absolute and contain no comma or newline",
                        path.display()
                    ),
                ));
            }
        }
        for (field, path) in paths
            .iter()
            .filter(|(f, _)| matches!(*f, "kernel" | "initrd" | "disk"))
        {
            if !path.exists() {
                return Err(SpecError::Missing {
                    vm: self.name.clone(),
                    field,
                    path: path.to_path_buf(),
                });
            }
        }
        // The longest socket name any backend puts into run_dir.
        let longest = self.run_dir.join("vhost-vsock.sock");
        if longest.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(invalid(
                "run_dir",
                format!(
                    "{} is too long for Unix socket paths inside it",
                    self.run_dir.display()
                ),
            ));
        }
        Ok(())
    }
}

/// True for `xx:xx:xx:xx:xx:xx` with hex digits.
pub fn is_mac(mac: &str) -> bool {
    let parts: Vec<&str> = mac.split(':').collect();
    parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A valid spec whose files live in `dir` (created by the caller as needed).
    pub(crate) fn sample_spec(dir: &Path) -> VmSpec {
        VmSpec {
            name: "dev-1".into(),
            vcpus: 2,
            memory_mib: 1024,
            kernel: dir.join("vmlinuz"),
            initrd: dir.join("initrd.img"),
            cmdline: "console=ttyS0 panic=-1 net.ifnames=0".into(),
            disks: vec![
                DiskSpec {
                    path: dir.join("base.ext4"),
                    read_only: true,
                },
                DiskSpec {
                    path: dir.join("upper.ext4"),
                    read_only: false,
                },
            ],
            network: Some(NetSpec {
                tap_name: "tap-dev1".into(),
                mac: "02:fc:ac:1e:00:02".into(),
            }),
            vsock_cid: 3,
            run_dir: dir.join("run"),
            console_log: dir.join("console.log"),
            console_log_max_bytes: 1 << 20,
            accel: Accel::Tcg,
        }
    }

    fn touch_all(spec: &VmSpec) {
        for p in [&spec.kernel, &spec.initrd] {
            fs_err::write(p, b"x").unwrap();
        }
        for d in &spec.disks {
            fs_err::write(&d.path, b"x").unwrap();
        }
    }

    #[test]
    fn valid_spec_passes() {
        let dir = tempfile::tempdir().unwrap();
        let spec = sample_spec(dir.path());
        touch_all(&spec);
        spec.validate().unwrap();
    }

    #[test]
    fn bad_fields_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let good = sample_spec(dir.path());
        touch_all(&good);
        type Change = Box<dyn Fn(&mut VmSpec)>;
        let cases: Vec<(&str, Change)> = vec![
            ("vcpus", Box::new(|s| s.vcpus = 0)),
            ("vsock_cid", Box::new(|s| s.vsock_cid = 2)),
            ("name", Box::new(|s| s.name = "a b".into())),
            (
                "network.mac",
                Box::new(|s| s.network.as_mut().unwrap().mac = "zz".into()),
            ),
            (
                "network.tap_name",
                Box::new(|s| s.network.as_mut().unwrap().tap_name = "x".repeat(16)),
            ),
            ("disk", Box::new(|s| s.disks[0].path = "/tmp/a,b".into())),
            ("cmdline", Box::new(|s| s.cmdline = "a\nb".into())),
            (
                "run_dir",
                Box::new(|s| s.run_dir = PathBuf::from("/").join("r".repeat(100))),
            ),
        ];
        for (field, change) in cases {
            let mut spec = good.clone();
            change(&mut spec);
            let error = spec.validate().unwrap_err();
            assert!(
                error.to_string().contains(&format!("invalid {field}:")),
                "{field}: {error}"
            );
        }
        let mut spec = good.clone();
        spec.initrd = dir.path().join("nope");
        assert!(matches!(
            spec.validate(),
            Err(SpecError::Missing {
                field: "initrd",
                ..
            })
        ));
    }
}
