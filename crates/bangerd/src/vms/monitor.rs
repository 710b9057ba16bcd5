//! Keeping the records true: adoption of running VMs when the daemon starts,
//! and a watcher per running VM that notices its VMM's exit.
//!
//! Adoption trusts a recorded VMM only if its pid, start time and executable
//! all match (so a reused pid is never mistaken for our VM). Files and TAPs
//! banger owns but no VM claims are removed; a VM's own disks are never
//! removed by reconciliation.
//!
//! A VMM's exit is noticed by waiting, not polling: [`watch`] pins the VMM
//! with a pidfd (see [`banger_vmm::ExitWatch`]) as soon as it is recorded
//! (by a start, right after the spawn, or by recovery when it adopts a
//! running VM) and a task awaits the exit, which the kernel reports at once;
//! the VMM is reaped then. The task takes the VM's lock and re-reads its row:
//! only if the VM is still `running` on that same VMM (pid + start time +
//! executable) is it recorded `stopped` with the exit status. Whatever ended
//! the VMM on purpose (stop, kill, delete, restart, a start that failed)
//! changed the row under the lock before letting go of it, so then the
//! watcher records nothing; a start still waiting for SSH holds the lock and
//! records the exit itself. Reaping is shared safely: the first waiter reaps,
//! every waiter learns the same status.
//!
//! The same task looks at the VM's health every [`HEALTH_TICK`] while the
//! VMM runs, for faults that do not end the VMM: a VMM stopped by SIGSTOP
//! (or a debugger) keeps its pid and sockets but runs nothing, and a dead
//! helper (`vhost-device-vsock`) cuts the guest agent off while the guest
//! runs on. Either is recorded as the VM's `last_error`, prefixed with
//! [`UNHEALTHY`], while its state stays `running` (the VMM does run, and a
//! stop or kill works on it); the warning is cleared when the fault is
//! (SIGCONT), and replaced by the exit when the VMM ends.
//!
//! [`monitor_loop`] is only a backstop, every [`SWEEP`]: it puts a running VM
//! without a usable VMM record in `error`, and records a VMM exit a watcher
//! missed (none should: a missed one is logged as a warning). The promise
//! that an exit is noticed within 2 seconds rests on the watchers, not on it.

use std::collections::BTreeSet;
use std::time::Duration;

use banger_api::VmName;
use banger_api::events::EventKind;
use banger_api::vms::VmState;
use banger_host::net::names::TapName;
use banger_vmm::{Adoption, ExitInfo, ProcessIdentity, RunningVm};

use super::stop::finish_stopped;
use super::{describe_exit, set_state};
use crate::state::AppState;

/// How often the backstop sweep looks at running VMs (see the module doc).
const SWEEP: Duration = Duration::from_secs(30);

/// How often a running VM's health is looked at (see the module doc): a
/// frozen VMM or a dead helper is reported within about this.
pub const HEALTH_TICK: Duration = Duration::from_secs(1);

/// How a health warning in `last_error` begins, so that clearing one never
/// removes a reason something else recorded.
pub const UNHEALTHY: &str = "unhealthy: ";

/// Adopts or retires every VM that was running when the daemon last
/// stopped, then removes unclaimed TAPs and runtime directories, and fills
/// the TAP pool.
pub async fn recover(state: &AppState) {
    let vms = match state.store().vms() {
        Ok(vms) => vms,
        Err(error) => {
            tracing::error!(error = %crate::error::error_chain(&error), "cannot read VMs for recovery");
            return;
        }
    };
    let mut claimed = BTreeSet::new();
    for mut vm in vms {
        // A paused VM has no VMM by design: its memory file waits for a resume.
        if (vm.state.is_at_rest() || vm.state == VmState::Paused) && vm.vmm.is_none() {
            continue;
        }
        let adoption = match super::recorded_vmm(&vm) {
            Ok(Some(running)) => {
                let running = running.clone();
                running
                    .adopt()
                    .await
                    .map_err(|error| crate::error::error_chain(&error))
            }
            Ok(None) => Ok(Adoption::Gone),
            // Never "gone" on a guess: the VMM may still run.
            Err(corrupt) => Err(crate::error::error_chain(&corrupt)),
        };
        let result = match adoption {
            Ok(Adoption::Running) => {
                tracing::info!(vm = %vm.name, "adopted running VM");
                if let Some(tap) = vm.tap.as_deref().and_then(TapName::parse) {
                    claimed.insert(tap);
                }
                let running = if vm.state == VmState::Running {
                    Ok(())
                } else {
                    set_state(state, &mut vm, VmState::Running, None)
                };
                if let (Ok(()), Some(vmm)) = (&running, vm.vmm.recorded()) {
                    watch(state, &vm.name, vmm);
                }
                running
            }
            Ok(Adoption::Gone) => {
                tracing::info!(vm = %vm.name, "VM stopped while the daemon was away");
                finish_stopped(
                    state,
                    &mut vm,
                    Some("the VMM exited while bangerd was not running".into()),
                )
                .await
            }
            Err(message) => {
                tracing::error!(vm = %vm.name, error = %message, "cannot adopt VM");
                set_state(state, &mut vm, VmState::Error, Some(message))
            }
        };
        if let Err(error) = result {
            tracing::error!(vm = %vm.name, error = %crate::error::error_chain(&error), "recovery failed");
        }
    }
    remove_unclaimed_run_dirs(state);
    // The network is needed now only if a VM ever started (its TAP or
    // rules may be left over); VMs that were only created get it with their
    // first start, and the host's network stays untouched till then.
    let needs_network = !claimed.is_empty()
        || state
            .store()
            .vms()
            .map(|vms| vms.iter().any(|vm| vm.state != VmState::Created))
            .unwrap_or(false);
    if !needs_network {
        return;
    }
    if let Ok(network) = state.host().network().await {
        match network.pool.reconcile(&claimed).await {
            Ok(removed) if !removed.is_empty() => {
                tracing::info!(?removed, "removed TAPs no VM claims")
            }
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(error = %crate::error::error_chain(&error), "TAP reconciliation failed")
            }
        }
        for tap in &claimed {
            network.pool.mark_claimed(tap);
        }
        if let Err(error) = network.pool.fill().await {
            tracing::warn!(error = %crate::error::error_chain(&error), "cannot fill the TAP pool");
        }
        // Rules are rebuilt from the records: what a crash or an nftables
        // reload lost comes back, and rules of gone VMs disappear.
        crate::dns::bridge_ready(state).await;
        if let Err(error) = super::firewall::apply(state).await {
            tracing::warn!(error = %crate::error::error_chain(&error), "cannot rebuild firewall rules");
        }
    }
}

/// At a clean daemon stop: deletes the TAP pool's spares. VMs' own TAPs
/// stay with their VMs, which outlive the daemon. Without this the spares
/// stayed on the host, and a next daemon with no VM that ever started does
/// not reconcile TAPs (it leaves the host's network alone until a first
/// start), so each such restart left a pool's worth of TAPs behind.
pub async fn release_spare_taps(state: &AppState) {
    let Some(network) = state.host().network_if_ready() else {
        return;
    };
    if let Err(error) = network.pool.drain().await {
        tracing::warn!(error = %crate::error::error_chain(&error), "cannot delete the TAP pool's spares");
    }
}

/// Runtime dirs (`<runtime>/vms/<name>`) of VMs that are not running.
fn remove_unclaimed_run_dirs(state: &AppState) {
    let root = state.paths().runtime_dir.join("vms");
    let Ok(entries) = fs_err::read_dir(&root) else {
        return;
    };
    let running: BTreeSet<String> = match state.store().vms() {
        Ok(vms) => vms
            .into_iter()
            .filter(|vm| vm.state.can_stop())
            .map(|vm| vm.name.to_string())
            .collect(),
        Err(_) => return,
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !running.contains(&name) {
            let path = entry.path();
            match fs_err::remove_dir_all(&path) {
                Ok(()) => tracing::info!(path = %path.display(), "removed unclaimed runtime dir"),
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "cannot remove unclaimed runtime dir")
                }
            }
        }
    }
}

/// Starts the watcher of `running`, the VMM just recorded for VM `name`:
/// pinned now, awaited in a task, recorded (see the module doc) when it
/// exits. The task holds the daemon's state weakly: a daemon that is gone
/// records nothing.
pub(super) fn watch(state: &AppState, name: &VmName, running: &RunningVm) {
    let mut exit = running.watch_exit();
    let daemon = state.downgrade();
    let name = name.clone();
    let vmm = running.vmm.clone();
    let health = watch_health(daemon.clone(), name.clone(), running.clone());
    tokio::spawn(async move {
        let exit = tokio::select! {
            exit = exit.exited() => exit,
            // Returns only once the daemon is gone.
            () = health => return,
        };
        tracing::debug!(vm = %name, pid = vmm.pid, exit = %describe_exit(Some(exit)), "VMM exit noticed");
        let Some(state) = daemon.upgrade() else {
            return;
        };
        // Deleted or given a new VMM meanwhile: nothing to record, and the
        // lock (forgotten with a deleted VM) is not taken again.
        if !records(&state, &name, &vmm) {
            return;
        }
        let lock = state.vm_lock(&name);
        let _guard = lock.lock().await;
        record_exit_locked(&state, &name, &vmm, exit).await;
    });
}

/// Looks at the health of VM `name` running on `running` every
/// [`HEALTH_TICK`] and records each change; returns once the daemon is gone.
async fn watch_health(daemon: crate::state::WeakAppState, name: VmName, running: RunningVm) {
    let mut tick = tokio::time::interval(HEALTH_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut recorded: Option<String> = None;
    loop {
        tick.tick().await;
        let warning = health_warning(&name, &running);
        if warning == recorded {
            continue;
        }
        let Some(state) = daemon.upgrade() else {
            return;
        };
        // An operation holding the VM's lock owns its row: look again at
        // the next tick.
        let lock = state.vm_lock(&name);
        let Ok(_guard) = lock.try_lock() else {
            continue;
        };
        if record_health_locked(&state, &name, &running.vmm, warning.as_deref()) {
            recorded = warning;
        }
    }
}

/// What is wrong with a VM whose VMM runs, if anything (see the module doc).
fn health_warning(name: &VmName, running: &RunningVm) -> Option<String> {
    let vmm = &running.vmm;
    if vmm.is_stopped() {
        return Some(format!(
            "{UNHEALTHY}the VMM (pid {pid}) is stopped (SIGSTOP or a debugger), so the guest is frozen; `kill -CONT {pid}` resumes it, `banger vm kill {name}` ends it",
            pid = vmm.pid
        ));
    }
    let helper = running
        .helpers
        .iter()
        .find(|helper| !helper.is_alive_and_same())?;
    let program = helper.exe.file_name().map_or_else(
        || helper.exe.display().to_string(),
        |file| file.to_string_lossy().into_owned(),
    );
    Some(format!(
        "{UNHEALTHY}{program} (pid {pid}) exited, so the guest agent cannot be reached (exec, ports, workspace sync) while the guest runs on; `banger vm restart {name}` starts a new one",
        pid = helper.pid
    ))
}

/// Records `warning` (or clears a health warning, for `None`) as VM
/// `name`'s `last_error`, if its row still says it runs on `vmm`. Returns
/// whether the row now says what was asked. For callers holding the lock.
fn record_health_locked(
    state: &AppState,
    name: &VmName,
    vmm: &ProcessIdentity,
    warning: Option<&str>,
) -> bool {
    if !records(state, name, vmm) {
        return false;
    }
    let Ok(Some(mut vm)) = state.store().vm(name) else {
        return false;
    };
    let new = match warning {
        Some(warning) => Some(warning.to_owned()),
        // Only a health warning is cleared, never another reason.
        None if vm
            .last_error
            .as_deref()
            .is_some_and(|reason| reason.starts_with(UNHEALTHY)) =>
        {
            None
        }
        None => return true,
    };
    if vm.last_error == new {
        return true;
    }
    match &new {
        Some(warning) => tracing::warn!(vm = %name, warning = %warning, "VM unhealthy"),
        None => tracing::info!(vm = %name, "VM healthy again"),
    }
    match set_state(state, &mut vm, VmState::Running, new.clone()) {
        Ok(()) => {
            // The state did not change, so the store published nothing;
            // watchers (TUI, web UI) learn of the health here.
            state.events().publish(EventKind::VmHealth {
                vm: name.clone(),
                warning: new,
            });
            true
        }
        Err(error) => {
            tracing::error!(vm = %name, error = %crate::error::error_chain(&error), "cannot record the VM's health");
            false
        }
    }
}

/// Whether VM `name` is running on VMM `vmm` according to its row.
fn records(state: &AppState, name: &VmName, vmm: &ProcessIdentity) -> bool {
    let Ok(Some(vm)) = state.store().vm(name) else {
        return false;
    };
    vm.state == VmState::Running && vm.vmm.recorded().is_some_and(|running| running.vmm == *vmm)
}

/// Records VM `name` stopped because its VMM `vmm` exited, if its row still
/// says it runs on that VMM. For callers holding the VM's lock.
async fn record_exit_locked(
    state: &AppState,
    name: &VmName,
    vmm: &ProcessIdentity,
    exit: ExitInfo,
) {
    if !records(state, name, vmm) {
        return;
    }
    let Ok(Some(mut vm)) = state.store().vm(name) else {
        return;
    };
    let exit = describe_exit(Some(exit));
    tracing::info!(vm = %name, pid = vmm.pid, exit = %exit, "VMM exited");
    // Also removes the runtime dir (sockets, the initrd with the host key).
    if let Err(error) = finish_stopped(
        state,
        &mut vm,
        Some(format!("the VMM exited on its own ({exit})")),
    )
    .await
    {
        tracing::error!(vm = %name, error = %crate::error::error_chain(&error), "cannot record the stop");
    }
}

/// The backstop sweep, forever (see the module doc): running VMs without a
/// usable VMM record go to `error`; exits no watcher recorded are recorded.
pub async fn monitor_loop(state: AppState) {
    let mut interval = tokio::time::interval(SWEEP);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let vms = match state.store().vms() {
            Ok(vms) => vms,
            Err(_) => continue,
        };
        for vm in vms.into_iter().filter(|vm| vm.state == VmState::Running) {
            let Some(running) = vm.vmm.recorded() else {
                record_missing_handle(&state, &vm.name).await;
                continue;
            };
            // An operation in progress on this VM owns its state; look again
            // later.
            let lock = state.vm_lock(&vm.name);
            let Ok(_guard) = lock.try_lock() else {
                continue;
            };
            let Some(exit) = running.status() else {
                continue;
            };
            tracing::warn!(vm = %vm.name, pid = running.vmm.pid, "VMM exit found by the sweep, not by its watcher");
            record_exit_locked(&state, &vm.name, &running.vmm, exit).await;
        }
    }
}

/// A running VM without a readable VMM record: there is nothing to watch,
/// and it must not pass for running, so it goes to `error` with the reason.
async fn record_missing_handle(state: &AppState, name: &banger_api::VmName) {
    let lock = state.vm_lock(name);
    let Ok(_guard) = lock.try_lock() else {
        return;
    };
    let Ok(Some(mut vm)) = state.store().vm(name) else {
        return;
    };
    if vm.state != VmState::Running {
        return;
    }
    let reason = match super::recorded_vmm(&vm) {
        Ok(Some(_)) => return,
        Ok(None) => "recorded as running, but bangerd has no record of its VMM; if it still runs, stop it by hand, then `banger vm stop` clears the state".to_owned(),
        Err(corrupt) => crate::error::error_chain(&corrupt),
    };
    tracing::error!(vm = %name, reason = %reason, "running VM without a usable VMM record");
    if let Err(error) = set_state(state, &mut vm, VmState::Error, Some(reason)) {
        tracing::error!(vm = %name, error = %crate::error::error_chain(&error), "cannot record the error");
    }
}

#[cfg(test)]
mod tests {
    use banger_api::vms::VmState;
    use banger_api::{ImageName, VmName};

    use super::*;
    use crate::store::{VmRow, VmmHandle};

    fn state_with_store(temp: &std::path::Path) -> AppState {
        AppState::for_tests(temp).0
    }

    fn running_vm_with_corrupt_record(state: &AppState) -> VmName {
        let name = VmName::parse("alpha").expect("name");
        let mut vm = VmRow {
            id: 0,
            name: name.clone(),
            state: VmState::Created,
            image_id: None,
            image_name: ImageName::parse("img").expect("image"),
            vcpus: 1,
            memory_mib: 512,
            disk_bytes: 1 << 30,
            ip: "10.0.0.2".parse().expect("ip"),
            mac: "02:00:0a:00:00:02".to_owned(),
            vsock_cid: 3,
            tap: None,
            dir: state.paths().state_dir.join("vms/alpha"),
            backend: None,
            vmm: VmmHandle::None,
            last_error: None,
            nat: false,
            created_at: 0,
            updated_at: 0,
        };
        let mut store = state.store();
        vm.id = store.insert_vm(&vm).expect("insert");
        store
            .set_vm_state(&mut vm, VmState::Starting)
            .expect("starting");
        vm.vmm = VmmHandle::Corrupt {
            raw: "{truncated".to_owned(),
            error: "EOF while parsing".to_owned(),
        };
        store
            .set_vm_state(&mut vm, VmState::Running)
            .expect("running");
        name
    }

    #[tokio::test]
    async fn recovery_puts_a_vm_with_an_unreadable_vmm_record_in_error_not_stopped() {
        let temp = tempfile::tempdir().expect("tempdir");
        let state = state_with_store(temp.path());
        let name = running_vm_with_corrupt_record(&state);
        recover(&state).await;
        let vm = state.store().vm(&name).expect("query").expect("row");
        assert_eq!(vm.state, VmState::Error);
        let reason = vm.last_error.expect("a reason");
        assert!(reason.contains("cannot be read"), "{reason}");
        assert!(reason.contains("banger vm stop alpha"), "{reason}");
        // The record is kept, so nothing pretends the VMM is gone.
        assert!(matches!(vm.vmm, VmmHandle::Corrupt { .. }));
    }

    #[tokio::test]
    async fn the_sweep_puts_a_running_vm_without_a_usable_record_in_error() {
        let temp = tempfile::tempdir().expect("tempdir");
        let state = state_with_store(temp.path());
        let name = running_vm_with_corrupt_record(&state);
        record_missing_handle(&state, &name).await;
        let vm = state.store().vm(&name).expect("query").expect("row");
        assert_eq!(vm.state, VmState::Error);
        assert!(
            vm.last_error
                .as_deref()
                .is_some_and(|reason| reason.contains("cannot be read")),
            "{:?}",
            vm.last_error
        );
    }

    #[tokio::test]
    async fn stop_clears_an_unreadable_record_and_start_refuses_while_it_is_there() {
        let temp = tempfile::tempdir().expect("tempdir");
        let state = state_with_store(temp.path());
        let name = running_vm_with_corrupt_record(&state);
        let progress = crate::progress::ProgressSink::discard();
        let error = crate::vms::start(&state, &name, &progress)
            .await
            .expect_err("no second VMM next to one that may run");
        assert!(
            matches!(error, crate::vms::VmError::CorruptHandle { .. }),
            "{error}"
        );
        let info = crate::vms::stop(&state, &name)
            .await
            .expect("stop clears it");
        assert_eq!(info.state, VmState::Stopped);
        let vm = state.store().vm(&name).expect("query").expect("row");
        assert!(vm.vmm.is_none());
        assert!(
            vm.last_error
                .as_deref()
                .is_some_and(|reason| reason.contains("cleared")),
            "{:?}",
            vm.last_error
        );
    }
}
