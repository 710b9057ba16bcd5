//! The policy's checks, request by request.

use banger_host::net::firewall::{FirewallState, GuestRule};
use banger_host::net::names::TapName;

use super::*;

fn policy() -> Policy {
    Policy {
        owner_uid: 1000,
        bridge: BridgeName::new("banger0").expect("bridge"),
        allowed_cidrs: vec!["172.30.0.0/16".parse().expect("cidr")],
        frame_timeout: FRAME_TIMEOUT,
        max_connections: MAX_CONNECTIONS,
    }
}

fn bridge(name: &str) -> BridgeName {
    BridgeName::new(name).expect("bridge")
}

fn firewall(cidr: &str, bridge_ip: Ipv4Addr) -> FirewallState {
    FirewallState {
        bridge: bridge("banger0"),
        bridge_ip,
        cidr: cidr.parse().expect("cidr"),
        dns_ports: vec![53],
        allowed_host_ports: Vec::new(),
        dns_redirect: None,
        guests: vec![GuestRule {
            tap: TapName::new(0),
            ip: Ipv4Addr::from(u32::from(bridge_ip) + 1),
            nat: true,
        }],
    }
}

#[test]
fn only_the_owner_is_served() {
    assert!(policy().allows_peer(1000));
    assert!(!policy().allows_peer(0));
    assert!(!policy().allows_peer(1001));
}

#[test]
fn requests_inside_the_install_pass() {
    let policy = policy();
    let ok = [
        Request::Hello,
        Request::ListBangerTaps,
        Request::RemoveFirewall,
        Request::DeleteTap {
            tap: TapName::new(4),
        },
        Request::EnsureBridge {
            bridge: bridge("banger0"),
            ip: Ipv4Addr::new(172, 30, 0, 1),
            prefix: 24,
        },
        Request::CreateTap {
            tap: TapName::new(0),
            bridge: bridge("banger0"),
        },
        Request::ApplyFirewall {
            state: firewall("172.30.5.0/24", Ipv4Addr::new(172, 30, 5, 1)),
        },
        Request::RouteVmDomain {
            bridge: bridge("banger0"),
            server: "172.30.0.1:53".parse().expect("addr"),
        },
        Request::RouteVmDomain {
            bridge: bridge("banger0"),
            server: "127.0.0.1:42069".parse().expect("addr"),
        },
    ];
    for request in ok {
        assert!(policy.check(&request).is_ok(), "{request:?}");
    }
}

#[test]
fn requests_outside_the_install_are_refused() {
    let policy = policy();
    let refused = [
        Request::EnsureBridge {
            bridge: bridge("eth0"),
            ip: Ipv4Addr::new(172, 30, 0, 1),
            prefix: 24,
        },
        Request::EnsureBridge {
            bridge: bridge("banger0"),
            ip: Ipv4Addr::new(10, 0, 0, 1),
            prefix: 24,
        },
        // Wider than the allowed /16.
        Request::EnsureBridge {
            bridge: bridge("banger0"),
            ip: Ipv4Addr::new(172, 30, 0, 1),
            prefix: 8,
        },
        Request::EnsureBridge {
            bridge: bridge("banger0"),
            ip: Ipv4Addr::new(172, 30, 0, 1),
            prefix: 31,
        },
        Request::DeleteBridge {
            bridge: bridge("docker0"),
        },
        Request::CreateTap {
            tap: TapName::new(0),
            bridge: bridge("virbr0"),
        },
        Request::ApplyFirewall {
            state: firewall("192.168.1.0/24", Ipv4Addr::new(192, 168, 1, 1)),
        },
        Request::ApplyFirewall {
            state: FirewallState {
                bridge: bridge("br1"),
                ..firewall("172.30.5.0/24", Ipv4Addr::new(172, 30, 5, 1))
            },
        },
        Request::RouteVmDomain {
            bridge: bridge("eth0"),
            server: "172.30.0.1:53".parse().expect("addr"),
        },
        Request::RouteVmDomain {
            bridge: bridge("banger0"),
            server: "8.8.8.8:53".parse().expect("addr"),
        },
        Request::RouteVmDomain {
            bridge: bridge("banger0"),
            server: "[fd00::1]:53".parse().expect("addr"),
        },
    ];
    for request in refused {
        assert!(policy.check(&request).is_err(), "{request:?}");
    }
}
