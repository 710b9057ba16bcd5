//! Client calls of a VM's snapshots and of forks.

use banger_api::operation::Progress;
use banger_api::snapshots::{SnapshotCreateRequest, SnapshotDeleted, SnapshotInfo, VmForkRequest};
use banger_api::vms::VmInfo;
use banger_api::{SnapshotName, VmName, paths};
use hyper::Method;

use crate::{ClientError, DaemonClient, Operation};

impl DaemonClient {
    /// A VM's snapshots, oldest first.
    pub async fn snapshots(&self, vm: &VmName) -> Result<Vec<SnapshotInfo>, ClientError> {
        self.call(Method::GET, &paths::vm_snapshots(vm.as_str()), None::<&()>)
            .await
    }

    /// Takes a snapshot of a VM.
    pub async fn create_snapshot(
        &self,
        vm: &VmName,
        request: &SnapshotCreateRequest,
        on_progress: &mut (dyn FnMut(&Progress) + Send),
    ) -> Result<SnapshotInfo, ClientError> {
        self.stream(
            Operation::SnapshotVm { name: vm.clone() },
            Method::POST,
            &paths::vm_snapshots(vm.as_str()),
            Some(request),
            on_progress,
        )
        .await
    }

    /// Deletes a snapshot.
    pub async fn delete_snapshot(
        &self,
        vm: &VmName,
        snapshot: &SnapshotName,
    ) -> Result<SnapshotDeleted, ClientError> {
        self.call(
            Method::DELETE,
            &paths::vm_snapshot(vm.as_str(), snapshot.as_str()),
            None::<&()>,
        )
        .await
    }

    /// Puts a VM back to a snapshot.
    pub async fn restore_snapshot(
        &self,
        vm: &VmName,
        snapshot: &SnapshotName,
        on_progress: &mut (dyn FnMut(&Progress) + Send),
    ) -> Result<VmInfo, ClientError> {
        self.stream(
            Operation::RestoreVm { name: vm.clone() },
            Method::POST,
            &paths::vm_snapshot_restore(vm.as_str(), snapshot.as_str()),
            None::<&()>,
            on_progress,
        )
        .await
    }

    /// Makes new VMs from a running or paused VM.
    pub async fn fork_vm(
        &self,
        source: &VmName,
        request: &VmForkRequest,
        on_progress: &mut (dyn FnMut(&Progress) + Send),
    ) -> Result<Vec<VmInfo>, ClientError> {
        self.stream(
            Operation::ForkVm {
                name: source.clone(),
            },
            Method::POST,
            &paths::vm_fork(source.as_str()),
            Some(request),
            on_progress,
        )
        .await
    }
}
