//! `PATCH /vm`, `PUT /snapshot/create` and `PUT /snapshot/load`: pausing a
//! microVM and saving or loading its state (spec definitions `Vm`,
//! `SnapshotCreateParams`, `SnapshotLoadParams`, `MemoryBackend`,
//! `NetworkOverride`, `VsockOverride`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The microVM's running state (`Vm.state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum VmRunState {
    /// vCPUs stopped (before a snapshot).
    Paused,
    /// vCPUs running again.
    Resumed,
}

/// Body of `PATCH /vm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmConfig {
    /// The state to go to.
    pub state: VmRunState,
}

/// `SnapshotCreateParams.snapshot_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SnapshotType {
    /// All of guest memory.
    Full,
    /// Only memory dirtied since the last snapshot.
    Diff,
}

/// Body of `PUT /snapshot/create`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotCreateParams {
    /// Where guest memory is written.
    pub mem_file_path: PathBuf,
    /// Where the microVM (device and vCPU) state is written.
    pub snapshot_path: PathBuf,
    /// Full or Diff (default Full).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot_type: Option<SnapshotType>,
}

/// `MemoryBackend.backend_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemoryBackendType {
    /// Guest memory from a file.
    File,
    /// Guest memory served by a userfaultfd handler.
    Uffd,
}

/// `MemoryBackend`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryBackend {
    /// File or Uffd.
    pub backend_type: MemoryBackendType,
    /// The memory file (or the UFFD socket).
    pub backend_path: PathBuf,
}

/// `NetworkOverride`: another TAP for an interface on restore.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkOverride {
    /// The interface (`eth0`).
    pub iface_id: String,
    /// The TAP to use now.
    pub host_dev_name: String,
}

/// `VsockOverride`: another Unix socket for the vsock device on restore.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VsockOverride {
    /// The socket to use now.
    pub uds_path: PathBuf,
}

/// Body of `PUT /snapshot/load`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnapshotLoadParams {
    /// The microVM state file.
    pub snapshot_path: PathBuf,
    /// Where guest memory comes from.
    pub mem_backend: MemoryBackend,
    /// Resume the vCPUs once loaded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resume_vm: Option<bool>,
    /// TAPs to use instead of the recorded ones.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub network_overrides: Vec<NetworkOverride>,
    /// vsock socket to use instead of the recorded one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vsock_override: Option<VsockOverride>,
    /// Advance kvmclock by the wall-clock time since the snapshot (x86).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clock_realtime: Option<bool>,
}
