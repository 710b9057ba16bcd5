//! An in-memory [`PrivilegedOps`] for tests that drive the daemon's VM
//! lifecycle without root: no netlink, no `/dev/net/tun`, no nftables.
//!
//! [`FakeNetwork`] keeps what the kernel would: bridges with their
//! addresses, TAPs with their owner and bridge, the firewall state applied
//! last (`None` after [`PrivilegedOps::remove_firewall`]), the IPv4
//! forwarding switch and where `~vm` was routed (as if systemd-resolved ran). It enforces the same rules as the in-process
//! implementation where a caller could get them wrong (a TAP needs its
//! bridge, TAP names are unique, a firewall state must validate, the prefix
//! is 8..=30, a bridge name held by a TAP is refused), records every call in
//! order, and can be told to fail the next call of one kind
//! ([`FakeNetwork::fail_next`]) to test error paths.
//!
//! Share one `Arc<FakeNetwork>` between daemon instances of one test to model
//! a daemon restart: the host's devices outlive the daemon.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, PoisonError};

use banger_host::net::firewall::{FirewallError, FirewallState};
use banger_host::net::link::LinkError;
use banger_host::net::names::{BridgeName, TapName};
use banger_host::net::tun::TunError;
use banger_host::privileged::{OpFuture, PrivilegedError, PrivilegedOps, VmDomainRouting};

/// The kinds of [`PrivilegedOps`] calls, one per trait method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CallKind {
    /// [`PrivilegedOps::ensure_bridge`].
    EnsureBridge,
    /// [`PrivilegedOps::delete_bridge`].
    DeleteBridge,
    /// [`PrivilegedOps::create_tap`].
    CreateTap,
    /// [`PrivilegedOps::delete_tap`].
    DeleteTap,
    /// [`PrivilegedOps::list_banger_taps`].
    ListBangerTaps,
    /// [`PrivilegedOps::apply_firewall`].
    ApplyFirewall,
    /// [`PrivilegedOps::remove_firewall`].
    RemoveFirewall,
    /// [`PrivilegedOps::route_vm_domain`].
    RouteVmDomain,
}

/// One call as the fake received it, with its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// `ensure_bridge(name, ip, prefix)`.
    EnsureBridge {
        /// The bridge.
        bridge: BridgeName,
        /// Its address.
        ip: Ipv4Addr,
        /// Its prefix length.
        prefix: u8,
    },
    /// `delete_bridge(name)`.
    DeleteBridge {
        /// The bridge.
        bridge: BridgeName,
    },
    /// `create_tap(name, owner_uid, bridge)`.
    CreateTap {
        /// The TAP.
        tap: TapName,
        /// Its owner.
        owner_uid: u32,
        /// The bridge it joins.
        bridge: BridgeName,
    },
    /// `delete_tap(name)`.
    DeleteTap {
        /// The TAP.
        tap: TapName,
    },
    /// `list_banger_taps()`.
    ListBangerTaps,
    /// `apply_firewall(state)`.
    ApplyFirewall {
        /// The state asked for.
        state: FirewallState,
    },
    /// `remove_firewall()`.
    RemoveFirewall,
    /// `route_vm_domain(bridge, server)`.
    RouteVmDomain {
        /// The bridge link.
        bridge: BridgeName,
        /// banger's DNS server.
        server: SocketAddr,
    },
}

impl Call {
    /// Which method this was.
    pub fn kind(&self) -> CallKind {
        match self {
            Self::EnsureBridge { .. } => CallKind::EnsureBridge,
            Self::DeleteBridge { .. } => CallKind::DeleteBridge,
            Self::CreateTap { .. } => CallKind::CreateTap,
            Self::DeleteTap { .. } => CallKind::DeleteTap,
            Self::ListBangerTaps => CallKind::ListBangerTaps,
            Self::ApplyFirewall { .. } => CallKind::ApplyFirewall,
            Self::RemoveFirewall => CallKind::RemoveFirewall,
            Self::RouteVmDomain { .. } => CallKind::RouteVmDomain,
        }
    }
}

/// A bridge in the fake host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeBridge {
    /// Its IPv4 addresses with prefix lengths.
    pub addresses: BTreeSet<(Ipv4Addr, u8)>,
}

/// A TAP in the fake host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeTap {
    /// The uid that may open it.
    pub owner_uid: u32,
    /// The bridge it is a port of.
    pub bridge: BridgeName,
}

#[derive(Debug, Default)]
struct State {
    bridges: BTreeMap<String, FakeBridge>,
    taps: BTreeMap<TapName, FakeTap>,
    firewall: Option<FirewallState>,
    ip_forward: bool,
    vm_domain: Option<(BridgeName, SocketAddr)>,
    calls: Vec<Call>,
    fail_next: BTreeSet<CallKind>,
}

/// An in-memory [`PrivilegedOps`]; see the module documentation.
#[derive(Debug, Default)]
pub struct FakeNetwork {
    state: Mutex<State>,
}

impl FakeNetwork {
    /// An empty host: no bridges, no TAPs, no firewall, forwarding off.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every update is a single statement on plain collections; a panic
        // elsewhere cannot leave them half-changed.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Makes the next call of `kind` fail (once) with an error like the
    /// real implementation's, after recording it. The device state is left
    /// unchanged by the failed call.
    pub fn fail_next(&self, kind: CallKind) {
        self.state().fail_next.insert(kind);
    }

    /// Every call so far, in order (failed ones included).
    pub fn calls(&self) -> Vec<Call> {
        self.state().calls.clone()
    }

    /// How many calls of `kind` were made.
    pub fn count(&self, kind: CallKind) -> usize {
        self.state()
            .calls
            .iter()
            .filter(|call| call.kind() == kind)
            .count()
    }

    /// The bridges, by name.
    pub fn bridges(&self) -> BTreeMap<String, FakeBridge> {
        self.state().bridges.clone()
    }

    /// The TAPs, by name.
    pub fn taps(&self) -> BTreeMap<TapName, FakeTap> {
        self.state().taps.clone()
    }

    /// The firewall state applied last; `None` before the first apply and
    /// after a removal.
    pub fn firewall(&self) -> Option<FirewallState> {
        self.state().firewall.clone()
    }

    /// Whether IPv4 forwarding was turned on (an applied state had a NAT
    /// guest). Like the real switch, it stays on once set.
    pub fn ip_forward(&self) -> bool {
        self.state().ip_forward
    }

    /// Where `~vm` was routed last: the bridge link and the DNS server.
    pub fn vm_domain_route(&self) -> Option<(BridgeName, SocketAddr)> {
        self.state().vm_domain.clone()
    }

    /// Records `call`; when a failure of its kind was requested, consumes
    /// the request and returns true.
    fn record(&self, call: Call) -> bool {
        let mut state = self.state();
        let kind = call.kind();
        state.calls.push(call);
        state.fail_next.remove(&kind)
    }
}

fn injected(what: &str) -> std::io::Error {
    std::io::Error::other(format!("{what} failed (injected by FakeNetwork)"))
}

fn netlink_failure(what: &str) -> PrivilegedError {
    PrivilegedError::Link(LinkError::Connect {
        source: injected(what),
    })
}

fn nft_failure(action: &'static str) -> PrivilegedError {
    PrivilegedError::Firewall(FirewallError::NftFailed {
        program: PathBuf::from("nft"),
        action,
        status: "exit status: 1".into(),
        stderr: "injected by FakeNetwork".into(),
    })
}

impl FakeNetwork {
    fn ensure_bridge_now(
        &self,
        name: &BridgeName,
        ip: Ipv4Addr,
        prefix: u8,
    ) -> Result<(), PrivilegedError> {
        let call = Call::EnsureBridge {
            bridge: name.clone(),
            ip,
            prefix,
        };
        if self.record(call) {
            return Err(netlink_failure("add bridge"));
        }
        if !(8..=30).contains(&prefix) {
            return Err(PrivilegedError::BadPrefix {
                bridge: name.to_string(),
                prefix,
            });
        }
        let mut state = self.state();
        if state.taps.keys().any(|tap| tap.as_str() == name.as_str()) {
            return Err(PrivilegedError::NotABridge {
                name: name.to_string(),
                kind: "tun".into(),
            });
        }
        state
            .bridges
            .entry(name.to_string())
            .or_insert_with(|| FakeBridge {
                addresses: BTreeSet::new(),
            })
            .addresses
            .insert((ip, prefix));
        Ok(())
    }

    fn delete_bridge_now(&self, name: &BridgeName) -> Result<(), PrivilegedError> {
        if self.record(Call::DeleteBridge {
            bridge: name.clone(),
        }) {
            return Err(netlink_failure("delete link"));
        }
        let mut state = self.state();
        if state.taps.keys().any(|tap| tap.as_str() == name.as_str()) {
            return Err(PrivilegedError::NotABridge {
                name: name.to_string(),
                kind: "tun".into(),
            });
        }
        state.bridges.remove(name.as_str());
        Ok(())
    }

    fn create_tap_now(
        &self,
        name: &TapName,
        owner_uid: u32,
        bridge: &BridgeName,
    ) -> Result<(), PrivilegedError> {
        let call = Call::CreateTap {
            tap: name.clone(),
            owner_uid,
            bridge: bridge.clone(),
        };
        if self.record(call) {
            return Err(PrivilegedError::Tun(TunError::Ioctl {
                ioctl: "TUNSETIFF",
                name: name.to_string(),
                source: injected("TUNSETIFF"),
            }));
        }
        let mut state = self.state();
        if !state.bridges.contains_key(bridge.as_str()) {
            return Err(PrivilegedError::NoBridge {
                name: bridge.to_string(),
            });
        }
        if state.taps.contains_key(name) {
            return Err(PrivilegedError::Tun(TunError::Exists {
                name: name.to_string(),
            }));
        }
        state.taps.insert(
            name.clone(),
            FakeTap {
                owner_uid,
                bridge: bridge.clone(),
            },
        );
        Ok(())
    }

    fn delete_tap_now(&self, name: &TapName) -> Result<(), PrivilegedError> {
        if self.record(Call::DeleteTap { tap: name.clone() }) {
            return Err(netlink_failure("delete link"));
        }
        self.state().taps.remove(name);
        Ok(())
    }

    fn list_banger_taps_now(&self) -> Result<Vec<TapName>, PrivilegedError> {
        if self.record(Call::ListBangerTaps) {
            return Err(netlink_failure("list links"));
        }
        // BTreeMap keys are sorted, as the trait promises.
        Ok(self.state().taps.keys().cloned().collect())
    }

    fn apply_firewall_now(&self, desired: &FirewallState) -> Result<(), PrivilegedError> {
        if self.record(Call::ApplyFirewall {
            state: desired.clone(),
        }) {
            return Err(nft_failure("apply"));
        }
        desired.validate()?;
        let mut state = self.state();
        state.firewall = Some(desired.clone());
        if desired.needs_forwarding() {
            state.ip_forward = true;
        }
        Ok(())
    }

    fn route_vm_domain_now(
        &self,
        bridge: &BridgeName,
        server: SocketAddr,
    ) -> Result<VmDomainRouting, PrivilegedError> {
        if self.record(Call::RouteVmDomain {
            bridge: bridge.clone(),
            server,
        }) {
            return Err(PrivilegedError::Task {
                operation: "resolvectl (injected by FakeNetwork)",
            });
        }
        let mut state = self.state();
        if !state.bridges.contains_key(bridge.as_str()) {
            return Err(PrivilegedError::NoBridge {
                name: bridge.to_string(),
            });
        }
        state.vm_domain = Some((bridge.clone(), server));
        Ok(VmDomainRouting::Routed {
            warnings: Vec::new(),
        })
    }

    fn remove_firewall_now(&self) -> Result<(), PrivilegedError> {
        if self.record(Call::RemoveFirewall) {
            return Err(nft_failure("remove"));
        }
        self.state().firewall = None;
        Ok(())
    }
}

impl PrivilegedOps for FakeNetwork {
    fn ensure_bridge<'a>(
        &'a self,
        name: &'a BridgeName,
        ip: Ipv4Addr,
        prefix: u8,
    ) -> OpFuture<'a, ()> {
        Box::pin(async move { self.ensure_bridge_now(name, ip, prefix) })
    }

    fn delete_bridge<'a>(&'a self, name: &'a BridgeName) -> OpFuture<'a, ()> {
        Box::pin(async move { self.delete_bridge_now(name) })
    }

    fn create_tap<'a>(
        &'a self,
        name: &'a TapName,
        owner_uid: u32,
        bridge: &'a BridgeName,
    ) -> OpFuture<'a, ()> {
        Box::pin(async move { self.create_tap_now(name, owner_uid, bridge) })
    }

    fn delete_tap<'a>(&'a self, name: &'a TapName) -> OpFuture<'a, ()> {
        Box::pin(async move { self.delete_tap_now(name) })
    }

    fn list_banger_taps(&self) -> OpFuture<'_, Vec<TapName>> {
        Box::pin(async move { self.list_banger_taps_now() })
    }

    fn apply_firewall<'a>(&'a self, state: &'a FirewallState) -> OpFuture<'a, ()> {
        Box::pin(async move { self.apply_firewall_now(state) })
    }

    fn remove_firewall(&self) -> OpFuture<'_, ()> {
        Box::pin(async move { self.remove_firewall_now() })
    }

    fn route_vm_domain<'a>(
        &'a self,
        bridge: &'a BridgeName,
        server: SocketAddr,
    ) -> OpFuture<'a, VmDomainRouting> {
        Box::pin(async move { self.route_vm_domain_now(bridge, server) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use banger_config::config::Ipv4Cidr;

    fn bridge() -> BridgeName {
        BridgeName::new("bgfake0").expect("bridge name")
    }

    fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(future)
    }

    fn firewall(guests: Vec<banger_host::net::firewall::GuestRule>) -> FirewallState {
        FirewallState {
            bridge: bridge(),
            bridge_ip: Ipv4Addr::new(10, 9, 0, 1),
            cidr: Ipv4Cidr {
                network: Ipv4Addr::new(10, 9, 0, 0),
                prefix: 24,
            },
            dns_ports: vec![53],
            allowed_host_ports: Vec::new(),
            dns_redirect: None,
            guests,
        }
    }

    #[test]
    fn every_method_changes_the_fake_host_like_the_real_one() {
        let net = FakeNetwork::new();
        let tap = TapName::new(0);
        block_on(async {
            assert!(matches!(
                net.create_tap(&tap, 1000, &bridge()).await,
                Err(PrivilegedError::NoBridge { .. })
            ));
            assert!(matches!(
                net.ensure_bridge(&bridge(), Ipv4Addr::new(10, 9, 0, 1), 31)
                    .await,
                Err(PrivilegedError::BadPrefix { .. })
            ));
            net.ensure_bridge(&bridge(), Ipv4Addr::new(10, 9, 0, 1), 24)
                .await
                .expect("ensure_bridge");
            net.ensure_bridge(&bridge(), Ipv4Addr::new(10, 9, 0, 1), 24)
                .await
                .expect("ensure_bridge is idempotent");
            net.create_tap(&tap, 1000, &bridge())
                .await
                .expect("create_tap");
            assert!(matches!(
                net.create_tap(&tap, 1000, &bridge()).await,
                Err(PrivilegedError::Tun(TunError::Exists { .. }))
            ));
            assert_eq!(
                net.list_banger_taps().await.expect("list"),
                vec![tap.clone()]
            );
            let guest = banger_host::net::firewall::GuestRule {
                tap: tap.clone(),
                ip: Ipv4Addr::new(10, 9, 0, 2),
                nat: true,
            };
            net.apply_firewall(&firewall(vec![guest.clone()]))
                .await
                .expect("apply_firewall");
            assert!(net.ip_forward());
            let mut invalid = firewall(vec![guest]);
            invalid.bridge_ip = Ipv4Addr::new(192, 168, 1, 1);
            assert!(net.apply_firewall(&invalid).await.is_err());
            assert_eq!(
                net.firewall().expect("applied").guests.len(),
                1,
                "a refused state leaves the old one"
            );
            net.remove_firewall().await.expect("remove_firewall");
            assert_eq!(net.firewall(), None);
            let dns: SocketAddr = "10.9.0.1:53".parse().expect("addr");
            net.route_vm_domain(&bridge(), dns)
                .await
                .expect("route_vm_domain");
            assert_eq!(net.vm_domain_route(), Some((bridge(), dns)));
            net.delete_tap(&tap).await.expect("delete_tap");
            net.delete_tap(&tap).await.expect("missing TAP is fine");
            net.delete_bridge(&bridge()).await.expect("delete_bridge");
        });
        assert!(net.taps().is_empty());
        assert!(net.bridges().is_empty());
        assert_eq!(net.count(CallKind::CreateTap), 3);
        assert_eq!(net.calls().len(), 14);
    }

    #[test]
    fn fail_next_fails_one_call_of_that_kind() {
        let net = FakeNetwork::new();
        let tap = TapName::new(3);
        block_on(async {
            net.ensure_bridge(&bridge(), Ipv4Addr::new(10, 9, 0, 1), 24)
                .await
                .expect("ensure_bridge");
            for kind in [
                CallKind::EnsureBridge,
                CallKind::DeleteBridge,
                CallKind::CreateTap,
                CallKind::DeleteTap,
                CallKind::ListBangerTaps,
                CallKind::ApplyFirewall,
                CallKind::RemoveFirewall,
                CallKind::RouteVmDomain,
            ] {
                net.fail_next(kind);
                let result = match kind {
                    CallKind::EnsureBridge => {
                        net.ensure_bridge(&bridge(), Ipv4Addr::new(10, 9, 0, 1), 24)
                            .await
                    }
                    CallKind::DeleteBridge => net.delete_bridge(&bridge()).await,
                    CallKind::CreateTap => net.create_tap(&tap, 0, &bridge()).await,
                    CallKind::DeleteTap => net.delete_tap(&tap).await,
                    CallKind::ListBangerTaps => net.list_banger_taps().await.map(drop),
                    CallKind::ApplyFirewall => net.apply_firewall(&firewall(Vec::new())).await,
                    CallKind::RemoveFirewall => net.remove_firewall().await,
                    CallKind::RouteVmDomain => net
                        .route_vm_domain(&bridge(), "10.9.0.1:53".parse().expect("addr"))
                        .await
                        .map(drop),
                };
                assert!(result.is_err(), "{kind:?} should fail once");
            }
            net.create_tap(&tap, 0, &bridge())
                .await
                .expect("the next create_tap succeeds");
        });
        assert_eq!(net.bridges().len(), 1, "the failed delete left the bridge");
        assert_eq!(net.taps().len(), 1);
        assert_eq!(net.firewall(), None, "the failed apply applied nothing");
    }
}
