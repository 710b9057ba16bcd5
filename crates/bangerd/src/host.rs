//! The host resources VMs need, set up once when the daemon starts: the
//! bridge and TAP pool (through `PrivilegedOps`), the KVM verdict, and the
//! external programs (VMM, vsock helper, guest agent).
//!
//! Missing pieces do not stop the daemon: images and kernels work without
//! them, and starting a VM fails with the recorded reason and its fix.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use banger_config::Config;
use banger_host::kvm::KvmVerdict;
use banger_host::net::names::BridgeName;
use banger_host::net::pool::TapPool;
use banger_host::privileged::{InProcessOps, PrivilegedOps};
use banger_host::tools::find_program;
use banger_host::vmm_choice::{self, Backend};
use banger_vmm::console::CopierCommand;
use banger_vmm::{Accel, FirecrackerVmm, QemuVmm, Vmm};

/// The bridge, its addressing and the TAP pool.
pub struct Network {
    /// Privileged operations (in-process while the daemon runs as root).
    pub ops: Arc<dyn PrivilegedOps>,
    /// Spare TAPs.
    pub pool: TapPool,
    /// The bridge.
    pub bridge: BridgeName,
}

/// Host resources, shared by all VM operations.
pub struct Host {
    /// The network, set up on first use (so a daemon that never starts a VM
    /// never touches the host's network), or why it is unavailable.
    network: tokio::sync::OnceCell<Result<Network, String>>,
    /// Bridge settings for the lazy network setup.
    config: Option<Config>,
    /// What KVM can do here.
    pub kvm: KvmVerdict,
    /// The static guest agent binary, if found.
    pub agent: Option<PathBuf>,
    /// The uid owning TAPs and VM processes.
    pub owner_uid: u32,
}

impl Host {
    /// A host without networking or VMs (tests of unrelated routes).
    pub fn unavailable(reason: &str) -> Self {
        Self {
            network: tokio::sync::OnceCell::new_with(Some(Err(reason.to_owned()))),
            config: None,
            kvm: KvmVerdict {
                accessible: false,
                probe_ran: false,
                can_run_guests: false,
                detail: reason.to_owned(),
            },
            agent: None,
            owner_uid: rustix::process::getuid().as_raw(),
        }
    }

    /// Probes KVM and finds the programs. The network comes later, on first use.
    pub async fn setup(config: &Config) -> Self {
        let owner_uid = rustix::process::getuid().as_raw();
        let kvm = tokio::task::spawn_blocking(banger_host::kvm::probe)
            .await
            .unwrap_or_else(|join| KvmVerdict {
                accessible: false,
                probe_ran: false,
                can_run_guests: false,
                detail: format!("the KVM probe failed: {join}"),
            });
        let agent = find_agent();
        if agent.is_none() {
            tracing::warn!(
                "banger-vsock-agent not found; VMs boot without the guest agent (set BANGER_AGENT_BIN)"
            );
        }
        Self {
            network: tokio::sync::OnceCell::new(),
            config: Some(config.clone()),
            kvm,
            agent,
            owner_uid,
        }
    }

    /// The network (bridge and TAP pool), set up on the first call; or an
    /// error message with its fix.
    pub async fn network(&self) -> Result<&Network, String> {
        let network = self
            .network
            .get_or_init(|| async {
                let Some(config) = &self.config else { return Err("VM networking is not configured".to_owned()) };
                let network = setup_network(config, self.owner_uid).await;
                if let Err(reason) = &network {
                    tracing::warn!(reason = %reason, "VM networking is unavailable; VMs cannot start");
                }
                network
            })
            .await;
        network.as_ref().map_err(Clone::clone)
    }

    /// The network if it was already set up (never sets it up).
    pub fn network_if_ready(&self) -> Option<&Network> {
        self.network.get().and_then(|network| network.as_ref().ok())
    }

    /// The VMM to start VMs with, per `config.vmm` (or `BANGER_VMM`, which
    /// the config loader already applied) and what this host can do.
    pub fn vmm(&self, config: &Config) -> Result<(Vmm, Accel), String> {
        let firecracker = find_program(&config.firecracker_bin);
        let decision = vmm_choice::decide(config.vmm, &self.kvm, firecracker.is_some());
        if let Some(problem) = decision.problem {
            return Err(format!(
                "{problem}; set vmm = \"qemu\" (or BANGER_VMM=qemu) to use QEMU"
            ));
        }
        let copier = CopierCommand {
            program: daemon_exe()?,
            args: vec!["console-copier".into()],
        };
        let accel = if self.kvm.can_run_guests {
            Accel::Kvm
        } else {
            Accel::Tcg
        };
        match decision.backend {
            Backend::Firecracker => {
                let firecracker_bin = firecracker.ok_or("firecracker was not found")?;
                Ok((
                    Vmm::Firecracker(FirecrackerVmm {
                        firecracker_bin,
                        copier,
                    }),
                    Accel::Kvm,
                ))
            }
            Backend::Qemu => {
                let qemu_bin = find_program(&config.qemu_bin).ok_or_else(|| {
                    format!(
                        "{} was not found; install qemu-system-x86 or set qemu_bin",
                        config.qemu_bin.display()
                    )
                })?;
                let vhost_vsock_bin = find_vhost_vsock().ok_or(
                    "vhost-device-vsock was not found; install it with `cargo install --locked vhost-device-vsock`",
                )?;
                Ok((
                    Vmm::Qemu(QemuVmm {
                        qemu_bin,
                        vhost_vsock_bin,
                        copier,
                    }),
                    accel,
                ))
            }
        }
    }
}

async fn setup_network(config: &Config, owner_uid: u32) -> Result<Network, String> {
    let bridge = BridgeName::new(&config.bridge_name).map_err(|error| error.to_string())?;
    let ops = InProcessOps::new().map_err(|error| {
        format!("cannot open netlink: {}; VM networking needs root (run bangerd as root until the root helper lands)", crate::error::error_chain(&error))
    })?;
    ops.ensure_bridge(&bridge, config.bridge_ip, config.cidr.prefix).await.map_err(|error| {
        format!(
            "cannot set up bridge {bridge}: {}; VM networking needs root (run bangerd as root until the root helper lands)",
            crate::error::error_chain(&error)
        )
    })?;
    let ops: Arc<dyn PrivilegedOps> = Arc::new(ops);
    let pool = TapPool::new(
        ops.clone(),
        bridge.clone(),
        owner_uid,
        config.tap_pool_size as usize,
    );
    Ok(Network { ops, pool, bridge })
}

/// This daemon's executable. After an upgrade replaced the file, Linux
/// reports the old inode as `<path> (deleted)`; the new file at `<path>`
/// understands the same `console-copier` subcommand, so use it.
fn daemon_exe() -> Result<PathBuf, String> {
    let exe = std::env::current_exe()
        .map_err(|error| format!("cannot locate bangerd itself: {error}"))?;
    if !exe.exists() {
        if let Some(path) = exe
            .to_str()
            .and_then(|text| text.strip_suffix(" (deleted)"))
        {
            if Path::new(path).is_file() {
                return Ok(PathBuf::from(path));
            }
        }
    }
    Ok(exe)
}

/// `vhost-device-vsock` on PATH or in `~/.cargo/bin`, where `cargo install` puts it.
fn find_vhost_vsock() -> Option<PathBuf> {
    find_program(Path::new("vhost-device-vsock")).or_else(|| {
        let home = std::env::var_os("HOME")?;
        find_program(&Path::new(&home).join(".cargo/bin/vhost-device-vsock"))
    })
}

/// The static agent: `BANGER_AGENT_BIN`, else next to bangerd, else in
/// `../lib/banger/` relative to it (where `scripts/setup.sh` installs it).
fn find_agent() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("BANGER_AGENT_BIN").filter(|value| !value.is_empty()) {
        let path = PathBuf::from(path);
        return path.is_file().then_some(path);
    }
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    [
        dir.join("banger-vsock-agent"),
        dir.join("../lib/banger/banger-vsock-agent"),
    ]
    .into_iter()
    .find(|candidate| candidate.is_file())
}
