//! `PrivilegedOps`: the complete list of what banger needs root for.
//!
//! DESIGN.md "Privilege model": everything else (Firecracker, QEMU, disks,
//! the store) runs as the owner. The daemon holds an
//! `Arc<dyn PrivilegedOps>` and never calls netlink or ioctls itself. There
//! are two implementations: [`InProcessOps`] here, used when the daemon
//! itself is root (CI, tests inside a private network namespace), and
//! [`crate::root_helper::RootHelperOps`], a client of the `bangerd-root`
//! service that forwards the same typed calls over a socket and lets that
//! service do the argument checks again (docs/privileges.md).
//!
//! Arguments are typed so invalid requests cannot be expressed: TAPs are
//! [`TapName`]s (only `bgtap<N>`, made by banger), the bridge is a
//! [`BridgeName`] (a plain interface name), addresses are `Ipv4Addr`. No
//! method takes a path. Each implementation still re-checks what the type
//! system cannot (the prefix range, that the bridge really is a bridge, that
//! a TAP being deleted really is a tun/tap).
//!
//! Guest egress and NAT are one desired-state call,
//! [`PrivilegedOps::apply_firewall`], which replaces banger's own nftables
//! tables as a whole (see [`crate::net::firewall`]); its argument is built
//! only from banger's names, addresses and port numbers and is validated
//! again by the implementation.
//!
//! Routing the `.vm` domain through systemd-resolved
//! ([`PrivilegedOps::route_vm_domain`]) is here too: changing a link's DNS
//! settings needs root (or polkit's permission, which the owner need not
//! have).

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::pin::Pin;

use rtnetlink::packet_route::link::InfoKind;

use crate::net::firewall::{self, FirewallError, FirewallState, nft};
use crate::net::link::{LinkError, Netlink};
use crate::net::names::{BridgeName, NameError, TapName};
use crate::net::resolved::{self, Integration, ResolvedError};
use crate::net::tun::{self, TunError};
use crate::root_helper::RootHelperError;

/// The future every [`PrivilegedOps`] method returns (boxed so the trait
/// stays usable as `dyn PrivilegedOps`).
pub type OpFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, PrivilegedError>> + Send + 'a>>;

/// A privileged operation that failed or was refused.
#[derive(Debug, thiserror::Error)]
pub enum PrivilegedError {
    /// A name argument was refused.
    #[error(transparent)]
    Name(#[from] NameError),
    /// The prefix length is outside 1..=32 (or 8..=30 for banger's CIDRs).
    #[error("bridge {bridge}: prefix length /{prefix} is out of range 8..=30")]
    BadPrefix {
        /// The bridge.
        bridge: String,
        /// The refused prefix length.
        prefix: u8,
    },
    /// A link with the bridge's name exists and is not a bridge.
    #[error("{name} exists but is not a bridge (kind {kind}); refusing to touch it")]
    NotABridge {
        /// The link's name.
        name: String,
        /// What it is instead.
        kind: String,
    },
    /// A link with a banger TAP name exists and is not a tun/tap device.
    #[error("{name} exists but is not a TAP device (kind {kind}); refusing to touch it")]
    NotATap {
        /// The link's name.
        name: String,
        /// What it is instead.
        kind: String,
    },
    /// The bridge a TAP should join does not exist.
    #[error("bridge {name} does not exist (call ensure_bridge first)")]
    NoBridge {
        /// The bridge's name.
        name: String,
    },
    /// The operations were created in one network namespace and called from
    /// a thread in another: TUN devices would land in the wrong namespace.
    #[error(
        "network namespace changed: privileged ops were created in {expected} but called from {actual}"
    )]
    WrongNamespace {
        /// `/proc/thread-self/ns/net` at construction.
        expected: String,
        /// `/proc/thread-self/ns/net` now.
        actual: String,
    },
    /// Reading the calling thread's namespace failed.
    #[error("cannot read {path}")]
    Namespace {
        /// The namespace link.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A netlink request failed.
    #[error(transparent)]
    Link(#[from] LinkError),
    /// A TUN ioctl failed.
    #[error(transparent)]
    Tun(#[from] TunError),
    /// A firewall state was refused or applying it failed.
    #[error(transparent)]
    Firewall(#[from] FirewallError),
    /// Configuring systemd-resolved failed.
    #[error(transparent)]
    Resolved(#[from] ResolvedError),
    /// A blocking task (running `resolvectl`) panicked or was cancelled.
    #[error("the task running {operation} did not finish")]
    Task {
        /// What the task did.
        operation: &'static str,
    },
    /// Talking to `bangerd-root` failed, or it refused or failed the request.
    #[error(transparent)]
    RootHelper(#[from] RootHelperError),
}

/// What [`PrivilegedOps::route_vm_domain`] did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum VmDomainRouting {
    /// systemd-resolved now sends `.vm` questions to the server.
    Routed {
        /// Non-fatal problems (an old resolved, a loopback server).
        warnings: Vec<String>,
    },
    /// systemd-resolved does not run here; nothing was changed.
    NoResolved {
        /// Why (for the log; `banger doctor` explains the manual setup).
        reason: String,
    },
}

/// Everything banger does as root. See the module documentation.
pub trait PrivilegedOps: Send + Sync {
    /// Makes sure bridge `name` exists, has `ip/prefix` and is up.
    ///
    /// Creates it when missing; adds the address when absent (other
    /// addresses are left alone); idempotent. Refuses when a link of that
    /// name exists and is not a bridge.
    fn ensure_bridge<'a>(
        &'a self,
        name: &'a BridgeName,
        ip: Ipv4Addr,
        prefix: u8,
    ) -> OpFuture<'a, ()>;

    /// Deletes bridge `name` (tests and cleanup). Missing is not an error;
    /// a non-bridge link of that name is refused.
    fn delete_bridge<'a>(&'a self, name: &'a BridgeName) -> OpFuture<'a, ()>;

    /// Creates the persistent TAP `name` (`IFF_TAP | IFF_NO_PI |
    /// IFF_VNET_HDR`) owned by `owner_uid`, attached to `bridge`, up.
    ///
    /// Fails if a device of that name already exists. On failure after the
    /// device was made persistent, it is deleted again.
    fn create_tap<'a>(
        &'a self,
        name: &'a TapName,
        owner_uid: u32,
        bridge: &'a BridgeName,
    ) -> OpFuture<'a, ()>;

    /// Deletes TAP `name`. Missing is not an error; a link of that name that
    /// is not a tun/tap is refused.
    fn delete_tap<'a>(&'a self, name: &'a TapName) -> OpFuture<'a, ()>;

    /// Every tun/tap device whose name banger would have made, sorted.
    /// Devices with other names are never returned, so reconciliation can
    /// never delete them.
    fn list_banger_taps(&self) -> OpFuture<'_, Vec<TapName>>;

    /// Replaces banger's nftables tables (`inet banger`, `bridge banger`)
    /// with the rules for `state`, in one transaction, and turns IPv4
    /// forwarding on when a guest has NAT.
    ///
    /// Idempotent; the daemon calls it on start (reconciliation) and after
    /// every change to the set of running VMs or their NAT flag. Refuses a
    /// state that fails [`FirewallState::validate`]. Never touches any other
    /// table.
    fn apply_firewall<'a>(&'a self, state: &'a FirewallState) -> OpFuture<'a, ()>;

    /// Deletes banger's nftables tables; missing is fine. Leaves IPv4
    /// forwarding as it is (see [`firewall::enable_ipv4_forwarding`]).
    fn remove_firewall(&self) -> OpFuture<'_, ()>;

    /// Where systemd-resolved runs, routes the `~vm` domain of the whole
    /// host to `server` through the bridge link (`resolvectl dns`, `domain
    /// ~vm`, `default-route false`; see [`resolved::Resolvectl::configure_link`]).
    /// Without resolved, changes nothing and says why.
    fn route_vm_domain<'a>(
        &'a self,
        bridge: &'a BridgeName,
        server: SocketAddr,
    ) -> OpFuture<'a, VmDomainRouting>;
}

/// [`PrivilegedOps`] done directly by this (root) process over rtnetlink
/// and `/dev/net/tun`, in the network namespace of the thread that called
/// [`InProcessOps::new`].
#[derive(Debug)]
pub struct InProcessOps {
    netlink: Netlink,
    namespace: String,
}

/// Where the calling thread's network namespace is named.
const THREAD_NETNS: &str = "/proc/thread-self/ns/net";

fn current_namespace() -> Result<String, PrivilegedError> {
    fs_err::read_link(THREAD_NETNS)
        .map(|target| target.to_string_lossy().into_owned())
        .map_err(|source| PrivilegedError::Namespace {
            path: PathBuf::from(THREAD_NETNS),
            source,
        })
}

impl InProcessOps {
    /// Opens a netlink socket in the calling thread's network namespace.
    ///
    /// Must be called inside a tokio runtime (the socket's task is spawned
    /// on it). TUN devices are created by whichever thread runs
    /// [`PrivilegedOps::create_tap`]; that thread must be in the same
    /// namespace, which is checked on every call (a cheap `readlink`).
    pub fn new() -> Result<Self, PrivilegedError> {
        Ok(Self {
            netlink: Netlink::connect()?,
            namespace: current_namespace()?,
        })
    }

    /// The netlink connection (for inspection in tests and `doctor`).
    pub fn netlink(&self) -> &Netlink {
        &self.netlink
    }

    fn check_namespace(&self) -> Result<(), PrivilegedError> {
        let actual = current_namespace()?;
        if actual == self.namespace {
            Ok(())
        } else {
            Err(PrivilegedError::WrongNamespace {
                expected: self.namespace.clone(),
                actual,
            })
        }
    }

    async fn bridge_index(&self, bridge: &BridgeName) -> Result<u32, PrivilegedError> {
        match self.netlink.link_by_name(bridge.as_str()).await? {
            None => Err(PrivilegedError::NoBridge {
                name: bridge.to_string(),
            }),
            Some(link) if link.kind != Some(InfoKind::Bridge) => Err(PrivilegedError::NotABridge {
                name: bridge.to_string(),
                kind: kind_name(link.kind.as_ref()),
            }),
            Some(link) => Ok(link.index),
        }
    }

    async fn ensure_bridge_impl(
        &self,
        name: &BridgeName,
        ip: Ipv4Addr,
        prefix: u8,
    ) -> Result<(), PrivilegedError> {
        if !(8..=30).contains(&prefix) {
            return Err(PrivilegedError::BadPrefix {
                bridge: name.to_string(),
                prefix,
            });
        }
        let index = match self.netlink.link_by_name(name.as_str()).await? {
            Some(link) if link.kind == Some(InfoKind::Bridge) => link.index,
            Some(link) => {
                return Err(PrivilegedError::NotABridge {
                    name: name.to_string(),
                    kind: kind_name(link.kind.as_ref()),
                });
            }
            None => {
                self.netlink.add_bridge(name.as_str()).await?;
                self.bridge_index(name).await?
            }
        };
        let addresses = self.netlink.ipv4_addresses(index, name.as_str()).await?;
        if !addresses.contains(&(ip, prefix)) {
            self.netlink
                .add_ipv4_address(index, name.as_str(), ip, prefix)
                .await?;
        }
        self.netlink.set_up(index, name.as_str(), None).await?;
        Ok(())
    }

    async fn create_tap_impl(
        &self,
        name: &TapName,
        owner_uid: u32,
        bridge: &BridgeName,
    ) -> Result<(), PrivilegedError> {
        self.check_namespace()?;
        let bridge_index = self.bridge_index(bridge).await?;
        tun::create_persistent_tap(name, owner_uid)?;
        let attach = async {
            let link = self
                .netlink
                .link_by_name(name.as_str())
                .await?
                .ok_or_else(|| PrivilegedError::NotATap {
                    name: name.to_string(),
                    kind: "vanished".into(),
                })?;
            self.netlink
                .set_up(link.index, name.as_str(), Some(bridge_index))
                .await?;
            Ok::<_, PrivilegedError>(())
        };
        if let Err(error) = attach.await {
            // The device is persistent by now: remove it so a failed create
            // leaves nothing behind for reconciliation to find.
            if let Err(cleanup) = self.delete_tap_impl(name).await {
                tracing::warn!(tap = %name, error = %cleanup, "cannot delete half-created TAP");
            }
            return Err(error);
        }
        Ok(())
    }

    async fn delete_tap_impl(&self, name: &TapName) -> Result<(), PrivilegedError> {
        match self.netlink.link_by_name(name.as_str()).await? {
            None => Ok(()),
            Some(link)
                if link.kind == Some(InfoKind::Tun) && link.tun.is_some_and(|t| t.is_tap) =>
            {
                Ok(self.netlink.delete(link.index, name.as_str()).await?)
            }
            Some(link) => Err(PrivilegedError::NotATap {
                name: name.to_string(),
                kind: kind_name(link.kind.as_ref()),
            }),
        }
    }

    async fn delete_bridge_impl(&self, name: &BridgeName) -> Result<(), PrivilegedError> {
        match self.netlink.link_by_name(name.as_str()).await? {
            None => Ok(()),
            Some(link) if link.kind == Some(InfoKind::Bridge) => {
                Ok(self.netlink.delete(link.index, name.as_str()).await?)
            }
            Some(link) => Err(PrivilegedError::NotABridge {
                name: name.to_string(),
                kind: kind_name(link.kind.as_ref()),
            }),
        }
    }

    async fn apply_firewall_impl(&self, state: &FirewallState) -> Result<(), PrivilegedError> {
        state.validate()?;
        // nft and the sysctl file act on the calling thread's namespace.
        self.check_namespace()?;
        nft::run_batch(&firewall::rules::ruleset(state), "apply").await?;
        // Forwarding after the rules: the moment routing starts, the drops
        // for non-NAT guests and metadata addresses are already in place.
        if state.needs_forwarding() {
            firewall::enable_ipv4_forwarding()?;
        }
        Ok(())
    }

    async fn remove_firewall_impl(&self) -> Result<(), PrivilegedError> {
        self.check_namespace()?;
        nft::run_batch(&firewall::rules::removal(), "remove").await?;
        Ok(())
    }

    async fn route_vm_domain_impl(
        &self,
        bridge: &BridgeName,
        server: SocketAddr,
    ) -> Result<VmDomainRouting, PrivilegedError> {
        let link = bridge.as_str().to_owned();
        // resolvectl is a synchronous child process; keep it off the
        // runtime's worker threads.
        tokio::task::spawn_blocking(move || match resolved::detect() {
            Integration::Manual { reason } => Ok(VmDomainRouting::NoResolved { reason }),
            Integration::Resolved { resolvectl, .. } => {
                let config = resolved::Resolvectl::at(resolvectl).configure_link(&link, server)?;
                Ok(VmDomainRouting::Routed {
                    warnings: config.warnings,
                })
            }
        })
        .await
        .map_err(|_| PrivilegedError::Task {
            operation: "resolvectl",
        })?
    }

    async fn list_banger_taps_impl(&self) -> Result<Vec<TapName>, PrivilegedError> {
        let mut taps: Vec<TapName> = self
            .netlink
            .links()
            .await?
            .into_iter()
            .filter(|link| link.kind == Some(InfoKind::Tun) && link.tun.is_some_and(|t| t.is_tap))
            .filter_map(|link| TapName::parse(&link.name))
            .collect();
        taps.sort();
        Ok(taps)
    }
}

impl PrivilegedOps for InProcessOps {
    fn ensure_bridge<'a>(
        &'a self,
        name: &'a BridgeName,
        ip: Ipv4Addr,
        prefix: u8,
    ) -> OpFuture<'a, ()> {
        Box::pin(self.ensure_bridge_impl(name, ip, prefix))
    }

    fn delete_bridge<'a>(&'a self, name: &'a BridgeName) -> OpFuture<'a, ()> {
        Box::pin(self.delete_bridge_impl(name))
    }

    fn create_tap<'a>(
        &'a self,
        name: &'a TapName,
        owner_uid: u32,
        bridge: &'a BridgeName,
    ) -> OpFuture<'a, ()> {
        Box::pin(self.create_tap_impl(name, owner_uid, bridge))
    }

    fn delete_tap<'a>(&'a self, name: &'a TapName) -> OpFuture<'a, ()> {
        Box::pin(self.delete_tap_impl(name))
    }

    fn list_banger_taps(&self) -> OpFuture<'_, Vec<TapName>> {
        Box::pin(self.list_banger_taps_impl())
    }

    fn apply_firewall<'a>(&'a self, state: &'a FirewallState) -> OpFuture<'a, ()> {
        Box::pin(self.apply_firewall_impl(state))
    }

    fn remove_firewall(&self) -> OpFuture<'_, ()> {
        Box::pin(self.remove_firewall_impl())
    }

    fn route_vm_domain<'a>(
        &'a self,
        bridge: &'a BridgeName,
        server: SocketAddr,
    ) -> OpFuture<'a, VmDomainRouting> {
        Box::pin(self.route_vm_domain_impl(bridge, server))
    }
}

fn kind_name(kind: Option<&InfoKind>) -> String {
    match kind {
        Some(kind) => format!("{kind:?}").to_lowercase(),
        None => "device".to_owned(),
    }
}
