//! The host resources VMs need, set up once when the daemon starts: the
//! bridge and TAP pool (through `PrivilegedOps`), the KVM verdict, and the
//! external programs (VMM, vsock helper, guest agent).
//!
//! Where the privileged operations come from (docs/privileges.md): a root
//! daemon does them itself ([`InProcessOps`]); any other daemon asks
//! `bangerd-root` ([`RootHelperOps`]) on the socket the install metadata
//! names (`BANGER_INSTALL_METADATA`, `BANGER_ROOT_SOCKET` override both for
//! tests), after checking the helper serves this uid; without an install
//! there is no network, and starting a VM says to run
//! `sudo banger system install`.
//!
//! Missing pieces do not stop the daemon: images and kernels work without
//! them, and starting a VM fails with the reason and its fix. A network
//! that could not be set up is tried again at the next VM start (the helper
//! may have been started or restarted meanwhile).

use std::future::Future;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use banger_config::Config;
use banger_host::kvm::KvmVerdict;
use banger_host::net::names::BridgeName;
use banger_host::net::pool::TapPool;
use banger_host::privileged::{InProcessOps, PrivilegedError, PrivilegedOps};
use banger_host::root_helper::{self, HelperLocation, LocateError, RootHelperError, RootHelperOps};
use banger_host::ssh::wait::SshWaitError;
use banger_host::tools::find_program;
use banger_host::vmm_choice::{self, Backend};
use banger_vmm::console::CopierCommand;
use banger_vmm::{Accel, FirecrackerVmm, QemuVmm, Vmm};

/// How long a freshly started guest may take until SSH answers. Generous:
/// under TCG emulation a Debian guest needs 30 to 45 s on an idle machine.
pub const SSH_WAIT: Duration = Duration::from_secs(300);

/// Why this host cannot run VMs right now; each names its fix. Clone,
/// because the network's failure is kept and reported to every caller.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HostError {
    /// The daemon was set up without VM support (tests of other routes).
    #[error("VM networking is not available here ({reason})")]
    Unavailable {
        /// Why.
        reason: &'static str,
    },
    /// `bridge_name` in the configuration is not a name banger can use.
    #[error("bridge_name {name:?} in the configuration is not usable")]
    BridgeName {
        /// The configured name.
        name: String,
        /// Why.
        #[source]
        source: Arc<banger_host::net::names::NameError>,
    },
    /// Netlink could not be opened (the daemon is root, so this is rare).
    #[error("cannot open netlink for VM networking")]
    Netlink(#[source] Arc<PrivilegedError>),
    /// The daemon is not root and there is no usable root helper.
    #[error(
        "bangerd runs as uid {uid}, not root, and cannot use the root helper for VM networking"
    )]
    NoRootHelper {
        /// The daemon's uid.
        uid: u32,
        /// Why (names `sudo banger system install`).
        #[source]
        source: Arc<LocateError>,
    },
    /// The root helper does not answer, or serves another uid.
    #[error("bangerd runs as uid {uid}, not root, and the root helper is not usable")]
    RootHelper {
        /// The daemon's uid.
        uid: u32,
        /// Why (names the socket and the fix).
        #[source]
        source: Arc<RootHelperError>,
    },
    /// The bridge could not be set up.
    #[error("cannot set up bridge {bridge}")]
    Bridge {
        /// The bridge.
        bridge: String,
        /// Why.
        #[source]
        source: Arc<PrivilegedError>,
    },
    /// The configured VMM cannot run here.
    #[error("{problem}; set vmm = \"qemu\" (or BANGER_VMM=qemu) to use QEMU")]
    VmmUnusable {
        /// What the VMM choice found wrong.
        problem: String,
    },
    /// The Firecracker binary is missing.
    #[error("{} was not found; install Firecracker or set firecracker_bin", program.display())]
    FirecrackerMissing {
        /// The configured program.
        program: PathBuf,
    },
    /// The QEMU binary is missing.
    #[error("{} was not found; install qemu-system-x86 or set qemu_bin", program.display())]
    QemuMissing {
        /// The configured program.
        program: PathBuf,
    },
    /// The vsock helper QEMU needs is missing.
    #[error(
        "vhost-device-vsock was not found; install it with `cargo install --locked vhost-device-vsock`"
    )]
    VhostVsockMissing,
    /// The daemon cannot find its own executable (for the console copier).
    #[error("cannot locate bangerd's own executable")]
    DaemonExe(#[source] Arc<std::io::Error>),
}

/// A future returned by [`SshWaiter::wait`].
pub type SshWaitFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Duration, SshWaitError>> + Send + 'a>>;

/// Waits until a guest's sshd answers. The daemon probes the real port;
/// lifecycle tests answer at once or never.
pub trait SshWaiter: Send + Sync {
    /// Resolves with how long it took, or fails after `timeout`.
    fn wait(&self, ip: Ipv4Addr, timeout: Duration) -> SshWaitFuture<'_>;
}

/// Probes port 22 until the SSH identification line arrives.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProbeSsh;

impl SshWaiter for ProbeSsh {
    fn wait(&self, ip: Ipv4Addr, timeout: Duration) -> SshWaitFuture<'_> {
        Box::pin(banger_host::ssh::wait::wait_for_ssh(ip, 22, timeout))
    }
}

/// Where the privileged network operations come from.
#[derive(Clone)]
pub enum NetworkSource {
    /// Root: [`NetworkSource::InProcess`]; otherwise the root helper of the
    /// system install (see the module documentation).
    Auto,
    /// In this process, through netlink and nftables (the daemon is root).
    InProcess,
    /// A given implementation (tests: an in-memory fake).
    Ops(Arc<dyn PrivilegedOps>),
}

/// The pieces of a [`Host`] that tests replace. [`Host::setup`] uses the
/// real ones.
pub struct HostParts {
    /// Where bridge, TAP and firewall operations go.
    pub network: NetworkSource,
    /// The VMM to use instead of deciding from the configuration.
    pub vmm: Option<(Vmm, Accel)>,
    /// How to wait for SSH.
    pub ssh: Arc<dyn SshWaiter>,
    /// How long to wait for SSH.
    pub ssh_timeout: Duration,
    /// What KVM can do.
    pub kvm: KvmVerdict,
    /// The guest agent binary.
    pub agent: Option<PathBuf>,
}

/// The bridge, its addressing and the TAP pool.
pub struct Network {
    /// Privileged operations (in-process when the daemon is root, else
    /// `bangerd-root`).
    pub ops: Arc<dyn PrivilegedOps>,
    /// Spare TAPs.
    pub pool: TapPool,
    /// The bridge.
    pub bridge: BridgeName,
}

/// Host resources, shared by all VM operations.
pub struct Host {
    /// The network, set up on first use (so a daemon that never starts a VM
    /// never touches the host's network); a failed setup is not kept, so
    /// the next use tries again.
    network: tokio::sync::OnceCell<Network>,
    /// Why this host has no network at all (tests of unrelated routes).
    unavailable: Option<&'static str>,
    /// Bridge settings for the lazy network setup.
    config: Option<Config>,
    /// Where privileged operations go.
    network_source: NetworkSource,
    /// A fixed VMM (tests), else decided per start from the configuration.
    vmm_override: Option<(Vmm, Accel)>,
    /// How to wait for SSH.
    ssh: Arc<dyn SshWaiter>,
    /// How long to wait for SSH.
    pub ssh_timeout: Duration,
    /// What KVM can do here.
    pub kvm: KvmVerdict,
    /// The static guest agent binary, if found.
    pub agent: Option<PathBuf>,
    /// The uid owning TAPs and VM processes.
    pub owner_uid: u32,
}

impl Host {
    /// A host without networking or VMs (tests of unrelated routes).
    pub fn unavailable(reason: &'static str) -> Self {
        Self {
            network: tokio::sync::OnceCell::new(),
            unavailable: Some(reason),
            config: None,
            network_source: NetworkSource::InProcess,
            vmm_override: None,
            ssh: Arc::new(ProbeSsh),
            ssh_timeout: SSH_WAIT,
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
        Self::with_parts(
            config,
            HostParts {
                network: NetworkSource::Auto,
                vmm: None,
                ssh: Arc::new(ProbeSsh),
                ssh_timeout: SSH_WAIT,
                kvm,
                agent,
            },
        )
    }

    /// A host made of the given parts (tests inject fakes here).
    pub fn with_parts(config: &Config, parts: HostParts) -> Self {
        Self {
            network: tokio::sync::OnceCell::new(),
            unavailable: None,
            config: Some(config.clone()),
            network_source: parts.network,
            vmm_override: parts.vmm,
            ssh: parts.ssh,
            ssh_timeout: parts.ssh_timeout,
            kvm: parts.kvm,
            agent: parts.agent,
            owner_uid: rustix::process::getuid().as_raw(),
        }
    }

    /// The network (bridge and TAP pool), set up on the first call; or
    /// why it cannot be, with the fix.
    pub async fn network(&self) -> Result<&Network, HostError> {
        if let Some(reason) = self.unavailable {
            return Err(HostError::Unavailable { reason });
        }
        self.network
            .get_or_try_init(|| async {
                let Some(config) = &self.config else {
                    return Err(HostError::Unavailable { reason: "no configuration" });
                };
                let network = setup_network(config, &self.network_source, self.owner_uid).await;
                if let Err(error) = &network {
                    tracing::warn!(reason = %crate::error::error_chain(error), "VM networking is unavailable; VMs cannot start");
                }
                network
            })
            .await
    }

    /// The network if it was already set up (never sets it up).
    pub fn network_if_ready(&self) -> Option<&Network> {
        self.network.get()
    }

    /// Waits until `ip` answers SSH, up to [`Host::ssh_timeout`].
    pub async fn wait_for_ssh(&self, ip: Ipv4Addr) -> Result<Duration, SshWaitError> {
        self.ssh.wait(ip, self.ssh_timeout).await
    }

    /// The VMM to start VMs with, per `config.vmm` (or `BANGER_VMM`, which
    /// the config loader already applied) and what this host can do.
    pub fn vmm(&self, config: &Config) -> Result<(Vmm, Accel), HostError> {
        if let Some(fixed) = &self.vmm_override {
            return Ok(fixed.clone());
        }
        let firecracker = find_program(&config.firecracker_bin);
        let decision = vmm_choice::decide(config.vmm, &self.kvm, firecracker.is_some());
        if let Some(problem) = decision.problem {
            return Err(HostError::VmmUnusable { problem });
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
                let firecracker_bin = firecracker.ok_or_else(|| HostError::FirecrackerMissing {
                    program: config.firecracker_bin.clone(),
                })?;
                Ok((
                    Vmm::Firecracker(FirecrackerVmm {
                        firecracker_bin,
                        copier,
                    }),
                    Accel::Kvm,
                ))
            }
            Backend::Qemu => {
                let qemu_bin =
                    find_program(&config.qemu_bin).ok_or_else(|| HostError::QemuMissing {
                        program: config.qemu_bin.clone(),
                    })?;
                let vhost_vsock_bin = find_vhost_vsock().ok_or(HostError::VhostVsockMissing)?;
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

async fn setup_network(
    config: &Config,
    source: &NetworkSource,
    owner_uid: u32,
) -> Result<Network, HostError> {
    let bridge = BridgeName::new(&config.bridge_name).map_err(|source| HostError::BridgeName {
        name: config.bridge_name.clone(),
        source: Arc::new(source),
    })?;
    let ops: Arc<dyn PrivilegedOps> = match source {
        NetworkSource::Auto if !rustix::process::geteuid().is_root() => root_helper_ops().await?,
        NetworkSource::Auto | NetworkSource::InProcess => {
            Arc::new(InProcessOps::new().map_err(|error| HostError::Netlink(Arc::new(error)))?)
        }
        NetworkSource::Ops(ops) => ops.clone(),
    };
    ops.ensure_bridge(&bridge, config.bridge_ip, config.cidr.prefix)
        .await
        .map_err(|error| HostError::Bridge {
            bridge: bridge.to_string(),
            source: Arc::new(error),
        })?;
    let pool = TapPool::new(
        ops.clone(),
        bridge.clone(),
        owner_uid,
        config.tap_pool_size as usize,
    );
    Ok(Network { ops, pool, bridge })
}

/// The system install's `bangerd-root`, checked to serve this uid.
async fn root_helper_ops() -> Result<Arc<dyn PrivilegedOps>, HostError> {
    // SO_PEERCRED reports the effective uid, so that is what the helper sees.
    root_helper_ops_from(root_helper::locate(), rustix::process::geteuid().as_raw()).await
}

/// [`root_helper_ops`] for a given location (or why there is none) and uid.
async fn root_helper_ops_from(
    location: Result<HelperLocation, LocateError>,
    uid: u32,
) -> Result<Arc<dyn PrivilegedOps>, HostError> {
    let location = location.map_err(|source| HostError::NoRootHelper {
        uid,
        source: Arc::new(source),
    })?;
    let (ops, hello) = RootHelperOps::connect(&location.socket, uid)
        .await
        .map_err(|source| HostError::RootHelper {
            uid,
            source: Arc::new(source),
        })?;
    tracing::info!(
        socket = %location.socket.display(),
        version = %hello.version,
        pid = hello.pid,
        "VM networking through bangerd-root"
    );
    Ok(Arc::new(ops))
}

/// This daemon's executable. After an upgrade replaced the file, Linux
/// reports the old inode as `<path> (deleted)`; the new file at `<path>`
/// understands the same `console-copier` subcommand, so use it.
fn daemon_exe() -> Result<PathBuf, HostError> {
    let exe = std::env::current_exe().map_err(|error| HostError::DaemonExe(Arc::new(error)))?;
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
/// `vhost-device-vsock`: on `PATH`, else in the system install's `lib_dir`
/// (where `banger system install` copies it, since the owner's daemon
/// cannot run root's `~/.cargo/bin` copy), else in `~/.cargo/bin`.
fn find_vhost_vsock() -> Option<PathBuf> {
    find_program(Path::new("vhost-device-vsock"))
        .or_else(|| {
            let metadata = root_helper::locate().ok()?.metadata?;
            find_program(&metadata.lib_dir.join("vhost-device-vsock"))
        })
        .or_else(|| {
            let home = std::env::var_os("HOME")?;
            find_program(&Path::new(&home).join(".cargo/bin/vhost-device-vsock"))
        })
}

/// The static agent: `BANGER_AGENT_BIN`, else next to bangerd, else in the
/// system install's `lib_dir`, else in `../lib/banger/` relative to bangerd
/// (where `scripts/setup.sh` installs it).
fn find_agent() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("BANGER_AGENT_BIN").filter(|value| !value.is_empty()) {
        let path = PathBuf::from(path);
        return path.is_file().then_some(path);
    }
    let installed = root_helper::locate()
        .ok()
        .and_then(|location| location.metadata)
        .map(|metadata| metadata.lib_dir.join("banger-vsock-agent"));
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    std::iter::once(dir.join("banger-vsock-agent"))
        .chain(installed)
        .chain(std::iter::once(
            dir.join("../lib/banger/banger-vsock-agent"),
        ))
        .find(|candidate| candidate.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;
    use banger_host::root_helper::proto::{HelloReply, Reply, Request, Response};
    use banger_host::root_helper::{locate_with, proto};

    /// A helper that answers every hello as serving `owner`.
    fn fake_helper(socket: &Path, owner: u32) {
        let listener = tokio::net::UnixListener::bind(socket).expect("bind");
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let body = proto::read_frame(&mut stream)
                    .await
                    .expect("read")
                    .expect("frame");
                let request: Request = serde_json::from_slice(&body).expect("request");
                assert_eq!(request, Request::Hello);
                let hello = HelloReply {
                    version: "0.1.0".into(),
                    pid: 1,
                    owner_uid: owner,
                    bridge: BridgeName::new("banger0").expect("bridge"),
                    allowed_cidrs: vec!["172.30.0.0/24".parse().expect("cidr")],
                };
                proto::write_frame(&mut stream, &Response::Ok(Reply::Hello(hello)))
                    .await
                    .expect("write");
            }
        });
    }

    fn chain(error: &HostError) -> String {
        crate::error::error_chain(error)
    }

    #[tokio::test]
    async fn without_an_install_the_error_says_to_install() {
        let dir = tempfile::tempdir().expect("dir");
        let missing = dir.path().join("install.toml");
        let Err(error) = root_helper_ops_from(locate_with(&missing, None), 1000).await else {
            panic!("no install must be an error");
        };
        assert!(matches!(error, HostError::NoRootHelper { uid: 1000, .. }));
        assert!(
            chain(&error).contains("sudo banger system install"),
            "{}",
            chain(&error)
        );
    }

    #[tokio::test]
    async fn the_helper_must_serve_this_uid() {
        let dir = tempfile::tempdir().expect("dir");
        let missing = dir.path().join("install.toml");
        let socket = dir.path().join("root.sock");
        fake_helper(&socket, 1000);
        let location = || locate_with(&missing, Some(socket.clone()));
        root_helper_ops_from(location(), 1000)
            .await
            .expect("the helper serves uid 1000");
        let Err(error) = root_helper_ops_from(location(), 1001).await else {
            panic!("another uid must be refused");
        };
        let text = chain(&error);
        assert!(
            text.contains("uid 1000") && text.contains("uid 1001"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_dead_helper_names_its_socket_and_the_fix() {
        let dir = tempfile::tempdir().expect("dir");
        let socket = dir.path().join("root.sock");
        let location = locate_with(&dir.path().join("install.toml"), Some(socket.clone()));
        let Err(error) = root_helper_ops_from(location, 1000).await else {
            panic!("nothing listens");
        };
        let text = chain(&error);
        assert!(text.contains(&socket.display().to_string()), "{text}");
        assert!(text.contains("sudo banger system restart"), "{text}");
    }
}
