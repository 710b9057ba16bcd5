//! Host disk usage (`GET /v1/usage`, `banger system df`) and the prunes that
//! give it back (`POST /v1/images/prune`, `POST /v1/kernels/prune`).
//!
//! Every number is what the host really holds (allocated bytes,
//! `st_blocks * 512`), not apparent size: VM disks are sparse and trimmed.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{ImageName, KernelName, VmName};

/// What one VM holds on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VmUsage {
    /// The VM.
    pub name: VmName,
    /// Its own disks (overlay and work disk).
    pub disks_bytes: u64,
    /// Saved memory and device state of a paused VM (`memory/`).
    pub memory_bytes: u64,
    /// Its snapshots (`snapshots/`: disk copies and memory).
    pub snapshots_bytes: u64,
    /// Everything in the VM's directory (the above plus logs and keys).
    pub total_bytes: u64,
}

/// What one image holds on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImageUsage {
    /// The image.
    pub name: ImageName,
    /// Whether banger owns its files (registered images' files are the
    /// user's and count zero here).
    pub managed: bool,
    /// Bytes of its directory in banger's store.
    pub total_bytes: u64,
    /// VMs created from it.
    pub used_by_vms: Vec<VmName>,
}

/// What one kernel holds on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KernelUsage {
    /// The kernel.
    pub name: KernelName,
    /// Bytes of its directory.
    pub total_bytes: u64,
    /// Images that boot it.
    pub used_by_images: Vec<ImageName>,
}

/// What one cache directory holds on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CacheUsage {
    /// The directory's name under the cache dir (`oci`, `downloads`,
    /// `image-build`, `grown-seeds`, ...).
    pub name: String,
    /// The directory.
    pub path: String,
    /// Bytes in it.
    pub total_bytes: u64,
}

/// Body of `GET /v1/usage`: banger's use of host disk space.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UsageReport {
    /// Per VM.
    pub vms: Vec<VmUsage>,
    /// Per image.
    pub images: Vec<ImageUsage>,
    /// Per kernel.
    pub kernels: Vec<KernelUsage>,
    /// Per cache directory; removing any of them only costs a download or
    /// build later.
    pub caches: Vec<CacheUsage>,
    /// Sum of VMs, images, kernels and caches. Files shared between them
    /// (reflinks, hard links between the build cache and an image) count in
    /// each, so the host may hold less.
    pub total_bytes: u64,
}

/// Body of `POST /v1/images/prune` and `POST /v1/kernels/prune`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PruneRequest {
    /// Report what would go without removing anything.
    #[serde(default)]
    pub dry_run: bool,
    /// Also remove the default image or kernel (`default_image_name`,
    /// `default_kernel_name`) when nothing uses it.
    #[serde(default)]
    pub all: bool,
}

/// One image or kernel a prune removed (or, in a dry run, would remove).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Pruned {
    /// Its name.
    pub name: String,
    /// Bytes that came (or would come) back to the host.
    pub bytes: u64,
    /// Directories removed (or to be removed), its own kernel's included.
    pub removed_files: Vec<String>,
}

/// One image or kernel a prune kept, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PruneKept {
    /// Its name.
    pub name: String,
    /// Why it stays, e.g. `used by VMs alpha, beta`.
    pub reason: String,
}

/// Answer of a prune.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PruneReport {
    /// Whether this was a dry run (nothing removed).
    pub dry_run: bool,
    /// What was (or would be) removed.
    pub removed: Vec<Pruned>,
    /// What was kept, with the reason.
    pub kept: Vec<PruneKept>,
    /// Sum of the removed bytes.
    pub freed_bytes: u64,
}
