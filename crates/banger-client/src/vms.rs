//! Client calls of the `/v1/vms` resource.

use banger_api::operation::Progress;
use banger_api::vms::{
    AgentStatus, VmAdoptRequest, VmCreateRequest, VmDeleted, VmInfo, VmKillRequest, VmOrphan,
    VmPorts, VmSetRequest, VmSignal, VmStats,
};
use banger_api::{VmName, paths};
use hyper::Method;

use crate::{ClientError, DaemonClient, Operation};

impl DaemonClient {
    /// All VMs.
    pub async fn vms(&self) -> Result<Vec<VmInfo>, ClientError> {
        self.call(Method::GET, paths::VMS, None::<&()>).await
    }

    /// One VM.
    pub async fn vm(&self, name: &VmName) -> Result<VmInfo, ClientError> {
        self.call(Method::GET, &paths::vm(name.as_str()), None::<&()>)
            .await
    }

    /// Creates (and by default starts) a VM.
    pub async fn create_vm(
        &self,
        request: &VmCreateRequest,
        on_progress: &mut (dyn FnMut(&Progress) + Send),
    ) -> Result<VmInfo, ClientError> {
        let operation = Operation::CreateVm {
            name: request.name.clone(),
        };
        self.stream(
            operation,
            Method::POST,
            paths::VMS,
            Some(request),
            on_progress,
        )
        .await
    }

    /// Re-registers an orphaned VM directory.
    pub async fn adopt_vm(&self, request: &VmAdoptRequest) -> Result<VmInfo, ClientError> {
        self.call(Method::POST, paths::VM_ADOPT, Some(request))
            .await
    }

    /// Directories under `<state dir>/vms/` that no VM owns.
    pub async fn vm_orphans(&self) -> Result<Vec<VmOrphan>, ClientError> {
        self.call(Method::GET, paths::VM_ORPHANS, None::<&()>).await
    }

    /// Starts a VM and waits for SSH.
    pub async fn start_vm(
        &self,
        name: &VmName,
        on_progress: &mut (dyn FnMut(&Progress) + Send),
    ) -> Result<VmInfo, ClientError> {
        self.stream(
            Operation::StartVm { name: name.clone() },
            Method::POST,
            &paths::vm_action(name.as_str(), "start"),
            None::<&()>,
            on_progress,
        )
        .await
    }

    /// Restarts a VM.
    pub async fn restart_vm(
        &self,
        name: &VmName,
        on_progress: &mut (dyn FnMut(&Progress) + Send),
    ) -> Result<VmInfo, ClientError> {
        self.stream(
            Operation::RestartVm { name: name.clone() },
            Method::POST,
            &paths::vm_action(name.as_str(), "restart"),
            None::<&()>,
            on_progress,
        )
        .await
    }

    /// Pauses a running VM (its memory to a file, its VMM ended).
    pub async fn pause_vm(&self, name: &VmName) -> Result<VmInfo, ClientError> {
        self.call(
            Method::POST,
            &paths::vm_action(name.as_str(), "pause"),
            None::<&()>,
        )
        .await
    }

    /// Resumes a paused VM and waits for SSH.
    pub async fn resume_vm(
        &self,
        name: &VmName,
        on_progress: &mut (dyn FnMut(&Progress) + Send),
    ) -> Result<VmInfo, ClientError> {
        self.stream(
            Operation::ResumeVm { name: name.clone() },
            Method::POST,
            &paths::vm_action(name.as_str(), "resume"),
            None::<&()>,
            on_progress,
        )
        .await
    }

    /// Stops a VM.
    pub async fn stop_vm(&self, name: &VmName) -> Result<VmInfo, ClientError> {
        self.call(
            Method::POST,
            &paths::vm_action(name.as_str(), "stop"),
            None::<&()>,
        )
        .await
    }

    /// Signals a VM's VMM.
    pub async fn kill_vm(&self, name: &VmName, signal: VmSignal) -> Result<VmInfo, ClientError> {
        let request = VmKillRequest {
            signal: Some(signal),
        };
        self.call(
            Method::POST,
            &paths::vm_action(name.as_str(), "kill"),
            Some(&request),
        )
        .await
    }

    /// Changes a stopped VM.
    pub async fn set_vm(
        &self,
        name: &VmName,
        request: &VmSetRequest,
    ) -> Result<VmInfo, ClientError> {
        self.call(Method::PATCH, &paths::vm(name.as_str()), Some(request))
            .await
    }

    /// Deletes a VM; `force` stops it first when running.
    pub async fn delete_vm(&self, name: &VmName, force: bool) -> Result<VmDeleted, ClientError> {
        let path = format!("{}?force={force}", paths::vm(name.as_str()));
        self.call(Method::DELETE, &path, None::<&()>).await
    }

    /// Console bytes from `offset`, and the offset to continue from.
    pub async fn vm_console(
        &self,
        name: &VmName,
        offset: u64,
    ) -> Result<(Vec<u8>, u64), ClientError> {
        let path = format!("{}?offset={offset}", paths::vm_console(name.as_str()));
        self.raw(Method::GET, &path).await
    }

    /// The guest's listening ports.
    pub async fn vm_ports(&self, name: &VmName) -> Result<VmPorts, ClientError> {
        self.call(Method::GET, &paths::vm_ports(name.as_str()), None::<&()>)
            .await
    }

    /// A fresh stats sample.
    pub async fn vm_stats(&self, name: &VmName) -> Result<VmStats, ClientError> {
        self.call(Method::GET, &paths::vm_stats(name.as_str()), None::<&()>)
            .await
    }

    /// Whether the VM's agent answers.
    pub async fn vm_agent(&self, name: &VmName) -> Result<AgentStatus, ClientError> {
        self.call(Method::GET, &paths::vm_agent(name.as_str()), None::<&()>)
            .await
    }
}
