//! The daemon's `.vm` DNS: one record per VM, served on `dns_listen_addr`
//! from daemon start and on the bridge address (port 53, or a redirect to an
//! unprivileged port when the daemon is not root) for guests once the
//! bridge exists; on hosts with systemd-resolved, the bridge link is told to
//! route `~vm` there so every program on the host resolves `<name>.vm`.

use std::net::{SocketAddr, SocketAddrV4};

use banger_dns::DnsServer;
use banger_host::privileged::VmDomainRouting;

use crate::state::AppState;

/// Fills the records from the database and binds `dns_listen_addr`.
/// A failure is logged, not fatal: the daemon works without DNS.
pub async fn start(state: &AppState) {
    let dns = state.dns();
    match state.store().vms() {
        Ok(vms) => {
            if let Err(error) = dns
                .records
                .replace_all(vms.iter().map(|vm| (vm.name.to_string(), vm.ip)))
            {
                tracing::warn!(%error, "cannot load DNS records");
            }
        }
        Err(error) => {
            tracing::warn!(error = %crate::error::error_chain(&error), "cannot read VMs for DNS")
        }
    }
    let addr = state.config().dns_listen_addr;
    match DnsServer::bind(&[addr], dns.records.clone()).await {
        Ok(server) => {
            tracing::info!(%addr, "serving .vm DNS");
            *dns.server.lock().await = Some(server);
        }
        Err(error) => {
            tracing::warn!(%addr, error = %crate::error::error_chain(&error), "cannot serve DNS")
        }
    }
}

/// The guests' resolver is `bridge_ip:53`. A daemon that is not root cannot
/// listen on port 53, so it listens on `bridge_ip` at the port of
/// `dns_listen_addr` instead, and the firewall redirects port 53 there:
/// this is that port, or `None` when the daemon listens on 53 itself.
pub fn guest_dns_redirect(config: &banger_config::Config) -> Option<u16> {
    let port = config.dns_listen_addr.port();
    (!rustix::process::geteuid().is_root() && port != 53).then_some(port)
}

/// Once the bridge exists: also listen on `bridge_ip:53` (the guests'
/// resolver; see [`guest_dns_redirect`] for a daemon that is not root) and,
/// with systemd-resolved, route `~vm` to it (through
/// `PrivilegedOps::route_vm_domain`). Idempotent.
pub async fn bridge_ready(state: &AppState) {
    let dns = state.dns();
    dns.bridge_ready
        .get_or_init(|| async {
            let config = state.config();
            let port = guest_dns_redirect(config).unwrap_or(53);
            let addr = SocketAddr::V4(SocketAddrV4::new(config.bridge_ip, port));
            if let Some(server) = dns.server.lock().await.as_mut() {
                match server.add_listener(addr).await {
                    Ok(_) => tracing::info!(%addr, "serving .vm DNS to guests"),
                    Err(error) => tracing::warn!(%addr, error = %crate::error::error_chain(&error), "cannot serve DNS on the bridge"),
                }
            }
            // Through the privileged ops: changing a link's DNS needs root,
            // so a daemon that is not root asks bangerd-root.
            let Some(network) = state.host().network_if_ready() else {
                return;
            };
            match network.ops.route_vm_domain(&network.bridge, addr).await {
                Ok(VmDomainRouting::Routed { warnings }) => {
                    tracing::info!(link = %network.bridge, ?warnings, "systemd-resolved routes ~vm to banger")
                }
                Ok(VmDomainRouting::NoResolved { reason }) => {
                    tracing::debug!(%reason, "systemd-resolved is not in use; .vm is not routed host-wide")
                }
                Err(error) => {
                    tracing::warn!(error = %crate::error::error_chain(&error), "cannot configure systemd-resolved")
                }
            }
        })
        .await;
}
