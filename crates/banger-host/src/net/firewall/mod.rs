//! Guest egress and NAT: banger's own nftables tables, built from a
//! desired-state description and replaced atomically as a whole.
//!
//! banger owns exactly two nftables tables, both named [`TABLE_NAME`]:
//! `inet banger` (routing decisions: what guests may reach on the host and
//! beyond, masquerading for `--nat` VMs) and `bridge banger` (anti-spoofing on
//! the TAP ports, which is what ties a NAT rule to a VM's TAP and not just to
//! an address). No other table or chain is ever read, flushed or changed.
//!
//! The daemon describes what it wants in a [`FirewallState`] and hands it to
//! [`crate::privileged::PrivilegedOps::apply_firewall`]. That validates the
//! state ([`FirewallState::validate`]), turns it into one nftables JSON batch
//! ([`rules::ruleset`]) that deletes and re-creates both tables, and feeds it
//! to `nft -j -f -`: the kernel applies a batch as one transaction, so the
//! rules are never half-updated, and reconciliation on daemon start is the
//! same call as every other change. Removing everything is
//! [`crate::privileged::PrivilegedOps::remove_firewall`].
//!
//! Nothing a caller types reaches a rule: interface names are [`TapName`]s
//! and a [`BridgeName`] (banger's own names, checked character sets), the
//! rest are `Ipv4Addr`s, a CIDR and port numbers, and the batch is
//! serialised as JSON (no nft syntax is ever assembled from text).
//!
//! A [`FirewallState`] also travels to `bangerd-root` as JSON; reading it
//! back validates it again (`wire`).

pub mod nft;
pub mod rules;
mod wire;

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use banger_config::config::Ipv4Cidr;

use crate::net::names::{BridgeName, TapName};

pub use nft::{FORWARDING_PATH, enable_ipv4_forwarding, ipv4_forwarding};

/// The name of both banger tables (`inet banger` and `bridge banger`).
pub const TABLE_NAME: &str = "banger";

/// The link-local range, which holds cloud metadata services
/// (`169.254.169.254`): never reachable from guests.
pub const LINK_LOCAL: Ipv4Cidr = Ipv4Cidr {
    network: Ipv4Addr::new(169, 254, 0, 0),
    prefix: 16,
};

/// One running VM as the firewall sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestRule {
    /// Its TAP device (a port of the bridge).
    pub tap: TapName,
    /// Its address, allocated by banger from the CIDR.
    pub ip: Ipv4Addr,
    /// Whether it may reach beyond the bridge, masqueraded (`--nat`).
    pub nat: bool,
}

/// Everything banger's tables should say, as one value.
///
/// Build it from the configuration and the daemon's VM records (running VMs
/// only), then apply it whole; the previous rules are replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirewallState {
    /// The bridge the TAPs are ports of.
    pub bridge: BridgeName,
    /// The bridge's (the host's) address on the guest network.
    pub bridge_ip: Ipv4Addr,
    /// The guest network.
    pub cidr: Ipv4Cidr,
    /// Ports of the host's DNS server on `bridge_ip` (UDP and TCP), e.g. 53.
    pub dns_ports: Vec<u16>,
    /// Further ports on `bridge_ip` guests may reach (UDP and TCP); every
    /// other host service is dropped.
    pub allowed_host_ports: Vec<u16>,
    /// Where guests' DNS queries to `bridge_ip:53` really go: this port on
    /// `bridge_ip` (a redirect, UDP and TCP). A daemon that is not root
    /// cannot listen on port 53, so it listens here and the redirect keeps
    /// the guests' resolver at the usual port. `None`: the DNS server
    /// listens on 53 itself.
    pub dns_redirect: Option<u16>,
    /// The running VMs.
    pub guests: Vec<GuestRule>,
}

impl FirewallState {
    /// Whether any guest needs routing off the bridge, hence
    /// `net.ipv4.ip_forward`.
    pub fn needs_forwarding(&self) -> bool {
        self.guests.iter().any(|guest| guest.nat)
    }

    /// Checks the state describes something banger could have allocated:
    /// the bridge address and every guest address are host addresses of the
    /// CIDR, guests do not share a TAP or an address, nobody uses the
    /// bridge's address, ports are not 0 and the bridge is not named like a
    /// TAP.
    pub fn validate(&self) -> Result<(), FirewallError> {
        if !(8..=30).contains(&self.cidr.prefix) || !is_network_address(&self.cidr) {
            return Err(FirewallError::BadCidr {
                cidr: self.cidr.to_string(),
            });
        }
        if !self.cidr.contains_host(self.bridge_ip) {
            return Err(FirewallError::BridgeIpOutsideCidr {
                ip: self.bridge_ip,
                cidr: self.cidr.to_string(),
            });
        }
        if TapName::parse(self.bridge.as_str()).is_some() {
            // The anti-spoofing rules match TAP ports by the `bgtap*` pattern;
            // a bridge named like a TAP would blur that.
            return Err(FirewallError::BridgeNamedLikeTap {
                bridge: self.bridge.to_string(),
            });
        }
        if let Some(port) = self
            .dns_ports
            .iter()
            .chain(&self.allowed_host_ports)
            .chain(&self.dns_redirect)
            .find(|port| **port == 0)
        {
            return Err(FirewallError::BadPort { port: *port });
        }
        let mut taps = BTreeSet::new();
        let mut ips = BTreeSet::new();
        for guest in &self.guests {
            if !self.cidr.contains_host(guest.ip) || guest.ip == self.bridge_ip {
                return Err(FirewallError::GuestIpOutsideCidr {
                    tap: guest.tap.to_string(),
                    ip: guest.ip,
                    cidr: self.cidr.to_string(),
                });
            }
            if !taps.insert(guest.tap.clone()) {
                return Err(FirewallError::DuplicateTap {
                    tap: guest.tap.to_string(),
                });
            }
            if !ips.insert(guest.ip) {
                return Err(FirewallError::DuplicateIp { ip: guest.ip });
            }
        }
        Ok(())
    }
}

/// Whether the CIDR's network field has no host bits set.
fn is_network_address(cidr: &Ipv4Cidr) -> bool {
    let mask = u32::MAX << (32 - u32::from(cidr.prefix));
    u32::from(cidr.network) & !mask == 0
}

/// A firewall state that was refused, or applying it failed.
#[derive(Debug, thiserror::Error)]
pub enum FirewallError {
    /// The CIDR is not a network address with a prefix in 8..=30.
    #[error("guest network {cidr} is not a network address with prefix 8..=30")]
    BadCidr {
        /// The refused CIDR.
        cidr: String,
    },
    /// The bridge address is not a host address of the CIDR.
    #[error("bridge address {ip} is not a host address of {cidr}")]
    BridgeIpOutsideCidr {
        /// The bridge address.
        ip: Ipv4Addr,
        /// The guest network.
        cidr: String,
    },
    /// The bridge has a TAP-shaped name.
    #[error("bridge name {bridge} looks like a banger TAP name; refusing to write rules for it")]
    BridgeNamedLikeTap {
        /// The bridge's name.
        bridge: String,
    },
    /// Port 0 was listed.
    #[error("port {port} is not a valid port")]
    BadPort {
        /// The refused port.
        port: u16,
    },
    /// A guest address is outside the CIDR, or is the bridge's.
    #[error("{tap}: address {ip} is not a guest address of {cidr}")]
    GuestIpOutsideCidr {
        /// The guest's TAP.
        tap: String,
        /// Its refused address.
        ip: Ipv4Addr,
        /// The guest network.
        cidr: String,
    },
    /// Two guests share a TAP.
    #[error("TAP {tap} is listed for two guests")]
    DuplicateTap {
        /// The TAP.
        tap: String,
    },
    /// Two guests share an address.
    #[error("address {ip} is listed for two guests")]
    DuplicateIp {
        /// The address.
        ip: Ipv4Addr,
    },
    /// The `nft` program is not installed.
    #[error("nft not found on PATH or in /usr/sbin, /sbin (install nftables)")]
    NftNotFound,
    /// Running `nft` failed.
    #[error("cannot run {program}")]
    NftSpawn {
        /// The program.
        program: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// `nft` did not finish in time (it was killed).
    #[error("{program} did not finish within {seconds} s and was killed")]
    NftTimeout {
        /// The program.
        program: PathBuf,
        /// The limit.
        seconds: u64,
    },
    /// `nft` refused the batch or the command.
    #[error("{program} {action} failed ({status}): {stderr}")]
    NftFailed {
        /// The program.
        program: PathBuf,
        /// What was asked (`apply`, `remove`, `list`).
        action: &'static str,
        /// Its exit status.
        status: String,
        /// What it printed on stderr.
        stderr: String,
    },
    /// `nft` printed something that is not the JSON it documents.
    #[error("{program} printed unparsable JSON")]
    NftOutput {
        /// The program.
        program: PathBuf,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// Reading or writing the IPv4 forwarding switch failed.
    #[error("cannot {action} {path}")]
    Forwarding {
        /// `read` or `write`.
        action: &'static str,
        /// The sysctl file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

#[cfg(test)]
mod tests;
