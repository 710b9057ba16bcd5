//! Validation and rule-shape tests (pure; the namespace tests in
//! `tests/firewall.rs` check the rules' effect on real traffic).

use super::*;

fn state() -> FirewallState {
    FirewallState {
        bridge: BridgeName::new("banger0").expect("bridge"),
        bridge_ip: Ipv4Addr::new(172, 29, 0, 1),
        cidr: Ipv4Cidr {
            network: Ipv4Addr::new(172, 29, 0, 0),
            prefix: 24,
        },
        dns_ports: vec![53, 42069],
        allowed_host_ports: vec![],
        dns_redirect: None,
        guests: vec![
            GuestRule {
                tap: TapName::new(0),
                ip: Ipv4Addr::new(172, 29, 0, 2),
                nat: true,
            },
            GuestRule {
                tap: TapName::new(1),
                ip: Ipv4Addr::new(172, 29, 0, 3),
                nat: false,
            },
        ],
    }
}

#[test]
fn valid_state_passes() {
    state().validate().expect("valid");
    assert!(state().needs_forwarding());
    let mut no_nat = state();
    no_nat.guests.iter_mut().for_each(|guest| guest.nat = false);
    assert!(!no_nat.needs_forwarding());
}

#[test]
fn addresses_outside_the_cidr_are_refused() {
    for ip in [
        Ipv4Addr::new(172, 29, 1, 2),
        Ipv4Addr::new(172, 29, 0, 0),
        Ipv4Addr::new(172, 29, 0, 255),
        Ipv4Addr::new(172, 29, 0, 1),
        Ipv4Addr::new(169, 254, 169, 254),
    ] {
        let mut bad = state();
        bad.guests[0].ip = ip;
        assert!(
            matches!(
                bad.validate(),
                Err(FirewallError::GuestIpOutsideCidr { .. })
            ),
            "{ip}"
        );
    }
    let mut bad = state();
    bad.bridge_ip = Ipv4Addr::new(10, 0, 0, 1);
    assert!(matches!(
        bad.validate(),
        Err(FirewallError::BridgeIpOutsideCidr { .. })
    ));
    let mut bad = state();
    bad.cidr.network = Ipv4Addr::new(172, 29, 0, 7);
    assert!(matches!(bad.validate(), Err(FirewallError::BadCidr { .. })));
    let mut bad = state();
    bad.cidr.prefix = 31;
    assert!(matches!(bad.validate(), Err(FirewallError::BadCidr { .. })));
}

#[test]
fn duplicates_ports_and_tap_shaped_bridges_are_refused() {
    let mut bad = state();
    bad.guests[1].tap = TapName::new(0);
    assert!(matches!(
        bad.validate(),
        Err(FirewallError::DuplicateTap { .. })
    ));
    let mut bad = state();
    bad.guests[1].ip = bad.guests[0].ip;
    assert!(matches!(
        bad.validate(),
        Err(FirewallError::DuplicateIp { .. })
    ));
    let mut bad = state();
    bad.allowed_host_ports = vec![0];
    assert!(matches!(
        bad.validate(),
        Err(FirewallError::BadPort { port: 0 })
    ));
    let mut bad = state();
    bad.bridge = BridgeName::new("bgtap9").expect("name");
    assert!(matches!(
        bad.validate(),
        Err(FirewallError::BridgeNamedLikeTap { .. })
    ));
}

/// Every string in the batch, recursively.
fn strings(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::String(text) => out.push(text.clone()),
        serde_json::Value::Array(items) => items.iter().for_each(|item| strings(item, out)),
        serde_json::Value::Object(map) => map.values().for_each(|item| strings(item, out)),
        _ => {}
    }
}

#[test]
fn the_batch_names_only_banger_tables() {
    let batch = rules::ruleset(&state());
    let commands = batch["nftables"].as_array().expect("array");
    for command in commands {
        let (_, body) = command
            .as_object()
            .and_then(|map| map.iter().next())
            .expect("one command");
        let (kind, object) = body
            .as_object()
            .and_then(|map| map.iter().next())
            .expect("object");
        let key = if kind == "table" { "name" } else { "table" };
        assert_eq!(object[key].as_str(), Some(TABLE_NAME), "{command}");
        assert!(
            ["bridge", "inet"].contains(&object["family"].as_str().unwrap_or("")),
            "{command}"
        );
    }
    let removal = rules::removal();
    for command in removal["nftables"].as_array().expect("array") {
        let text = command.to_string();
        assert!(text.contains("\"name\":\"banger\""), "{text}");
    }
}

#[test]
fn only_nat_guests_are_masqueraded() {
    let batch = rules::ruleset(&state());
    let text = batch.to_string();
    assert_eq!(text.matches("masquerade").count(), 1, "{text}");
    let mut all = Vec::new();
    strings(&batch, &mut all);
    // Interface names and addresses in the batch are banger's own.
    assert!(all.contains(&"bgtap0".to_owned()));
    assert!(all.contains(&"172.29.0.2".to_owned()));
    assert!(all.contains(&"169.254.0.0".to_owned()));
}

#[test]
fn a_dns_redirect_sends_port_53_to_the_daemon_port_and_opens_it() {
    let text = |state: &FirewallState| rules::ruleset(state).to_string();
    let without = text(&state());
    assert!(!without.contains("redirect"), "{without}");
    assert!(!without.contains("\"prerouting\",\"type\":\"nat\""));
    let mut redirected = state();
    redirected.dns_redirect = Some(42_070);
    let with = text(&redirected);
    assert!(with.contains("{\"redirect\":{\"port\":42070}}"), "{with}");
    // The input chain accepts the port the redirect leads to.
    assert!(with.contains("42070]"), "{with}");
    redirected.dns_redirect = Some(0);
    assert!(matches!(
        redirected.validate(),
        Err(FirewallError::BadPort { port: 0 })
    ));
}
