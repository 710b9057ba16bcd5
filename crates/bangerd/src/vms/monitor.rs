//! Keeping the records true: adoption of running VMs when the daemon starts,
//! and a watcher that notices VMMs that exit on their own.
//!
//! Adoption trusts a recorded VMM only if its pid, start time and executable
//! all match (so a reused pid is never mistaken for our VM). Files and TAPs
//! banger owns but no VM claims are removed; a VM's own disks are never
//! removed by reconciliation.

use std::collections::BTreeSet;
use std::time::Duration;

use banger_api::vms::VmState;
use banger_host::net::names::TapName;
use banger_vmm::Adoption;

use super::boot::running_handle;
use super::stop::finish_stopped;
use super::{run_dir, set_state};
use crate::state::AppState;

/// How often the watcher looks at running VMs.
const POLL: Duration = Duration::from_secs(1);

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
        if vm.state.is_at_rest() && vm.runtime.is_none() {
            continue;
        }
        let adoption = match running_handle(&vm) {
            Some(running) => running.adopt().await,
            None => Ok(Adoption::Gone),
        };
        let result = match adoption {
            Ok(Adoption::Running) => {
                tracing::info!(vm = %vm.name, "adopted running VM");
                if let Some(tap) = vm.tap.as_deref().and_then(TapName::parse) {
                    claimed.insert(tap);
                }
                if vm.state == VmState::Running {
                    Ok(())
                } else {
                    set_state(state, &mut vm, VmState::Running, None)
                }
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
            Err(error) => {
                let message = crate::error::error_chain(&error);
                tracing::error!(vm = %vm.name, error = %message, "cannot adopt VM");
                set_state(state, &mut vm, VmState::Error, Some(message))
            }
        };
        if let Err(error) = result {
            tracing::error!(vm = %vm.name, error = %crate::error::error_chain(&error), "recovery failed");
        }
    }
    remove_unclaimed_run_dirs(state);
    // The network is needed now only if VMs run; otherwise it is set up by
    // the first VM start, and the host's network stays untouched till then.
    let needs_network = !claimed.is_empty()
        || state
            .store()
            .vms()
            .map(|vms| !vms.is_empty())
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

/// Runtime dirs (`<runtime>/vms/<name>`) of VMs that are not running.
fn remove_unclaimed_run_dirs(state: &AppState) {
    let root = state.paths().runtime_dir.join("vms");
    let Ok(entries) = std::fs::read_dir(&root) else {
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
            match std::fs::remove_dir_all(&path) {
                Ok(()) => tracing::info!(path = %path.display(), "removed unclaimed runtime dir"),
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "cannot remove unclaimed runtime dir")
                }
            }
        }
    }
}

/// Watches running VMs forever; a VM whose VMM exited is recorded as stopped.
pub async fn monitor_loop(state: AppState) {
    let mut interval = tokio::time::interval(POLL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let vms = match state.store().vms() {
            Ok(vms) => vms,
            Err(_) => continue,
        };
        for vm in vms.into_iter().filter(|vm| vm.state == VmState::Running) {
            let Some(running) = running_handle(&vm) else {
                continue;
            };
            if running.vmm.is_alive_and_same() && running.status().is_none() {
                continue;
            }
            // An operation in progress on this VM owns its state; look again later.
            let lock = state.vm_lock(&vm.name);
            let Ok(_guard) = lock.try_lock() else {
                continue;
            };
            let Ok(Some(mut current)) = state.store().vm(&vm.name) else {
                continue;
            };
            if current.state != VmState::Running {
                continue;
            }
            let exit = describe_exit(running.status());
            tracing::info!(vm = %vm.name, exit = %exit, "VMM exited");
            let _ = std::fs::remove_dir_all(run_dir(&state.paths().runtime_dir, &vm.name));
            if let Err(error) = finish_stopped(
                &state,
                &mut current,
                Some(format!("the VMM exited on its own ({exit})")),
            )
            .await
            {
                tracing::error!(vm = %vm.name, error = %crate::error::error_chain(&error), "cannot record the stop");
            }
        }
    }
}

/// Human text for how a VMM ended.
fn describe_exit(exit: Option<banger_vmm::ExitInfo>) -> String {
    match exit {
        Some(banger_vmm::ExitInfo::Code { code }) => format!("exit code {code}"),
        Some(banger_vmm::ExitInfo::Signal { signal }) => format!("killed by signal {signal}"),
        Some(banger_vmm::ExitInfo::Unknown) | None => "exit status unknown".to_owned(),
    }
}
