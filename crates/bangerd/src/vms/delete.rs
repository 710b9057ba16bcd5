//! `vm delete`: stop if needed (with `force`), then remove everything the
//! VM owns: TAP, files, runtime dir, known_hosts entry, row.

use banger_api::VmName;
use banger_api::vms::VmDeleted;

use std::time::Duration;

use super::stop::{kill_vmm_unlocked, stop_now_locked};
use super::{VmError, host_alias, known_hosts, row, run_dir, vm_dir};
use crate::state::AppState;

/// How often a forced delete retries killing the VMM of a busy VM.
const FORCE_RETRY: Duration = Duration::from_millis(200);

/// Deletes a VM. A running VM (or one whose VMM still runs) is refused
/// unless `force`, which kills its VMM at once, without a guest shutdown,
/// even while another operation (a create waiting for SSH) holds the VM.
pub async fn delete(state: &AppState, name: &VmName, force: bool) -> Result<VmDeleted, VmError> {
    row(&state.store(), name)?;
    let lock = state.vm_lock(name);
    let _guard = if force {
        loop {
            if let Ok(guard) = lock.try_lock() {
                break guard;
            }
            match kill_vmm_unlocked(state, name) {
                // The interrupted create may already have removed its row
                // while still holding the lock: wait for the lock all the same.
                Ok(_) | Err(VmError::NotFound { .. }) => {}
                Err(error) => return Err(error),
            }
            tokio::select! {
                guard = lock.lock() => break guard,
                () = tokio::time::sleep(FORCE_RETRY) => {}
            }
        }
    } else {
        lock.lock().await
    };
    let vm = match row(&state.store(), name) {
        Ok(vm) => vm,
        // The operation we interrupted was a create, and it undid itself.
        Err(VmError::NotFound { .. }) if force => {
            return Ok(VmDeleted {
                name: name.clone(),
                removed: Vec::new(),
            });
        }
        Err(error) => return Err(error),
    };
    let vmm_alive = vm
        .vmm
        .recorded()
        .is_some_and(|running| running.vmm.is_alive_and_same());
    // A paused VM has no VMM: its saved memory goes with its directory.
    let at_rest = vm.state.is_at_rest() || vm.state == banger_api::vms::VmState::Paused;
    if !at_rest || vmm_alive {
        if !force {
            return Err(VmError::WrongState {
                name: name.clone(),
                state: vm.state,
                hint: "stop it first (`banger vm stop`) or pass --force",
            });
        }
        stop_now_locked(state, name).await?;
    }
    let vm = row(&state.store(), name)?;
    let mut removed = Vec::new();
    let paths = state.paths();
    // Only the directories derived from the name, inside banger's own
    // dirs, are removed: a row's recorded `dir` is never trusted with a
    // recursive delete.
    let own_dir = vm_dir(&paths.state_dir, name);
    if vm.dir != own_dir {
        tracing::warn!(vm = %name, recorded = %vm.dir.display(), removing = %own_dir.display(), "the VM row names another directory; it is left alone");
    }
    for dir in [own_dir, run_dir(&paths.runtime_dir, name)] {
        match fs_err::remove_dir_all(&dir) {
            Ok(()) => removed.push(dir.display().to_string()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(VmError::step(name, "remove its files", error)),
        }
    }
    banger_host::ssh::known_hosts::remove_host(&known_hosts(&paths.state_dir), &host_alias(name))
        .map_err(|error| VmError::step(name, "remove its known_hosts entry", error))?;
    state.store().delete_vm(vm.id)?;
    state.dns().records.remove(name.as_str());
    state.forget_vm_lock(name);
    tracing::info!(vm = %name, "VM deleted");
    Ok(VmDeleted {
        name: name.clone(),
        removed,
    })
}
