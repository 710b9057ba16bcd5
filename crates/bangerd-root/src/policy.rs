//! What the installed owner may ask root to do: every request is checked
//! here, against the install metadata, after it decoded (which already
//! checked names and the firewall state's own consistency).
//!
//! The rules: only the installed bridge is created, configured, deleted or
//! named in rules and resolver settings; its address and every guest
//! network lie inside `allowed_cidrs`; TAPs are banger's `bgtap<N>` (by
//! type); the DNS server `~vm` is routed to is on loopback or on the guest
//! network. No request carries a path or a uid.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use banger_config::InstallMetadata;
use banger_config::config::Ipv4Cidr;
use banger_host::net::firewall::FirewallError;
use banger_host::net::names::{BridgeName, NameError};
use banger_host::root_helper::Request;

/// How long a client may take to send one whole frame (and how long an
/// idle connection stays open).
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(10);

/// How many connections are served at once; more are closed at once.
pub const MAX_CONNECTIONS: usize = 32;

/// The helper's rules, from the install metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// The only peer uid served, and the owner of every TAP made.
    pub owner_uid: u32,
    /// The only bridge touched.
    pub bridge: BridgeName,
    /// Bridge addresses and guest networks must lie inside these.
    pub allowed_cidrs: Vec<Ipv4Cidr>,
    /// See [`FRAME_TIMEOUT`] (tests shorten it).
    pub frame_timeout: Duration,
    /// See [`MAX_CONNECTIONS`].
    pub max_connections: usize,
}

/// The metadata cannot be turned into a policy.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// `bridge_name` is not an interface name banger uses.
    #[error("bridge_name in the install metadata is not usable")]
    Bridge(#[source] NameError),
}

/// Why a well-formed request is refused.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The request names another bridge than the installed one.
    #[error("{operation}: bridge {asked} is not banger's installed bridge {installed}")]
    ForeignBridge {
        /// The request.
        operation: &'static str,
        /// The bridge asked for.
        asked: String,
        /// The installed bridge.
        installed: String,
    },
    /// A network outside the allowed ranges.
    #[error("{operation}: network {cidr} is outside the allowed networks {allowed}")]
    NetworkNotAllowed {
        /// The request.
        operation: &'static str,
        /// The network asked for.
        cidr: String,
        /// The allowed networks.
        allowed: String,
    },
    /// An address outside the allowed ranges.
    #[error(
        "{operation}: address {address} is not a host address of the allowed networks {allowed}"
    )]
    AddressNotAllowed {
        /// The request.
        operation: &'static str,
        /// The address asked for.
        address: IpAddr,
        /// The allowed networks.
        allowed: String,
    },
    /// A prefix length banger never uses.
    #[error("{operation}: prefix length /{prefix} is out of range 8..=30")]
    BadPrefix {
        /// The request.
        operation: &'static str,
        /// The prefix asked for.
        prefix: u8,
    },
    /// The firewall state does not validate.
    #[error("apply_firewall: the state is invalid")]
    InvalidFirewall(#[source] FirewallError),
}

impl Policy {
    /// The policy the install metadata describes, with the default limits.
    pub fn from_metadata(metadata: &InstallMetadata) -> Result<Self, PolicyError> {
        Ok(Self {
            owner_uid: metadata.owner_uid,
            bridge: BridgeName::new(&metadata.bridge_name).map_err(PolicyError::Bridge)?,
            allowed_cidrs: metadata.allowed_cidrs.clone(),
            frame_timeout: FRAME_TIMEOUT,
            max_connections: MAX_CONNECTIONS,
        })
    }

    /// Whether a peer with `uid` is served.
    pub fn allows_peer(&self, uid: u32) -> bool {
        uid == self.owner_uid
    }

    /// Checks `request` against the install; `Ok` means it may be done.
    pub fn check(&self, request: &Request) -> Result<(), Refusal> {
        let operation = request.operation();
        match request {
            Request::Hello
            | Request::ListBangerTaps
            | Request::RemoveFirewall
            | Request::DeleteTap { .. } => Ok(()),
            Request::DeleteBridge { bridge } | Request::CreateTap { bridge, .. } => {
                self.check_bridge(operation, bridge)
            }
            Request::EnsureBridge { bridge, ip, prefix } => {
                self.check_bridge(operation, bridge)?;
                if !(8..=30).contains(prefix) {
                    return Err(Refusal::BadPrefix {
                        operation,
                        prefix: *prefix,
                    });
                }
                self.check_network(operation, &network_of(*ip, *prefix))?;
                self.check_address(operation, *ip)
            }
            Request::ApplyFirewall { state } => {
                state.validate().map_err(Refusal::InvalidFirewall)?;
                self.check_bridge(operation, &state.bridge)?;
                self.check_network(operation, &state.cidr)?;
                self.check_address(operation, state.bridge_ip)
            }
            Request::RouteVmDomain { bridge, server } => {
                self.check_bridge(operation, bridge)?;
                self.check_dns_server(operation, *server)
            }
        }
    }

    fn check_bridge(&self, operation: &'static str, bridge: &BridgeName) -> Result<(), Refusal> {
        if *bridge == self.bridge {
            Ok(())
        } else {
            Err(Refusal::ForeignBridge {
                operation,
                asked: bridge.to_string(),
                installed: self.bridge.to_string(),
            })
        }
    }

    fn allowed(&self) -> String {
        let cidrs: Vec<String> = self.allowed_cidrs.iter().map(ToString::to_string).collect();
        cidrs.join(", ")
    }

    fn check_network(&self, operation: &'static str, cidr: &Ipv4Cidr) -> Result<(), Refusal> {
        if self
            .allowed_cidrs
            .iter()
            .any(|allowed| allowed.contains_network(cidr))
        {
            Ok(())
        } else {
            Err(Refusal::NetworkNotAllowed {
                operation,
                cidr: cidr.to_string(),
                allowed: self.allowed(),
            })
        }
    }

    fn check_address(&self, operation: &'static str, address: Ipv4Addr) -> Result<(), Refusal> {
        if self
            .allowed_cidrs
            .iter()
            .any(|allowed| allowed.contains_host(address))
        {
            Ok(())
        } else {
            Err(Refusal::AddressNotAllowed {
                operation,
                address: IpAddr::V4(address),
                allowed: self.allowed(),
            })
        }
    }

    /// The server `.vm` is routed to: loopback (the daemon's
    /// `dns_listen_addr`) or an address on the guest network (the bridge's).
    /// The helper keeps no state, so it does not know which address the
    /// bridge has; any host address of the allowed networks is accepted,
    /// which only ever points `.vm` names at the owner's own network.
    fn check_dns_server(&self, operation: &'static str, server: SocketAddr) -> Result<(), Refusal> {
        match server.ip() {
            ip if ip.is_loopback() => Ok(()),
            IpAddr::V4(ip) => self.check_address(operation, ip),
            ip @ IpAddr::V6(_) => Err(Refusal::AddressNotAllowed {
                operation,
                address: ip,
                allowed: self.allowed(),
            }),
        }
    }
}

/// `ip/prefix` as a network (host bits cleared).
fn network_of(ip: Ipv4Addr, prefix: u8) -> Ipv4Cidr {
    let mask = u32::MAX << (32 - u32::from(prefix));
    Ipv4Cidr {
        network: Ipv4Addr::from(u32::from(ip) & mask),
        prefix,
    }
}

#[cfg(test)]
mod tests;
