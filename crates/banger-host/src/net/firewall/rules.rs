//! The nftables JSON batch for a [`FirewallState`] (pure; no I/O).
//!
//! The batch for [`ruleset`] is, for each of `bridge banger` and
//! `inet banger`: `add table` (so the next command cannot fail on a missing
//! table), `delete table` (drops every old chain and rule), `add table`, then
//! the chains and rules. `nft -f` sends it as one netlink transaction, so
//! other processes see either the old tables or the new ones, and tables
//! owned by anyone else are never named.
//!
//! What the rules say (`B` = the bridge, `G` = a guest's address):
//!
//! `bridge banger`, chain `prerouting` (frames entering a bridge port):
//! - `iifname <tap> ip saddr != G drop`: a guest only sends IPv4 as itself;
//! - `iifname "bgtap*" iifname != <tap> ip saddr G drop`: no other banger TAP
//!   sends as that guest. Together these make "source address G on the
//!   bridge" mean "came from G's TAP", so the routing rules below can key on
//!   the address and still be tied to the TAP.
//!
//! `inet banger`, chain `input` (to the host itself), for `iifname B`:
//! established/related, ICMP to the bridge address, ICMPv6, the DNS ports
//! and allowed ports on the bridge address (UDP and TCP) are accepted;
//! everything else from the guests is dropped.
//!
//! `inet banger`, chain `prerouting` (only with a DNS redirect): for
//! `iifname B`, `ip daddr <bridge address>`, UDP and TCP port 53 are
//! redirected to the daemon's unprivileged DNS port on the same address,
//! which the input chain then accepts.
//!
//! `inet banger`, chain `forward` (routed through the host):
//! - from B to `169.254.0.0/16`: drop (metadata services);
//! - B to B: accept (guest to guest when `br_netfilter` routes bridged
//!   frames through here);
//! - to B, established/related: accept (replies to NAT guests);
//! - from B with saddr G for each NAT guest: accept;
//! - from B: drop (no NAT: a guest reaches only the bridge);
//! - to B: drop (nobody outside opens connections to guests).
//!
//! `inet banger`, chain `postrouting` (NAT): `ip saddr G oifname != B
//! masquerade` for each NAT guest.
//!
//! Every chain has policy accept: banger only ever drops traffic that
//! involves its bridge, and leaves all other traffic to the host's own
//! firewall. An accept here does not override a drop in another table.

use std::net::Ipv4Addr;

use serde_json::{Value, json};

use super::{FirewallState, LINK_LOCAL, TABLE_NAME};
use crate::net::names::TAP_PREFIX;

/// The batch that replaces banger's tables with the rules for `state`.
///
/// The caller validates `state` first ([`FirewallState::validate`]).
pub fn ruleset(state: &FirewallState) -> Value {
    let mut batch = Vec::new();
    batch.extend(replace_table("bridge"));
    batch.extend(bridge_table(state));
    batch.extend(replace_table("inet"));
    batch.extend(inet_table(state));
    json!({ "nftables": batch })
}

/// The batch that deletes banger's tables (and nothing else); succeeds when
/// they do not exist.
pub fn removal() -> Value {
    let mut batch = Vec::new();
    for family in ["bridge", "inet"] {
        batch.push(json!({ "add": { "table": table(family) } }));
        batch.push(json!({ "delete": { "table": table(family) } }));
    }
    json!({ "nftables": batch })
}

fn table(family: &str) -> Value {
    json!({ "family": family, "name": TABLE_NAME })
}

fn replace_table(family: &str) -> Vec<Value> {
    vec![
        json!({ "add": { "table": table(family) } }),
        json!({ "delete": { "table": table(family) } }),
        json!({ "add": { "table": table(family) } }),
    ]
}

fn base_chain(family: &str, name: &str, kind: &str, hook: &str, prio: i32) -> Value {
    json!({ "add": { "chain": {
        "family": family, "table": TABLE_NAME, "name": name,
        "type": kind, "hook": hook, "prio": prio, "policy": "accept",
    } } })
}

fn rule(family: &str, chain: &str, expr: Vec<Value>) -> Value {
    json!({ "add": { "rule": {
        "family": family, "table": TABLE_NAME, "chain": chain, "expr": expr,
    } } })
}

fn matches(op: &str, left: Value, right: Value) -> Value {
    json!({ "match": { "op": op, "left": left, "right": right } })
}

fn meta(key: &str) -> Value {
    json!({ "meta": { "key": key } })
}

fn payload(protocol: &str, field: &str) -> Value {
    json!({ "payload": { "protocol": protocol, "field": field } })
}

fn address(ip: Ipv4Addr) -> Value {
    Value::String(ip.to_string())
}

fn ports(list: &[u16]) -> Value {
    let mut sorted: Vec<u16> = list.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    json!({ "set": sorted })
}

fn verdict(name: &str) -> Value {
    json!({ name: null })
}

fn bridge_table(state: &FirewallState) -> Vec<Value> {
    const FAMILY: &str = "bridge";
    const CHAIN: &str = "prerouting";
    // -200: before anything else on the bridge looks at the frame.
    let mut out = vec![base_chain(FAMILY, CHAIN, "filter", "prerouting", -200)];
    // `meta ibrname` would scope these rules to banger's bridge, but not
    // every kernel supports it in the bridge family; matching banger's own
    // TAP name pattern gives the same scope without it.
    let any_tap = format!("{TAP_PREFIX}*");
    for guest in &state.guests {
        out.push(rule(
            FAMILY,
            CHAIN,
            vec![
                matches("==", meta("iifname"), json!(guest.tap.as_str())),
                matches("!=", payload("ip", "saddr"), address(guest.ip)),
                verdict("drop"),
            ],
        ));
        out.push(rule(
            FAMILY,
            CHAIN,
            vec![
                matches("==", meta("iifname"), json!(any_tap)),
                matches("!=", meta("iifname"), json!(guest.tap.as_str())),
                matches("==", payload("ip", "saddr"), address(guest.ip)),
                verdict("drop"),
            ],
        ));
    }
    out
}

fn inet_table(state: &FirewallState) -> Vec<Value> {
    const FAMILY: &str = "inet";
    let bridge = json!(state.bridge.as_str());
    let from_bridge = || matches("==", meta("iifname"), bridge.clone());
    let to_bridge = || matches("==", meta("oifname"), bridge.clone());
    let to_host = || matches("==", payload("ip", "daddr"), address(state.bridge_ip));
    let established = || {
        matches(
            "in",
            json!({ "ct": { "key": "state" } }),
            json!(["established", "related"]),
        )
    };
    let link_local = json!({ "prefix": {
        "addr": LINK_LOCAL.network.to_string(), "len": LINK_LOCAL.prefix,
    } });

    let mut out = Vec::new();

    if let Some(port) = state.dns_redirect {
        // -100: dstnat, before the routing decision and the input filter.
        out.push(base_chain(FAMILY, "prerouting", "nat", "prerouting", -100));
        for protocol in ["udp", "tcp"] {
            out.push(rule(
                FAMILY,
                "prerouting",
                vec![
                    from_bridge(),
                    to_host(),
                    matches("==", payload(protocol, "dport"), json!(53)),
                    json!({ "redirect": { "port": port } }),
                ],
            ));
        }
    }

    out.push(base_chain(FAMILY, "input", "filter", "input", 0));
    let input = |expr| rule(FAMILY, "input", expr);
    out.push(input(vec![from_bridge(), established(), verdict("accept")]));
    out.push(input(vec![
        from_bridge(),
        to_host(),
        matches("==", meta("l4proto"), json!("icmp")),
        verdict("accept"),
    ]));
    out.push(input(vec![
        from_bridge(),
        matches("==", meta("l4proto"), json!("ipv6-icmp")),
        verdict("accept"),
    ]));
    let mut open_ports: Vec<u16> = state.dns_ports.clone();
    open_ports.extend(&state.allowed_host_ports);
    open_ports.extend(state.dns_redirect);
    if !open_ports.is_empty() {
        for protocol in ["udp", "tcp"] {
            out.push(input(vec![
                from_bridge(),
                to_host(),
                matches("==", payload(protocol, "dport"), ports(&open_ports)),
                verdict("accept"),
            ]));
        }
    }
    out.push(input(vec![from_bridge(), verdict("drop")]));

    out.push(base_chain(FAMILY, "forward", "filter", "forward", 0));
    let forward = |expr| rule(FAMILY, "forward", expr);
    out.push(forward(vec![
        from_bridge(),
        matches("==", payload("ip", "daddr"), link_local),
        verdict("drop"),
    ]));
    out.push(forward(vec![from_bridge(), to_bridge(), verdict("accept")]));
    out.push(forward(vec![to_bridge(), established(), verdict("accept")]));
    for guest in state.guests.iter().filter(|guest| guest.nat) {
        out.push(forward(vec![
            from_bridge(),
            matches("==", payload("ip", "saddr"), address(guest.ip)),
            verdict("accept"),
        ]));
    }
    out.push(forward(vec![from_bridge(), verdict("drop")]));
    out.push(forward(vec![to_bridge(), verdict("drop")]));

    // 100: srcnat, after the routing decision picked the outgoing interface.
    out.push(base_chain(FAMILY, "postrouting", "nat", "postrouting", 100));
    for guest in state.guests.iter().filter(|guest| guest.nat) {
        out.push(rule(
            FAMILY,
            "postrouting",
            vec![
                matches("==", payload("ip", "saddr"), address(guest.ip)),
                matches("!=", meta("oifname"), bridge.clone()),
                verdict("masquerade"),
            ],
        ));
    }
    out
}
