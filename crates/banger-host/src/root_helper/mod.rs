//! `bangerd-root`, the root helper: its protocol ([`proto`]), the daemon's
//! client ([`RootHelperOps`]) and how the daemon finds it ([`locate`]).
//!
//! A daemon that is not root cannot create bridges, TAPs or nftables rules.
//! `sudo banger system install` starts `bangerd-root`, which serves exactly
//! the [`PrivilegedOps`](crate::privileged::PrivilegedOps) calls on a
//! root-owned Unix socket, only to the installed owner, and checks every
//! argument again against the install metadata. See docs/privileges.md.

pub mod client;
pub mod proto;

use std::path::{Path, PathBuf};

use banger_config::install::{InstallMetadata, InstallMetadataError};

pub use client::{RootHelperError, RootHelperOps, hello_blocking};
pub use proto::{ErrorCode, HelloReply, MAX_FRAME, Reply, Request, Response};

/// Overrides the install metadata's path (tests; default
/// `/etc/banger/install.toml`). The file must still be root-owned.
pub use banger_config::install::INSTALL_METADATA_ENV as METADATA_ENV;

/// Overrides the helper's socket (tests); with it, the daemon uses the
/// helper even when no install metadata exists.
pub const SOCKET_ENV: &str = "BANGER_ROOT_SOCKET";

/// Where the root helper should be, as this host's install says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelperLocation {
    /// The install metadata, when banger is installed system-wide.
    pub metadata: Option<InstallMetadata>,
    /// The helper's socket.
    pub socket: PathBuf,
}

/// Finding the helper failed.
#[derive(Debug, thiserror::Error)]
pub enum LocateError {
    /// No install and no socket override: there is no helper.
    #[error(
        "banger is not installed system-wide ({} does not exist), so a daemon that is not root has no root helper for VM networking; run `sudo banger system install`",
        path.display()
    )]
    NotInstalled {
        /// The metadata path looked at.
        path: PathBuf,
    },
    /// The metadata exists and cannot be used.
    #[error(transparent)]
    Metadata(InstallMetadataError),
}

/// Reads the install metadata (`BANGER_INSTALL_METADATA` or
/// `/etc/banger/install.toml`, root-owned) and picks the socket
/// (`BANGER_ROOT_SOCKET`, else the metadata's `root_socket`).
pub fn locate() -> Result<HelperLocation, LocateError> {
    let metadata_path = banger_config::install::metadata_path();
    let socket_override = std::env::var_os(SOCKET_ENV)
        .filter(|value| !value.is_empty())
        .map(PathBuf::from);
    locate_with(&metadata_path, socket_override)
}

/// [`locate`] with the metadata path and socket override given.
pub fn locate_with(
    metadata_path: &Path,
    socket_override: Option<PathBuf>,
) -> Result<HelperLocation, LocateError> {
    match InstallMetadata::load(metadata_path, 0) {
        Ok(metadata) => Ok(HelperLocation {
            socket: socket_override.unwrap_or_else(|| metadata.root_socket.clone()),
            metadata: Some(metadata),
        }),
        Err(InstallMetadataError::NotInstalled { path }) => match socket_override {
            Some(socket) => Ok(HelperLocation {
                metadata: None,
                socket,
            }),
            None => Err(LocateError::NotInstalled { path }),
        },
        Err(error) => Err(LocateError::Metadata(error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_metadata_only_an_override_finds_a_helper() {
        let dir = tempfile::tempdir().expect("dir");
        let missing = dir.path().join("install.toml");
        assert!(matches!(
            locate_with(&missing, None),
            Err(LocateError::NotInstalled { .. })
        ));
        let socket = dir.path().join("root.sock");
        assert_eq!(
            locate_with(&missing, Some(socket.clone())).expect("override"),
            HelperLocation {
                metadata: None,
                socket
            }
        );
    }

    #[test]
    fn metadata_names_the_socket_unless_overridden() {
        if !rustix::process::geteuid().is_root() {
            // The metadata must be root-owned; only root can write such a file.
            banger_testkit::skip_or_fail("needs root to write root-owned install metadata");
            return;
        }
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("install.toml");
        let text = "version = \"0.1.0\"\nowner_uid = 1000\nowner_gid = 1000\nowner_name = \"dev\"\n\
            owner_home = \"/home/dev\"\nbin_dir = \"/usr/local/bin\"\nlib_dir = \"/usr/local/lib/banger\"\n\
            root_socket = \"/run/banger/root.sock\"\nbridge_name = \"banger0\"\n\
            allowed_cidrs = [\"172.30.0.0/24\"]\nsystemd = true\n";
        fs_err::write(&path, text).expect("write");
        let location = locate_with(&path, None).expect("installed");
        assert_eq!(location.socket, PathBuf::from("/run/banger/root.sock"));
        assert!(location.metadata.is_some());
        let other = dir.path().join("other.sock");
        assert_eq!(
            locate_with(&path, Some(other.clone()))
                .expect("override")
                .socket,
            other
        );
        // A file others may write is never trusted.
        use std::os::unix::fs::PermissionsExt as _;
        fs_err::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).expect("chmod");
        assert!(matches!(
            locate_with(&path, None),
            Err(LocateError::Metadata(_))
        ));
    }
}
