//! The daemon's `.vm` DNS: one record per VM, served on `dns_listen_addr`
//! from daemon start and on the bridge address (port 53) for guests once the
//! bridge exists; on hosts with systemd-resolved, the bridge link is told to
//! route `~vm` there so every program on the host resolves `<name>.vm`.

use std::net::{SocketAddr, SocketAddrV4};

use banger_dns::DnsServer;

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

/// Once the bridge exists: also listen on `bridge_ip:53` (the guests'
/// resolver) and, with systemd-resolved, route `~vm` to it. Idempotent.
pub async fn bridge_ready(state: &AppState) {
    let dns = state.dns();
    dns.bridge_ready
        .get_or_init(|| async {
            let config = state.config();
            let addr = SocketAddr::V4(SocketAddrV4::new(config.bridge_ip, 53));
            if let Some(server) = dns.server.lock().await.as_mut() {
                match server.add_listener(addr).await {
                    Ok(_) => tracing::info!(%addr, "serving .vm DNS to guests"),
                    Err(error) => tracing::warn!(%addr, error = %crate::error::error_chain(&error), "cannot serve DNS on the bridge"),
                }
            }
            if let banger_dns::resolved::Integration::Resolved { .. } = banger_dns::resolved::detect() {
                match banger_dns::resolved::Resolvectl::find().map(|resolvectl| resolvectl.configure_link(&config.bridge_name, addr)) {
                    Some(Ok(link)) => tracing::info!(link = %config.bridge_name, warnings = ?link.warnings, "systemd-resolved routes ~vm to banger"),
                    Some(Err(error)) => tracing::warn!(error = %crate::error::error_chain(&error), "cannot configure systemd-resolved"),
                    None => {}
                }
            }
        })
        .await;
}
