//! `PUT /drives/{drive_id}`: one virtio-block device (spec definition `Drive`).
//!
//! Firecracker attaches drives in the order they are configured, so the
//! backend sends them in the spec's disk order to keep `vda`, `vdb`, ...

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Block device caching strategy (`cache_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CacheType {
    /// Flushes are ignored (Firecracker's default).
    Unsafe,
    /// Flushes reach the host file.
    Writeback,
}

/// Body of `PUT /drives/{drive_id}`; `drive_id` must equal the path's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DriveConfig {
    /// Drive id (also in the URL).
    pub drive_id: String,
    /// Host path of the disk image.
    pub path_on_host: PathBuf,
    /// Whether Firecracker should build `root=` for it. Always false for
    /// banger: the initramfs mounts the disks itself.
    pub is_root_device: bool,
    /// Attach read-only.
    pub is_read_only: bool,
    /// Caching strategy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_type: Option<CacheType>,
}

/// Body of `PATCH /drives/{drive_id}` (spec definition `PartialDrive`):
/// points a drive of a loaded snapshot at another file (a fork's own copy
/// of the disks) before its vCPUs run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartialDrive {
    /// Drive id (also in the URL).
    pub drive_id: String,
    /// New host path of the disk image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_on_host: Option<PathBuf>,
}
