//! `banger system restart`: both services, so they run the installed
//! binaries. Under systemd that is `systemctl restart` of both units;
//! without it the detached helper is stopped and started again and the
//! owner's `bangerd` is stopped (the CLI starts the new one on next use).

use std::path::Path;

use banger_config::{InstallMetadata, InstallMetadataError};

use crate::Progress;
use crate::layout::Layout;
use crate::service::{self, ServiceError};
use crate::units::{DAEMON_UNIT, ROOT_UNIT};

/// A restart failed.
#[derive(Debug, thiserror::Error)]
pub enum RestartError {
    /// There is no usable install.
    #[error(transparent)]
    Metadata(#[from] InstallMetadataError),
    /// Stopping or starting a service failed.
    #[error(transparent)]
    Service(#[from] ServiceError),
}

/// Restarts both services of the install at `metadata_path`.
pub fn restart(metadata_path: &Path, progress: Progress<'_>) -> Result<(), RestartError> {
    let metadata = InstallMetadata::load(metadata_path, 0)?;
    let layout = Layout::from_metadata(&metadata);
    if metadata.systemd {
        service::systemctl(&["restart", ROOT_UNIT, DAEMON_UNIT])?;
        progress(&format!("restarted {ROOT_UNIT} and {DAEMON_UNIT}"));
        return Ok(());
    }
    if let Some(pid) = service::stop_helper(&layout)? {
        progress(&format!("stopped bangerd-root (pid {pid})"));
    }
    let pid = service::start_helper(&layout)?;
    progress(&format!("started bangerd-root (pid {pid})"));
    let stopped = service::stop_owner_daemons(metadata.owner_uid)?;
    if !stopped.is_empty() {
        progress(&format!(
            "stopped {}'s bangerd (pid {stopped:?}); banger starts it again on next use",
            metadata.owner_name
        ));
    }
    Ok(())
}
