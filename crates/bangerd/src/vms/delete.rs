//! `vm delete`: stop if needed (with `force`), then remove everything the
//! VM owns: TAP, files, runtime dir, known_hosts entry, row.

use banger_api::VmName;
use banger_api::vms::VmDeleted;

use super::stop::stop_locked;
use super::{VmError, host_alias, known_hosts, row, run_dir, vm_dir};
use crate::state::AppState;

/// Deletes a VM. A running VM is refused unless `force`, which stops it first.
pub async fn delete(state: &AppState, name: &VmName, force: bool) -> Result<VmDeleted, VmError> {
    let lock = state.vm_lock(name);
    let _guard = lock.lock().await;
    let vm = row(&state.store(), name)?;
    if !vm.state.is_at_rest() {
        if !force {
            return Err(VmError::WrongState {
                name: name.clone(),
                state: vm.state,
                hint: "stop it first (`banger vm stop`) or pass --force",
            });
        }
        stop_locked(state, name).await?;
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
