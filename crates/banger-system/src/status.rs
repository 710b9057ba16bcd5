//! `banger system status`: what is installed and whether it runs. Needs no
//! root: the metadata is world-readable, `systemctl is-active`/`show` and
//! `/proc/<pid>/stat` answer anyone, and the owner may read their own
//! daemon's `/proc/<pid>/exe`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use banger_config::{InstallMetadata, InstallMetadataError};

use crate::layout::{Binary, Layout};
use crate::process::{self, BinaryMatch};
use crate::service;
use crate::units::{DAEMON_UNIT, ROOT_UNIT};

/// The whole status report (`--json` prints it as is).
#[derive(Debug, Clone, serde::Serialize)]
pub struct SystemStatus {
    /// Whether a system install exists.
    pub installed: bool,
    /// The metadata file.
    pub metadata_path: PathBuf,
    /// Why the metadata could not be used, when it exists but is refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata_error: Option<String>,
    /// The installed version (from the metadata).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The owner.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<OwnerInfo>,
    /// `systemd` or `detached` (the helper started without systemd).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<&'static str>,
    /// The two services.
    pub services: Vec<ServiceStatus>,
    /// The two sockets.
    pub sockets: Vec<SocketStatus>,
}

/// The owner as recorded.
#[derive(Debug, Clone, serde::Serialize)]
pub struct OwnerInfo {
    /// Login name.
    pub name: String,
    /// Uid.
    pub uid: u32,
    /// Home.
    pub home: PathBuf,
}

/// One service.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ServiceStatus {
    /// `bangerd-root` or `bangerd`.
    pub name: &'static str,
    /// The systemd unit, when systemd runs it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<&'static str>,
    /// Whether it runs.
    pub running: bool,
    /// systemd's state (`active`, `failed`, ...) or `running`/`stopped`.
    pub state: String,
    /// Its pid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// The installed binary.
    pub binary: PathBuf,
    /// What `<binary> --version` prints (its last word).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub binary_version: Option<String>,
    /// Whether the running process runs the installed binary.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matches_installed: Option<BinaryMatch>,
    /// What to do about it, when something is off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// One socket.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SocketStatus {
    /// `bangerd-root` or `bangerd`.
    pub name: &'static str,
    /// Its path.
    pub path: PathBuf,
    /// Whether a socket is there.
    pub present: bool,
}

impl SystemStatus {
    /// Whether everything is installed, running and current. Without
    /// systemd, a stopped `bangerd` is fine: banger starts it on first use.
    pub fn healthy(&self) -> bool {
        let required = |name: &str| self.mode != Some("detached") || name != "bangerd";
        self.installed
            && self.metadata_error.is_none()
            && self.services.iter().all(|service| {
                !required(service.name)
                    || (service.running
                        && service
                            .matches_installed
                            .is_none_or(BinaryMatch::is_current))
            })
            && self
                .sockets
                .iter()
                .all(|socket| !required(socket.name) || socket.present)
    }
}

/// Gathers the status of the install described by `metadata_path`.
pub fn status(metadata_path: &Path) -> SystemStatus {
    let mut report = SystemStatus {
        installed: false,
        metadata_path: metadata_path.to_owned(),
        metadata_error: None,
        version: None,
        owner: None,
        mode: None,
        services: Vec::new(),
        sockets: Vec::new(),
    };
    let metadata = match InstallMetadata::load(metadata_path, 0) {
        Ok(metadata) => metadata,
        Err(InstallMetadataError::NotInstalled { .. }) => return report,
        Err(error) => {
            report.installed = true;
            report.metadata_error = Some(banger_host::error_chain(&error));
            return report;
        }
    };
    let layout = Layout::from_metadata(&metadata);
    report.installed = true;
    report.version = Some(metadata.version.clone());
    report.mode = Some(if metadata.systemd {
        "systemd"
    } else {
        "detached"
    });
    report.owner = Some(OwnerInfo {
        name: metadata.owner_name.clone(),
        uid: metadata.owner_uid,
        home: metadata.owner_home.clone(),
    });
    let root = if metadata.systemd {
        from_unit("bangerd-root", ROOT_UNIT, &layout, Binary::BangerdRoot)
    } else {
        from_pid(
            "bangerd-root",
            service::helper_pid(&layout),
            &layout,
            Binary::BangerdRoot,
            "start it with `sudo banger system restart`",
        )
    };
    let daemon = if metadata.systemd {
        from_unit("bangerd", DAEMON_UNIT, &layout, Binary::Bangerd)
    } else {
        from_pid(
            "bangerd",
            process::find("bangerd", metadata.owner_uid)
                .into_iter()
                .next(),
            &layout,
            Binary::Bangerd,
            "banger starts it as the owner on first use (e.g. `banger daemon start`)",
        )
    };
    report.services = vec![root, daemon];
    let daemon_socket = daemon_socket(&metadata);
    report.sockets = vec![
        SocketStatus {
            name: "bangerd-root",
            present: service::is_socket(&metadata.root_socket),
            path: metadata.root_socket.clone(),
        },
        SocketStatus {
            name: "bangerd",
            present: service::is_socket(&daemon_socket),
            path: daemon_socket,
        },
    ];
    report
}

/// The owner's API socket: `/run/user/<uid>/banger/bangerd.sock` under
/// systemd; without it, where the owner's CLI puts it (their own
/// environment when they ask, else the default rule).
fn daemon_socket(metadata: &InstallMetadata) -> PathBuf {
    let base = PathBuf::from(format!("/run/user/{}", metadata.owner_uid));
    if metadata.systemd {
        return base.join("banger").join("bangerd.sock");
    }
    if rustix::process::getuid().as_raw() == metadata.owner_uid {
        if let Ok(paths) = banger_config::Paths::from_env() {
            return paths.socket();
        }
    }
    let owner = crate::owner::Owner {
        name: metadata.owner_name.clone(),
        uid: metadata.owner_uid,
        gid: metadata.owner_gid,
        group: String::new(),
        home: metadata.owner_home.clone(),
    };
    owner.default_runtime_dir().join("bangerd.sock")
}

fn from_unit(
    name: &'static str,
    unit: &'static str,
    layout: &Layout,
    binary: Binary,
) -> ServiceStatus {
    let state = service::unit_state(unit);
    let pid = service::unit_pid(unit);
    let mut status = from_pid(
        name,
        pid,
        layout,
        binary,
        &format!("sudo systemctl start {unit}; see journalctl -u {unit}"),
    );
    status.unit = Some(unit);
    status.running = state == "active" && pid.is_some();
    status.state = state;
    status
}

fn from_pid(
    name: &'static str,
    pid: Option<u32>,
    layout: &Layout,
    binary: Binary,
    start_hint: &str,
) -> ServiceStatus {
    let path = layout.binary(binary);
    let binary_version = version_of(&path);
    let running = pid.is_some_and(process::alive);
    let matches_installed = pid
        .filter(|_| running)
        .map(|pid| process::binary_match(pid, &path));
    let hint = if !running {
        Some(start_hint.to_owned())
    } else if matches_installed.is_some_and(|m| !m.is_current()) {
        Some(
            "the installed binary is newer than the running one: `sudo banger system restart`"
                .to_owned(),
        )
    } else {
        None
    };
    ServiceStatus {
        name,
        unit: None,
        running,
        state: if running { "running" } else { "stopped" }.to_owned(),
        pid: pid.filter(|_| running),
        binary: path,
        binary_version,
        matches_installed,
        hint,
    }
}

/// `<binary> --version`'s last word (`bangerd 0.1.0` → `0.1.0`).
fn version_of(binary: &Path) -> Option<String> {
    let output = Command::new(binary)
        .arg("--version")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .last()
        .map(str::to_owned)
}
