//! Types of a VM's snapshots (`/v1/vms/{name}/snapshots`) and of forks
//! (`/v1/vms/{name}/fork`).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::vms::{VmBackend, VmState};
use crate::{NameError, SnapshotName, VmName};

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

/// Why a fork's names cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForkNamesError {
    /// The count is out of range.
    #[error("--count {count} is out of range; use 1 to {MAX_FORK_COUNT}")]
    Count {
        /// The count asked for.
        count: u32,
    },
    /// A copy's name (`NAME-INDEX`) breaks the VM name rule.
    #[error("fork name {name}-{index} is not a valid VM name; pick a shorter --name")]
    Name {
        /// The base name.
        name: VmName,
        /// The copy's number.
        index: u32,
        /// Why.
        #[source]
        source: NameError,
    },
}

impl VmForkRequest {
    /// The names the fork makes: `name`, or `name-1` ... `name-count` when
    /// `count` is above 1. The one rule the daemon, the MCP server and the
    /// TUI all check.
    pub fn names(&self) -> Result<Vec<VmName>, ForkNamesError> {
        let count = self.count.unwrap_or(1);
        if count == 0 || count > MAX_FORK_COUNT {
            return Err(ForkNamesError::Count { count });
        }
        if count == 1 {
            return Ok(vec![self.name.clone()]);
        }
        (1..=count)
            .map(|index| {
                VmName::parse(&format!("{}-{index}", self.name)).map_err(|source| {
                    ForkNamesError::Name {
                        name: self.name.clone(),
                        index,
                        source,
                    }
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(name: &str, count: Option<u32>) -> VmForkRequest {
        VmForkRequest {
            name: VmName::parse(name).expect("name"),
            count,
        }
    }

    fn names(request: &VmForkRequest) -> Vec<String> {
        request
            .names()
            .expect("valid")
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn fork_names_number_the_copies() {
        assert_eq!(names(&request("web", None)), ["web"]);
        assert_eq!(names(&request("web", Some(1))), ["web"]);
        assert_eq!(names(&request("web", Some(3))), ["web-1", "web-2", "web-3"]);
        assert_eq!(names(&request("a", Some(MAX_FORK_COUNT))).len(), 16);
        for count in [0, MAX_FORK_COUNT + 1, u32::MAX] {
            assert_eq!(
                request("web", Some(count)).names(),
                Err(ForkNamesError::Count { count })
            );
        }
        assert!(matches!(
            request(&"a".repeat(63), Some(2)).names(),
            Err(ForkNamesError::Name { index: 1, .. })
        ));
    }
}
