//! `PUT /vsock`: the hybrid-vsock device (spec definition `Vsock`).
//!
//! Firecracker creates and listens on `uds_path` itself; it fails if the file
//! already exists, so the backend removes stale sockets first.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Body of `PUT /vsock`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VsockConfig {
    /// Guest context id (3 or more).
    pub guest_cid: u32,
    /// Host Unix socket for host-initiated connections.
    pub uds_path: PathBuf,
}
