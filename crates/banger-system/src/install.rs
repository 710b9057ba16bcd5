//! `banger system install`: put banger into the root-owned layout, write
//! the metadata the helper trusts, prepare the owner's account and start
//! both services. Running it again upgrades in place: files are replaced
//! atomically and the services restarted.
//!
//! Order matters: everything is checked (owner, layout, sources, the
//! owner's network config) before anything is written, and the metadata is
//! written before the units that read it.

use std::path::{Path, PathBuf};

use banger_config::{InstallMetadata, LoadedConfig};

use crate::account::{self, AccountError};
use crate::files::{self, FileError};
use crate::layout::{self, Binary, Layout, LayoutError};
use crate::owner::{Owner, OwnerError};
use crate::service::{self, ServiceError};
use crate::shell_files::{self, ShellFile};
use crate::units::{self, DAEMON_UNIT, ROOT_UNIT, UnitError};
use crate::{Progress, VERSION};

/// What to install, for whom.
#[derive(Debug, Clone)]
pub struct InstallOptions {
    /// The owner's login name (`--owner`, else `SUDO_USER`).
    pub owner: Option<String>,
    /// `SUDO_USER` of the caller.
    pub sudo_user: Option<String>,
    /// Install prefix (`/usr/local` by default).
    pub prefix: PathBuf,
    /// Where `banger`, `bangerd` and `bangerd-root` are copied from.
    pub source_dir: PathBuf,
    /// The static guest agent to install, if found.
    pub agent: Option<PathBuf>,
    /// `vhost-device-vsock` to install, if found.
    pub vhost_vsock: Option<PathBuf>,
    /// Install and enable, but start nothing.
    pub no_start: bool,
    /// Install systemd units (systemd is PID 1) or run the helper detached.
    pub systemd: bool,
    /// Shell completions and man pages to install (rendered by the CLI).
    pub shell_files: Vec<ShellFile>,
}

/// What an install did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct InstallReport {
    /// The owner.
    pub owner: Owner,
    /// The metadata written.
    pub metadata: PathBuf,
    /// Files installed.
    pub installed: Vec<PathBuf>,
    /// Unit files written (empty without systemd).
    pub units: Vec<PathBuf>,
    /// Whether systemd runs the services.
    pub systemd: bool,
    /// Whether the services were (re)started.
    pub started: bool,
    /// Whether banger was already installed (an upgrade).
    pub upgraded: bool,
}

/// An install failed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The owner could not be found or is not allowed.
    #[error(transparent)]
    Owner(#[from] OwnerError),
    /// A target directory is not root's alone.
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// A binary to install is missing.
    #[error(
        "{path} is missing: build it first (cargo build --release -p banger-cli -p bangerd -p bangerd-root) and run the install from target/release"
    )]
    MissingSource {
        /// The expected source file.
        path: PathBuf,
    },
    /// The owner's config could not be read.
    #[error(
        "cannot read {owner}'s banger config (the bridge and network the helper may touch come from it)"
    )]
    Config {
        /// The owner.
        owner: String,
        /// The cause.
        #[source]
        source: banger_config::ConfigError,
    },
    /// The configured bridge name is a host interface that is not a bridge.
    #[error(
        "{owner}'s config names bridge_name = {bridge:?}, but that interface exists and is not a bridge; the helper would manage it: choose another bridge_name"
    )]
    BridgeNameTaken {
        /// The owner.
        owner: String,
        /// The interface.
        bridge: String,
    },
    /// Preparing the owner's account failed.
    #[error(transparent)]
    Account(#[from] AccountError),
    /// Rendering the units failed.
    #[error(transparent)]
    Unit(#[from] UnitError),
    /// Writing a file failed.
    #[error(transparent)]
    File(#[from] FileError),
    /// The metadata could not be serialized.
    #[error("cannot write the install metadata")]
    Metadata(#[source] toml::ser::Error),
    /// Creating the owner's directories failed.
    #[error("cannot create {path} as {owner}: {detail}")]
    OwnerDir {
        /// The owner.
        owner: String,
        /// The directory.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
    /// Starting a service failed.
    #[error(transparent)]
    Service(#[from] ServiceError),
}

/// Runs the install; `progress` gets one line per step.
pub fn install(
    options: &InstallOptions,
    progress: Progress<'_>,
) -> Result<InstallReport, InstallError> {
    let name = crate::owner::owner_name(options.owner.as_deref(), options.sudo_user.as_deref())?;
    let owner = Owner::lookup(&name)?;
    let layout = Layout::with_prefix(&options.prefix);
    let metadata_dir = layout.metadata_dir();
    let mut dirs = vec![layout.bin_dir.clone(), layout.lib_dir.clone(), metadata_dir];
    if options.systemd {
        dirs.push(layout.unit_dir.clone());
    } else {
        dirs.push(layout.log_dir.clone());
    }
    // Every user's shell (root's too) sources the completions.
    dirs.extend(
        options
            .shell_files
            .iter()
            .map(|file| PathBuf::from(file.kind.dir())),
    );
    dirs.dedup();
    for dir in &dirs {
        layout::check_trusted_dir(dir, 0)?;
    }
    let sources = sources(options)?;
    if options.agent.is_none() {
        progress(
            "no static guest agent found (build it with scripts/build-agent.sh and pass --agent): VMs will boot without it",
        );
    }
    if options.vhost_vsock.is_none() {
        progress(
            "vhost-device-vsock not found (cargo install --locked vhost-device-vsock, then pass --vhost-vsock): QEMU VMs will not start",
        );
    }
    let mut metadata = build_metadata(&owner, &layout, options.systemd)?;
    let previous = InstallMetadata::load(&layout.metadata, 0).ok();
    let upgraded = layout.metadata.exists();
    let units = units::render(&layout, &owner)?;

    progress(&format!(
        "installing banger {VERSION} for {} (uid {}) into {}",
        owner.name,
        owner.uid,
        layout.bin_dir.display()
    ));
    for change in account::prepare_devices(&owner)? {
        progress(&change);
    }
    for change in account::prepare_subids(&owner)? {
        progress(&change);
    }
    create_owner_dirs(&owner)?;

    let mut installed = Vec::new();
    files::create_dir(&layout.bin_dir, 0o755)?;
    files::create_dir(&layout.lib_dir, 0o755)?;
    for (binary, source) in sources {
        let dest = layout.binary(binary);
        files::install_file(&source, &dest, 0o755)?;
        progress(&format!("installed {}", dest.display()));
        installed.push(dest);
    }
    let root = Path::new("/");
    metadata.shell_files = shell_files::install(root, &options.shell_files)?;
    progress(&format!(
        "installed {} shell completions and man pages",
        metadata.shell_files.len()
    ));
    if let Some(previous) = previous {
        // Pages of subcommands this version no longer has.
        let stale: Vec<PathBuf> = previous
            .shell_files
            .into_iter()
            .filter(|path| !metadata.shell_files.contains(path))
            .collect();
        for path in shell_files::remove(root, &stale)? {
            progress(&format!("removed {}", path.display()));
        }
    }
    installed.extend(metadata.shell_files.iter().cloned());
    files::create_dir(&layout.metadata_dir(), 0o755)?;
    let text = metadata.to_toml().map_err(InstallError::Metadata)?;
    files::write_file(&layout.metadata, text.as_bytes(), 0o644)?;
    progress(&format!("wrote {}", layout.metadata.display()));

    let mut unit_paths = Vec::new();
    if options.systemd {
        files::create_dir(&layout.unit_dir, 0o755)?;
        for unit in &units {
            let path = units::unit_path(&layout, unit.name);
            files::write_file(&path, unit.text.as_bytes(), 0o644)?;
            progress(&format!("wrote {}", path.display()));
            unit_paths.push(path);
        }
        service::systemctl(&["daemon-reload"])?;
        service::systemctl(&["enable", ROOT_UNIT, DAEMON_UNIT])?;
        if !options.no_start {
            // restart starts stopped units and replaces running ones, so
            // an upgrade runs the new binaries.
            service::systemctl(&["restart", ROOT_UNIT, DAEMON_UNIT])?;
            progress(&format!("started {ROOT_UNIT} and {DAEMON_UNIT}"));
        }
    } else if !options.no_start {
        if let Some(pid) = service::stop_helper(&layout)? {
            progress(&format!("stopped the previous bangerd-root (pid {pid})"));
        }
        let stopped = service::stop_owner_daemons(owner.uid)?;
        if !stopped.is_empty() {
            progress(&format!(
                "stopped {}'s bangerd (pid {stopped:?}); banger starts the new one on next use",
                owner.name
            ));
        }
        let pid = service::start_helper(&layout)?;
        progress(&format!(
            "started bangerd-root (pid {pid}, no systemd: log {}, pid file {}); bangerd starts as {} on first use of banger",
            layout.log_file().display(),
            layout.pid_file().display(),
            owner.name
        ));
    }
    Ok(InstallReport {
        owner,
        metadata: layout.metadata.clone(),
        installed,
        units: unit_paths,
        systemd: options.systemd,
        started: !options.no_start,
        upgraded,
    })
}

/// The metadata for `owner`: the bridge and network come from the owner's
/// config (defaults where unset); the helper may touch that network only.
pub fn build_metadata(
    owner: &Owner,
    layout: &Layout,
    systemd: bool,
) -> Result<InstallMetadata, InstallError> {
    let paths = owner.paths()?;
    let home = owner.home.to_string_lossy().into_owned();
    let env = move |name: &str| (name == "HOME").then(|| home.clone());
    let loaded = LoadedConfig::load_with(&paths, &env).map_err(|source| InstallError::Config {
        owner: owner.name.clone(),
        source,
    })?;
    let bridge = loaded.config.bridge_name.clone();
    let interface = Path::new("/sys/class/net").join(&bridge);
    if interface.exists() && !interface.join("bridge").exists() {
        return Err(InstallError::BridgeNameTaken {
            owner: owner.name.clone(),
            bridge,
        });
    }
    Ok(InstallMetadata {
        version: VERSION.to_owned(),
        owner_uid: owner.uid,
        owner_gid: owner.gid,
        owner_name: owner.name.clone(),
        owner_home: owner.home.clone(),
        bin_dir: layout.bin_dir.clone(),
        lib_dir: layout.lib_dir.clone(),
        root_socket: layout.root_socket.clone(),
        bridge_name: bridge,
        allowed_cidrs: vec![loaded.config.cidr],
        systemd,
        // Filled in once they are written.
        shell_files: Vec::new(),
    })
}

/// The files to install and where they come from; the three binaries must
/// exist, the agent is optional.
fn sources(options: &InstallOptions) -> Result<Vec<(Binary, PathBuf)>, InstallError> {
    let mut sources = Vec::new();
    for binary in [Binary::Banger, Binary::Bangerd, Binary::BangerdRoot] {
        let path = options.source_dir.join(binary.file_name());
        if !path.is_file() {
            return Err(InstallError::MissingSource { path });
        }
        sources.push((binary, path));
    }
    if let Some(agent) = &options.agent {
        if !agent.is_file() {
            return Err(InstallError::MissingSource {
                path: agent.clone(),
            });
        }
        sources.push((Binary::Agent, agent.clone()));
    }
    if let Some(vhost_vsock) = &options.vhost_vsock {
        if !vhost_vsock.is_file() {
            return Err(InstallError::MissingSource {
                path: vhost_vsock.clone(),
            });
        }
        sources.push((Binary::VhostVsock, vhost_vsock.clone()));
    }
    Ok(sources)
}

/// Where `vhost-device-vsock` is found when `--vhost-vsock` is not given:
/// on `PATH`, else in the `~/.cargo/bin` of each home in `homes` (the
/// sudo user's, then the caller's), where `cargo install` puts it.
pub fn find_vhost_vsock(homes: &[PathBuf]) -> Option<PathBuf> {
    let name = Binary::VhostVsock.file_name();
    let on_path = std::env::var_os("PATH")
        .map(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(name))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain(homes.iter().map(|home| home.join(".cargo/bin").join(name)))
        .find(|path| path.is_file())
}

/// Where the guest agent is found when `--agent` is not given: next to the
/// running `banger`, in `../lib/banger` (an installed layout), or where
/// scripts/build-agent.sh puts it in a cargo target dir.
pub fn find_agent(source_dir: &Path) -> Option<PathBuf> {
    let name = Binary::Agent.file_name();
    let profile = source_dir.file_name()?.to_string_lossy().into_owned();
    let target = source_dir.parent()?;
    [
        source_dir.join(name),
        target.join("lib/banger").join(name),
        target
            .join("x86_64-unknown-linux-gnu")
            .join(profile)
            .join(name),
    ]
    .into_iter()
    .find(|path| path.is_file())
}

/// Creates the owner's config, state and cache dirs (0700) as the owner,
/// so root never follows a link the owner planted in their home; the
/// daemon's unit may write only there.
fn create_owner_dirs(owner: &Owner) -> Result<(), InstallError> {
    let paths = owner.paths()?;
    for dir in [&paths.config_dir, &paths.state_dir, &paths.cache_dir] {
        let failed = |detail: String| InstallError::OwnerDir {
            owner: owner.name.clone(),
            path: dir.clone(),
            detail,
        };
        let output = owner
            .command("mkdir")
            .args(["-p", "-m", "0700", "--"])
            .arg(dir)
            .output()
            .map_err(|error| failed(error.to_string()))?;
        if !output.status.success() {
            return Err(failed(
                String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            ));
        }
    }
    Ok(())
}
