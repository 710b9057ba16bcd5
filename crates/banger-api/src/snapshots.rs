//! Types of a VM's snapshots (`/v1/vms/{name}/snapshots`) and of forks
//! (`/v1/vms/{name}/fork`).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::vms::{VmBackend, VmState};
use crate::{SnapshotName, VmName};

/// Most VMs one fork makes.
pub const MAX_FORK_COUNT: u32 = 16;

/// One snapshot of a VM: its disks, and its memory when it was running or
/// paused, at one instant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SnapshotInfo {
    /// The VM it belongs to.
    pub vm: VmName,
    /// Its name, unique within the VM.
    pub name: SnapshotName,
    /// The VM's state when it was taken (`running`, `paused` or `stopped`).
    pub vm_state: VmState,
    /// Whether guest memory was saved (a restore then resumes it where it
    /// was); without memory a restore leaves the VM stopped.
    pub memory: bool,
    /// The backend that saved the memory, when there is memory (a restore
    /// needs the same one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<VmBackend>,
    /// Bytes the snapshot takes on the host (memory and disk copies; shared
    /// reflinked extents are counted in full).
    pub bytes: u64,
    /// When it was taken (Unix seconds).
    pub created_at: i64,
}

/// Body of `POST /v1/vms/{name}/snapshots`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SnapshotCreateRequest {
    /// Its name (default: `s-` and the UTC time, e.g. `s-20261130-141502`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<SnapshotName>,
}

/// Result of `DELETE /v1/vms/{name}/snapshots/{snapshot}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SnapshotDeleted {
    /// The VM.
    pub vm: VmName,
    /// The snapshot removed.
    pub name: SnapshotName,
    /// Bytes given back to the host.
    pub bytes: u64,
}

/// Body of `POST /v1/vms/{name}/fork`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VmForkRequest {
    /// Name of the new VM; with `count` above 1 the new VMs are
    /// `NAME-1` ... `NAME-COUNT`.
    pub name: VmName,
    /// How many VMs to make (1 to [`MAX_FORK_COUNT`], default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 16)]
    pub count: Option<u32>,
}
