//! VM tools: list, create, pause, resume, delete, ports, console logs
//! (`vm_fork` is in `fork`).

use banger_api::vms::{VmCreateRequest, VmInfo};
use banger_api::{ImageName, VmName};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{ToolError, Tools, arguments, to_result};
use crate::bound::{self, DEFAULT_LOG_BYTES, Tail};

/// A VM as the tools show it (no key paths).
#[derive(Debug, Serialize)]
pub(super) struct VmSummary {
    name: VmName,
    state: String,
    image: Option<ImageName>,
    ip: String,
    hostname: String,
    vcpus: u8,
    memory_mib: u32,
    disk_bytes: u64,
    nat: bool,
    last_error: Option<String>,
    created_by_this_server: bool,
}

impl VmSummary {
    pub(super) fn new(tools: &Tools, vm: &VmInfo) -> Self {
        Self {
            name: vm.name.clone(),
            state: vm.state.to_string(),
            image: vm.image.clone(),
            ip: vm.ip.to_string(),
            hostname: vm.ssh.host_alias.clone(),
            vcpus: vm.vcpus,
            memory_mib: vm.memory_mib,
            disk_bytes: vm.disk_bytes,
            nat: vm.nat,
            last_error: vm.last_error.clone(),
            created_by_this_server: tools.created_here(&vm.name),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NoArgs {}

pub(super) async fn list(tools: &Tools, args: Value) -> Result<Value, ToolError> {
    let NoArgs {} = arguments("vm_list", args)?;
    let vms = tools.client().await?.vms().await?;
    let vms: Vec<VmSummary> = vms.iter().map(|vm| VmSummary::new(tools, vm)).collect();
    to_result(serde_json::json!({ "vms": vms }))
}

/// Resources of a new VM: `vm_create`'s arguments, and part of `vm_run`'s.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Resources {
    pub(super) name: Option<VmName>,
    pub(super) image: Option<ImageName>,
    pub(super) vcpu: Option<u8>,
    pub(super) memory_mib: Option<u32>,
    pub(super) disk_gib: Option<u32>,
    #[serde(default)]
    pub(super) nat: bool,
}

impl Resources {
    fn request(&self) -> VmCreateRequest {
        VmCreateRequest {
            name: self.name.clone(),
            image: self.image.clone(),
            vcpus: self.vcpu,
            memory_mib: self.memory_mib,
            disk_bytes: self.disk_gib.map(|gib| u64::from(gib) << 30),
            no_start: false,
            nat: self.nat,
        }
    }
}

/// Creates and starts a VM, remembering it as created here.
pub(super) async fn create_vm(tools: &Tools, resources: &Resources) -> Result<VmInfo, ToolError> {
    let request = resources.request();
    let client = tools.client().await?;
    // Claimed before the daemon answers (a VM kept after an SSH timeout is
    // still this server's to delete), but only a name no VM has yet: a
    // taken name is refused by the daemon and stays someone else's.
    let claimed = match &request.name {
        Some(name) if client.vm(name).await.is_err() => {
            tools.remember(name);
            Some(name.clone())
        }
        _ => None,
    };
    let vm = client
        .create_vm(&request, &mut |progress| {
            eprintln!("banger mcp: vm_create: {}", progress.message);
        })
        .await;
    let vm = match vm {
        Ok(vm) => vm,
        Err(error) => {
            if let Some(name) = &claimed {
                // Nothing was kept under the name: it is not ours.
                if client.vm(name).await.is_err() {
                    tools.forget(name);
                }
            }
            return Err(error.into());
        }
    };
    tools.remember(&vm.name);
    Ok(vm)
}

pub(super) async fn create(tools: &Tools, args: Value) -> Result<Value, ToolError> {
    let resources: Resources = arguments("vm_create", args)?;
    let vm = create_vm(tools, &resources).await?;
    to_result(VmSummary::new(tools, &vm))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VmArg {
    vm: VmName,
}

pub(super) async fn pause(tools: &Tools, args: Value) -> Result<Value, ToolError> {
    let VmArg { vm } = arguments("vm_pause", args)?;
    let info = tools.client().await?.pause_vm(&vm).await?;
    to_result(VmSummary::new(tools, &info))
}

pub(super) async fn resume(tools: &Tools, args: Value) -> Result<Value, ToolError> {
    let VmArg { vm } = arguments("vm_resume", args)?;
    let info = tools
        .client()
        .await?
        .resume_vm(&vm, &mut |progress| {
            eprintln!("banger mcp: vm_resume: {}", progress.message);
        })
        .await?;
    to_result(VmSummary::new(tools, &info))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteArgs {
    vm: VmName,
    #[serde(default = "super::yes")]
    force: bool,
}

pub(super) async fn delete(tools: &Tools, args: Value) -> Result<Value, ToolError> {
    let args: DeleteArgs = arguments("vm_delete", args)?;
    if !tools.allow_delete_any && !tools.created_here(&args.vm) {
        return Err(ToolError::NotCreatedHere { vm: args.vm });
    }
    let deleted = tools
        .client()
        .await?
        .delete_vm(&args.vm, args.force)
        .await?;
    tools.forget(&deleted.name);
    to_result(serde_json::json!({ "deleted": deleted.name }))
}

pub(super) async fn ports(tools: &Tools, args: Value) -> Result<Value, ToolError> {
    let VmArg { vm } = arguments("vm_ports", args)?;
    // The agent reports at most banger_agent_proto::MAX_SOCKETS sockets.
    to_result(tools.client().await?.vm_ports(&vm).await?)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogsArgs {
    vm: VmName,
    max_bytes: Option<u64>,
}

/// Most console reads one `vm_logs` makes (each up to the daemon's chunk).
const MAX_CONSOLE_READS: usize = 512;

pub(super) async fn logs(tools: &Tools, args: Value) -> Result<Value, ToolError> {
    let args: LogsArgs = arguments("vm_logs", args)?;
    let client = tools.client().await?;
    let mut tail = Tail::new(bound::limit(args.max_bytes, DEFAULT_LOG_BYTES));
    let mut offset = 0;
    for _ in 0..MAX_CONSOLE_READS {
        let (bytes, next) = client.vm_console(&args.vm, offset).await?;
        if bytes.is_empty() || next <= offset {
            break;
        }
        tail.push(&bytes);
        offset = next;
    }
    let console = tail.finish();
    to_result(serde_json::json!({
        "vm": args.vm,
        "console": console.text,
        "bytes": console.bytes,
        "truncated": console.truncated,
    }))
}
