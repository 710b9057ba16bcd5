//! `vm stop` (graceful, then kill after a timeout) and `vm kill`.

use std::time::Duration;

use banger_api::VmName;
use banger_api::vms::{VmInfo, VmSignal, VmState};
use banger_vmm::Signal;

use super::boot::release_tap;
use super::{VmError, info, row, run_dir, set_state};
use crate::state::AppState;
use crate::store::{VmRow, VmmHandle};

/// How long a guest gets to shut down before its VMM is killed.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// Stops a VM gracefully (kill after [`STOP_TIMEOUT`]). Stopping a VM that
/// is not running succeeds and changes nothing.
pub async fn stop(state: &AppState, name: &VmName) -> Result<VmInfo, VmError> {
    let lock = state.vm_lock(name);
    let _guard = lock.lock().await;
    stop_locked(state, name).await
}

/// [`stop`] for callers holding the VM's lock.
pub async fn stop_locked(state: &AppState, name: &VmName) -> Result<VmInfo, VmError> {
    let mut vm = row(&state.store(), name)?;
    if let VmmHandle::Corrupt { error, .. } = &vm.vmm {
        // The user was told to stop the VMM by hand and then run this: the
        // unreadable record is cleared, and the reason says what that means.
        tracing::warn!(vm = %name, %error, "clearing an unreadable VMM record");
        finish_stopped(
            state,
            &mut vm,
            Some("its unreadable VMM record was cleared by `banger vm stop`; a VMM that still ran was not stopped".to_owned()),
        )
        .await?;
        return Ok(info(state, &vm));
    }
    if vm.state == VmState::Paused {
        return super::pause::discard_locked(state, &mut vm).await;
    }
    if !vm.state.can_stop() {
        return Ok(info(state, &vm));
    }
    set_state(state, &mut vm, VmState::Stopping, None)?;
    if let Some(running) = vm.vmm.recorded().cloned() {
        match running.stop(STOP_TIMEOUT).await {
            Ok(outcome) => tracing::info!(vm = %name, ?outcome, "VM stopped"),
            Err(error) => {
                let message = crate::error::error_chain(&error);
                set_state(state, &mut vm, VmState::Error, Some(message))?;
                return Err(VmError::step(name, "stop its VMM", error));
            }
        }
    }
    finish_stopped(state, &mut vm, None).await?;
    Ok(info(state, &vm))
}

/// How long a SIGKILLed VMM gets to exit and be reaped.
const KILL_REAP: Duration = Duration::from_secs(5);

/// Sends SIGKILL to the VM's recorded VMM, if it runs, without the VM's
/// lock. An operation that holds the lock (a create or start waiting for
/// the guest) notices its VMM's exit and ends, so `--force` never waits on
/// the guest. Whether a VMM was signalled.
pub fn kill_vmm_unlocked(state: &AppState, name: &VmName) -> Result<bool, VmError> {
    let vm = row(&state.store(), name)?;
    let Some(running) = vm.vmm.recorded() else {
        return Ok(false);
    };
    if !running.vmm.is_alive_and_same() {
        return Ok(false);
    }
    tracing::warn!(vm = %name, pid = running.vmm.pid, "killing the VMM of a busy VM (forced)");
    running
        .vmm
        .signal(Signal::KILL)
        .map_err(|error| VmError::step(name, "kill its VMM", error))
}

/// Ends a VM's VMM at once (SIGKILL, no guest shutdown) and records the VM
/// stopped: what `--force` means. For callers holding the VM's lock.
pub async fn stop_now_locked(state: &AppState, name: &VmName) -> Result<VmInfo, VmError> {
    let mut vm = row(&state.store(), name)?;
    if matches!(vm.vmm, VmmHandle::Corrupt { .. }) {
        return stop_locked(state, name).await;
    }
    if vm.vmm.is_none() && !vm.state.can_stop() {
        return Ok(info(state, &vm));
    }
    if let Some(running) = vm.vmm.recorded().cloned() {
        if running.vmm.is_alive_and_same() {
            running
                .vmm
                .signal(Signal::KILL)
                .map_err(|error| VmError::step(name, "kill its VMM", error))?;
            if running.wait(KILL_REAP).await.is_none() {
                tracing::warn!(vm = %name, "the VMM did not exit within {KILL_REAP:?} of SIGKILL");
            }
        }
    }
    finish_stopped(
        state,
        &mut vm,
        Some("its VMM was killed (forced, no guest shutdown)".to_owned()),
    )
    .await?;
    Ok(info(state, &vm))
}

/// Records a VM whose VMM is gone: helpers cleaned up, TAP released, runtime
/// files removed, state stopped (with `reason` as its last error, if any).
pub async fn finish_stopped(
    state: &AppState,
    vm: &mut VmRow,
    reason: Option<String>,
) -> Result<(), VmError> {
    if let Some(running) = vm.vmm.recorded() {
        if let Err(error) = running.cleanup().await {
            tracing::warn!(vm = %vm.name, error = %crate::error::error_chain(&error), "cleanup after stop failed");
        }
    }
    release_tap(state, vm).await;
    vm.vmm = VmmHandle::None;
    let _ = fs_err::remove_dir_all(run_dir(&state.paths().runtime_dir, &vm.name));
    set_state(state, vm, VmState::Stopped, reason)?;
    // Their processes died with the guest; their logs stay on its /root.
    if let Err(error) = state.store().mark_sessions_lost(vm.id) {
        tracing::warn!(vm = %vm.name, error = %crate::error::error_chain(&error), "cannot mark sessions lost");
    }
    if let Err(error) = super::firewall::apply(state).await {
        tracing::warn!(vm = %vm.name, error = %crate::error::error_chain(&error), "cannot update firewall rules after stop");
    }
    Ok(())
}

/// Sends `signal` to a VM's VMM. For signals that end it, waits for the
/// exit and records the VM as stopped.
pub async fn kill(
    state: &AppState,
    name: &VmName,
    signal: Option<VmSignal>,
) -> Result<VmInfo, VmError> {
    let signal = signal.unwrap_or(VmSignal::Kill);
    let lock = state.vm_lock(name);
    let Ok(_guard) = lock.try_lock() else {
        // An operation holds the VM (a start waiting for the guest): signal
        // now rather than wait for it; it notices the VMM's exit and
        // records the outcome itself.
        let vm = row(&state.store(), name)?;
        let running = super::recorded_vmm(&vm)?
            .filter(|_| vm.state.can_stop())
            .ok_or_else(|| VmError::WrongState {
                name: name.clone(),
                state: vm.state,
                hint: "there is no VMM to signal yet; try again in a moment",
            })?;
        running
            .vmm
            .signal(os_signal(signal))
            .map_err(|error| VmError::step(name, "signal its VMM", error))?;
        return Ok(info(state, &vm));
    };
    let mut vm = row(&state.store(), name)?;
    let Some(running) = super::recorded_vmm(&vm)?
        .filter(|_| vm.state.can_stop())
        .cloned()
    else {
        return Err(VmError::WrongState {
            name: name.clone(),
            state: vm.state,
            hint: "there is no VMM to signal",
        });
    };
    running
        .vmm
        .signal(os_signal(signal))
        .map_err(|error| VmError::step(name, "signal its VMM", error))?;
    if signal.ends_process() && running.wait(Duration::from_secs(10)).await.is_some() {
        finish_stopped(state, &mut vm, Some(format!("killed with {signal}"))).await?;
    }
    Ok(info(state, &vm))
}

/// The OS signal for an API one.
fn os_signal(signal: VmSignal) -> Signal {
    match signal {
        VmSignal::Kill => Signal::KILL,
        VmSignal::Term => Signal::TERM,
        VmSignal::Int => Signal::INT,
        VmSignal::Hup => Signal::HUP,
        VmSignal::Quit => Signal::QUIT,
        VmSignal::Usr1 => Signal::USR1,
        VmSignal::Usr2 => Signal::USR2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_signals_map_to_their_numbers() {
        for signal in VmSignal::ALL {
            assert_eq!(os_signal(signal).as_raw(), signal.number(), "{signal}");
        }
    }
}
