//! `banger system uninstall`: stop both services and remove the units, the
//! binaries, the agent, the shell completions and man pages the metadata
//! records, and the metadata. The owner's VMs, images, config and
//! cache stay where they are (and the report names them) unless `--purge`,
//! which removes exactly the owner's three banger directories, as the
//! owner: nothing else in their home, and never by following a link root
//! would follow.
//!
//! The owner keeps the `kvm` group and their subordinate ids: other tools
//! use them too.

use std::path::{Path, PathBuf};

use banger_config::{InstallMetadata, InstallMetadataError};

use crate::Progress;
use crate::files::{self, FileError};
use crate::layout::{Binary, Layout};
use crate::owner::{Owner, OwnerError};
use crate::service::{self, ServiceError};
use crate::shell_files;
use crate::units::{self, DAEMON_UNIT, ROOT_UNIT};

/// What to remove.
#[derive(Debug, Clone, Copy, Default)]
pub struct UninstallOptions {
    /// Also remove the owner's banger config, state (VMs, images) and cache.
    pub purge: bool,
}

/// What an uninstall did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct UninstallReport {
    /// The owner.
    pub owner: String,
    /// Files and directories removed.
    pub removed: Vec<PathBuf>,
    /// The owner's directories kept (empty with `--purge`).
    pub kept: Vec<PathBuf>,
}

/// An uninstall failed.
#[derive(Debug, thiserror::Error)]
pub enum UninstallError {
    /// There is no usable install.
    #[error(transparent)]
    Metadata(#[from] InstallMetadataError),
    /// The owner's directories could not be resolved.
    #[error(transparent)]
    Owner(#[from] OwnerError),
    /// Stopping a service failed.
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// Removing a file failed.
    #[error(transparent)]
    File(#[from] FileError),
    /// `--purge` could not remove one of the owner's directories.
    #[error("cannot remove {path} as {owner}: {detail}")]
    Purge {
        /// The owner.
        owner: String,
        /// The directory.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
}

/// Uninstalls the install at `metadata_path`.
pub fn uninstall(
    metadata_path: &Path,
    options: UninstallOptions,
    progress: Progress<'_>,
) -> Result<UninstallReport, UninstallError> {
    let metadata = InstallMetadata::load(metadata_path, 0)?;
    let layout = Layout {
        metadata: metadata_path.to_owned(),
        ..Layout::from_metadata(&metadata)
    };
    let owner = Owner {
        name: metadata.owner_name.clone(),
        uid: metadata.owner_uid,
        gid: metadata.owner_gid,
        group: metadata.owner_gid.to_string(),
        home: metadata.owner_home.clone(),
    };
    let mut removed = Vec::new();
    if metadata.systemd {
        // A unit already gone is fine: remove what is left.
        if let Err(error) = service::systemctl(&["disable", "--now", DAEMON_UNIT, ROOT_UNIT]) {
            progress(&format!("warning: {}", banger_host::error_chain(&error)));
        }
        for unit in [DAEMON_UNIT, ROOT_UNIT] {
            let path = units::unit_path(&layout, unit);
            if files::remove_file(&path)? {
                removed.push(path);
            }
        }
        let _ = service::systemctl(&["daemon-reload"]);
        let _ = service::systemctl(&["reset-failed", DAEMON_UNIT, ROOT_UNIT]);
        progress(&format!(
            "stopped and removed {DAEMON_UNIT} and {ROOT_UNIT}"
        ));
    } else {
        let daemons = service::stop_owner_daemons(owner.uid)?;
        if !daemons.is_empty() {
            progress(&format!(
                "stopped {}'s bangerd (pid {daemons:?})",
                owner.name
            ));
        }
        if let Some(pid) = service::stop_helper(&layout)? {
            progress(&format!("stopped bangerd-root (pid {pid})"));
        }
        if files::remove_file(&layout.log_file())? {
            removed.push(layout.log_file());
        }
        files::remove_empty_dir(&layout.log_dir);
        files::remove_empty_dir(&layout.run_dir());
    }
    for binary in Binary::ALL {
        let path = layout.binary(binary);
        if files::remove_file(&path)? {
            removed.push(path);
        }
    }
    removed.extend(shell_files::remove(Path::new("/"), &metadata.shell_files)?);
    if files::remove_empty_dir(&layout.lib_dir) {
        removed.push(layout.lib_dir.clone());
    }
    if files::remove_file(&layout.metadata)? {
        removed.push(layout.metadata.clone());
    }
    files::remove_empty_dir(&layout.metadata_dir());
    for path in &removed {
        progress(&format!("removed {}", path.display()));
    }

    let paths = owner.paths()?;
    let owner_dirs = [paths.state_dir, paths.config_dir, paths.cache_dir];
    let mut kept = Vec::new();
    if options.purge {
        for dir in &owner_dirs {
            purge_dir(&owner, dir)?;
            progress(&format!("purged {}", dir.display()));
            removed.push(dir.clone());
        }
    } else {
        kept = owner_dirs.into_iter().filter(|dir| dir.exists()).collect();
        if !kept.is_empty() {
            let list: Vec<String> = kept.iter().map(|d| d.display().to_string()).collect();
            progress(&format!(
                "kept {}'s VMs, images, config and cache: {} (`sudo banger system uninstall --purge` removes them; reinstalling picks them up again)",
                owner.name,
                list.join(", ")
            ));
        }
    }
    Ok(UninstallReport {
        owner: owner.name,
        removed,
        kept,
    })
}

/// Removes one of the owner's banger directories as the owner, staying on
/// its file system.
fn purge_dir(owner: &Owner, dir: &Path) -> Result<(), UninstallError> {
    let failed = |detail: String| UninstallError::Purge {
        owner: owner.name.clone(),
        path: dir.to_owned(),
        detail,
    };
    let output = owner
        .command("rm")
        .args(["-rf", "--one-file-system", "--"])
        .arg(dir)
        .output()
        .map_err(|error| failed(error.to_string()))?;
    if !output.status.success() {
        return Err(failed(
            String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        ));
    }
    Ok(())
}
