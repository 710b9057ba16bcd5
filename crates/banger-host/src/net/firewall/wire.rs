//! [`FirewallState`] on the wire (the `bangerd-root` protocol).
//!
//! The state is written as plain JSON (the CIDR as `"172.30.0.0/24"`) and
//! read back only through [`FirewallState::validate`]: a state that arrives
//! from another process is checked again before anyone can act on it, and
//! unknown fields are refused rather than ignored.

use std::net::Ipv4Addr;

use banger_config::config::Ipv4Cidr;
use serde::{Deserialize, Serialize};

use super::{FirewallState, GuestRule};
use crate::net::names::{BridgeName, TapName};

/// [`FirewallState`] as written and read.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateWire {
    bridge: BridgeName,
    bridge_ip: Ipv4Addr,
    /// As text: `Ipv4Cidr` reads only its text form.
    cidr: String,
    dns_ports: Vec<u16>,
    allowed_host_ports: Vec<u16>,
    #[serde(default)]
    dns_redirect: Option<u16>,
    guests: Vec<GuestWire>,
}

/// [`GuestRule`] as written and read.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct GuestWire {
    tap: TapName,
    ip: Ipv4Addr,
    nat: bool,
}

impl Serialize for FirewallState {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        StateWire {
            bridge: self.bridge.clone(),
            bridge_ip: self.bridge_ip,
            cidr: self.cidr.to_string(),
            dns_ports: self.dns_ports.clone(),
            allowed_host_ports: self.allowed_host_ports.clone(),
            dns_redirect: self.dns_redirect,
            guests: self
                .guests
                .iter()
                .map(|guest| GuestWire {
                    tap: guest.tap.clone(),
                    ip: guest.ip,
                    nat: guest.nat,
                })
                .collect(),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for FirewallState {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = StateWire::deserialize(deserializer)?;
        let cidr: Ipv4Cidr = wire.cidr.parse().map_err(serde::de::Error::custom)?;
        let state = FirewallState {
            bridge: wire.bridge,
            bridge_ip: wire.bridge_ip,
            cidr,
            dns_ports: wire.dns_ports,
            allowed_host_ports: wire.allowed_host_ports,
            dns_redirect: wire.dns_redirect,
            guests: wire
                .guests
                .into_iter()
                .map(|guest| GuestRule {
                    tap: guest.tap,
                    ip: guest.ip,
                    nat: guest.nat,
                })
                .collect(),
        };
        state.validate().map_err(serde::de::Error::custom)?;
        Ok(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> FirewallState {
        FirewallState {
            bridge: BridgeName::new("banger0").expect("bridge"),
            bridge_ip: Ipv4Addr::new(172, 30, 0, 1),
            cidr: "172.30.0.0/24".parse().expect("cidr"),
            dns_ports: vec![53],
            allowed_host_ports: vec![42069],
            dns_redirect: None,
            guests: vec![GuestRule {
                tap: TapName::new(3),
                ip: Ipv4Addr::new(172, 30, 0, 7),
                nat: true,
            }],
        }
    }

    #[test]
    fn round_trips_through_json() {
        let json = serde_json::to_value(state()).expect("json");
        assert_eq!(json["cidr"], "172.30.0.0/24");
        assert_eq!(json["guests"][0]["tap"], "bgtap3");
        let back: FirewallState = serde_json::from_value(json).expect("read");
        assert_eq!(back, state());
    }

    #[test]
    fn reading_validates_again() {
        let mut json = serde_json::to_value(state()).expect("json");
        json["bridge_ip"] = "10.0.0.1".into();
        assert!(serde_json::from_value::<FirewallState>(json).is_err());
        let mut json = serde_json::to_value(state()).expect("json");
        json["guests"][0]["tap"] = "eth0".into();
        assert!(serde_json::from_value::<FirewallState>(json).is_err());
        let mut json = serde_json::to_value(state()).expect("json");
        json["cidr"] = "172.30.0.1/24".into();
        assert!(serde_json::from_value::<FirewallState>(json).is_err());
        let mut json = serde_json::to_value(state()).expect("json");
        json["surprise"] = true.into();
        assert!(serde_json::from_value::<FirewallState>(json).is_err());
    }
}
