//! Keeps banger's nftables tables in line with the running VMs: which TAP
//! and address each has, and whether it may leave the host through NAT.
//!
//! The whole desired state is rebuilt from the database and applied as one
//! transaction each time (VM start, stop, delete, `vm set --nat`, daemon
//! start), under one lock so an older state never lands after a newer one.
//! Only names and addresses banger allocated go into rules.

use banger_api::vms::VmState;
use banger_host::net::firewall::{FirewallState, GuestRule};
use banger_host::net::names::TapName;

use crate::state::AppState;

/// DNS ports guests may reach on the bridge address.
const GUEST_DNS_PORTS: [u16; 1] = [53];

/// Why the rules could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum FirewallApplyError {
    /// The network is not set up, or cannot be.
    #[error("VM networking is unavailable")]
    Unavailable(#[source] crate::host::HostError),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// nftables refused the rules.
    #[error(transparent)]
    Apply(#[from] banger_host::privileged::PrivilegedError),
}

/// Applies the firewall state for every VM that has a TAP right now.
pub async fn apply(state: &AppState) -> Result<(), FirewallApplyError> {
    let _serialised = state.firewall_lock().lock().await;
    let network = state
        .host()
        .network()
        .await
        .map_err(FirewallApplyError::Unavailable)?;
    let config = state.config();
    let guests = state
        .store()
        .vms()?
        .into_iter()
        .filter(|vm| {
            matches!(
                vm.state,
                VmState::Starting | VmState::Running | VmState::Stopping
            )
        })
        .filter_map(|vm| {
            let tap = vm.tap.as_deref().and_then(TapName::parse)?;
            Some(GuestRule {
                tap,
                ip: vm.ip,
                nat: vm.nat,
            })
        })
        .collect();
    let desired = FirewallState {
        bridge: network.bridge.clone(),
        bridge_ip: config.bridge_ip,
        cidr: config.cidr,
        dns_ports: GUEST_DNS_PORTS.to_vec(),
        allowed_host_ports: config.allowed_host_ports.clone(),
        dns_redirect: crate::dns::guest_dns_redirect(config),
        guests,
    };
    network.ops.apply_firewall(&desired).await?;
    Ok(())
}
