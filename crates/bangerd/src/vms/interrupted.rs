//! What a daemon that died in the middle of a create or a start leaves
//! behind, found and put right when the next daemon starts (after
//! [`super::recover`] has adopted or retired every VM that had a VMM).
//!
//! - A create that died before its VM was kept: its row, with a directory
//!   holding the create-in-progress marker ([`super::create::CREATING_MARKER`]),
//!   or a `created` row whose directory was never made. Those disks were
//!   never booted to a prompt, so they hold nothing of anyone's: the VM is
//!   removed (row, directory, known_hosts entry, DNS record, runtime dir) and
//!   the name is free again. A VM whose VMM was adopted running is kept and
//!   only loses the marker. A VM in `error` is never removed here: its state
//!   is in doubt, and doubt keeps disks.
//! - A VMM spawned but not yet recorded when the daemon died: recovery cannot
//!   adopt what no row names, so it would run on, unseen, on the VM's disks
//!   (and a later start would give it a twin). Every VM that is not running
//!   and not in `error` has its leftover processes killed: those of our own
//!   uid whose command line names a path inside the VM's runtime dir
//!   (`<runtime>/vms/<name>/`: QEMU's QMP socket, vhost-device-vsock's
//!   socket, Firecracker's API socket) or its state dir (`<state>/vms/<name>/`:
//!   the console copier's log). Those paths are the VM's own, so no other
//!   process is ever signalled; each is pinned by a pidfd and its identity
//!   re-checked before the signal (see `banger_vmm::ProcessIdentity`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use banger_api::vms::VmState;
use banger_vmm::{ProcessIdentity, Signal};

use super::create::CREATING_MARKER;
use super::{host_alias, known_hosts, run_dir};
use crate::state::AppState;
use crate::store::VmRow;

/// How long killed leftover processes get to disappear.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// Removes the VMs of creates that a dead daemon left unfinished and kills
/// VMM processes no row records (see the module doc). Run once at start,
/// after [`super::recover`].
pub async fn finish_interrupted(state: &AppState) {
    let vms = match state.store().vms() {
        Ok(vms) => vms,
        Err(error) => {
            tracing::error!(error = %crate::error::error_chain(&error), "cannot read VMs to finish interrupted creates");
            return;
        }
    };
    let paths = state.paths();
    let mut removed_any = false;
    for vm in vms {
        let marker = vm.dir.join(CREATING_MARKER);
        let marked = fs_err::symlink_metadata(&marker).is_ok_and(|meta| meta.is_file());
        match vm.state {
            // Adopted running: the create's VM lives on; it is kept.
            VmState::Running | VmState::Paused | VmState::Starting | VmState::Stopping => {
                if marked {
                    super::create::remove_creating_marker(&vm);
                }
                continue;
            }
            // In doubt: kept as it is, with its reason.
            VmState::Error => continue,
            _ => {}
        }
        let leftovers = leftover_processes(&run_dir(&paths.runtime_dir, &vm.name), &vm.dir);
        if !leftovers.is_empty() {
            tracing::warn!(vm = %vm.name, pids = ?leftovers.iter().map(|p| p.pid).collect::<Vec<_>>(), "killing processes of a VM no VMM record claims (a start died before recording them)");
            kill_all(&leftovers).await;
        }
        let never_made = vm.state == VmState::Created && !vm.dir.exists();
        if marked || never_made {
            remove_interrupted(state, &vm, marked);
            removed_any = true;
        }
    }
    if removed_any && state.host().network_if_ready().is_some() {
        if let Err(error) = super::firewall::apply(state).await {
            tracing::warn!(error = %crate::error::error_chain(&error), "cannot update firewall rules after removing interrupted creates");
        }
    }
}

/// Removes the VM of an interrupted create: its directory only when
/// `owns_dir` (the marker proves the create made it), then its runtime dir,
/// known_hosts entry, DNS record and row.
fn remove_interrupted(state: &AppState, vm: &VmRow, owns_dir: bool) {
    tracing::warn!(vm = %vm.name, state = ?vm.state, dir = %vm.dir.display(), "removing a VM whose create was interrupted by the daemon's death");
    if owns_dir {
        if let Err(error) = fs_err::remove_dir_all(&vm.dir) {
            tracing::error!(vm = %vm.name, %error, "cannot remove the directory of an interrupted create");
            // The row stays so the directory is not an orphan nobody sees.
            return;
        }
    }
    let _ = fs_err::remove_dir_all(run_dir(&state.paths().runtime_dir, &vm.name));
    state.dns().records.remove(vm.name.as_str());
    let _ = banger_host::ssh::known_hosts::remove_host(
        &known_hosts(&state.paths().state_dir),
        &host_alias(&vm.name),
    );
    if let Err(error) = state.store().delete_vm(vm.id) {
        tracing::error!(vm = %vm.name, error = %crate::error::error_chain(&error), "cannot remove the row of an interrupted create");
    }
}

/// Processes of our uid whose command line names a path inside `run_dir`
/// or `vm_dir` (see the module doc).
fn leftover_processes(run_dir: &Path, vm_dir: &Path) -> Vec<ProcessIdentity> {
    let prefixes: Vec<Vec<u8>> = [run_dir, vm_dir]
        .iter()
        .map(|dir| {
            let mut prefix = dir.as_os_str().as_encoded_bytes().to_vec();
            prefix.push(b'/');
            prefix
        })
        .collect();
    let me = std::process::id();
    let uid = rustix::process::geteuid().as_raw();
    let mut found = Vec::new();
    for pid in banger_host::process::all_pids() {
        if pid == me || !owned_by(&PathBuf::from(format!("/proc/{pid}")), uid) {
            continue;
        }
        let Ok(cmdline) = fs_err::read(PathBuf::from(format!("/proc/{pid}/cmdline"))) else {
            continue;
        };
        let names_vm = cmdline.split(|byte| *byte == 0).any(|arg| {
            prefixes
                .iter()
                .any(|prefix| contains(arg, prefix.as_slice()))
        });
        if names_vm {
            if let Ok(identity) = ProcessIdentity::of(pid) {
                found.push(identity);
            }
        }
    }
    found
}

/// Whether `/proc/<pid>` belongs to `uid`.
fn owned_by(proc_dir: &Path, uid: u32) -> bool {
    use std::os::unix::fs::MetadataExt;
    fs_err::metadata(proc_dir).is_ok_and(|meta| meta.uid() == uid)
}

/// Whether `needle` occurs in `haystack` (an argument such as
/// `unix:/run/…/qmp.sock,server` names the path inside it).
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

/// SIGKILLs `processes` (each only if it is still the one found) and waits
/// up to [`KILL_WAIT`] for them to go.
async fn kill_all(processes: &[ProcessIdentity]) {
    for process in processes {
        if let Err(error) = process.signal(Signal::KILL) {
            tracing::warn!(pid = process.pid, error = %crate::error::error_chain(&error), "cannot kill a leftover VM process");
        }
    }
    let deadline = Instant::now() + KILL_WAIT;
    while processes.iter().any(ProcessIdentity::is_alive_and_same) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::contains;

    #[test]
    fn a_path_inside_an_argument_is_found_and_a_longer_name_is_not() {
        let needle = b"/run/vms/dev/";
        assert!(contains(b"unix:/run/vms/dev/qmp.sock,server=on", needle));
        assert!(!contains(b"/run/vms/dev2/qmp.sock", needle));
        assert!(!contains(b"/run/vms/dev", needle));
    }
}
