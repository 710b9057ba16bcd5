//! Host networking for VMs: the bridge, one TAP per VM, guest addresses.
//!
//! DESIGN.md "Networking": a bridge (`bridge_name`, `bridge_ip`, `cidr`), one
//! TAP per VM taken from a warm pool of `tap_pool_size`, IPv4 addresses
//! allocated from the CIDR and persisted by the daemon, and a MAC derived from
//! the IP. This module holds the pure parts ([`addressing`], [`names`]) and the
//! pool ([`pool`]); everything that needs root goes through
//! [`crate::privileged::PrivilegedOps`], whose in-process implementation uses
//! [`link`] (rtnetlink) and [`tun`] (the `/dev/net/tun` ioctls), and
//! [`resolved`] (routing `~vm` through systemd-resolved).

pub mod addressing;
pub mod firewall;
pub mod link;
pub mod names;
pub mod pool;
pub mod resolved;
pub mod tun;

pub use addressing::{AddressingError, MacAddr, allocate_ip, mac_for_ip};
pub use firewall::{FirewallError, FirewallState, GuestRule};
pub use names::{BridgeName, NameError, TapName};
pub use pool::{PoolError, TapPool};
