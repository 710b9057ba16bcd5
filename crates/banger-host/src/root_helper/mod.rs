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

use banger_config::install::{INSTALL_METADATA_PATH, InstallMetadata, InstallMetadataError};

pub use client::{RootHelperError, RootHelperOps, hello_blocking};
pub use proto::{ErrorCode, HelloReply, MAX_FRAME, Reply, Request, Response};

/// Overrides the install metadata's path (tests; default
/// `/etc/banger/install.toml`). The file must still be root-owned.
pub const METADATA_ENV: &str = "BANGER_INSTALL_METADATA";

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
    let metadata_path = std::env::var_os(METADATA_ENV)
        .filter(|value| !value.is_empty())
        .map_or_else(|| PathBuf::from(INSTALL_METADATA_PATH), PathBuf::from);
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
