//! Namespace tests for banger's nftables tables: real traffic between
//! network namespaces this test creates, nothing else.
//!
//! Topology (three named namespaces, unique per test, deleted on drop):
//!
//! ```text
//!  GUEST  eth0 172.29.0.2 ──veth── bgtap7 ┐
//!  GUEST2 eth0 172.29.0.3 ──veth── bgtap8 ┤ banger0 172.29.0.1/24   HOST
//!                                          up0 198.51.100.1 ──veth── eth0 198.51.100.2   NET
//!                                                                    + 169.254.169.254 (fake metadata)
//! ```
//!
//! The bridge-side veth ends are named like banger TAPs (`TapName` is only a
//! name), standing in for a VM's TAP. HOST routes everything to NET. The
//! firewall is applied by `InProcessOps` on a thread that `setns`'d into
//! HOST; clients and listeners run on threads that `setns` into their
//! namespace. Every address used belongs to these namespaces. Needs root,
//! `ip` and `nft`; otherwise fails under CI and reports itself SKIPPED
//! elsewhere (`banger_testkit::skip_or_fail`).

use fs_err::File;
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use banger_config::config::Ipv4Cidr;
use banger_host::net::firewall::{self, FirewallState, GuestRule, nft};
use banger_host::net::{BridgeName, TapName};
use banger_host::privileged::{InProcessOps, PrivilegedError, PrivilegedOps};

const BRIDGE_IP: Ipv4Addr = Ipv4Addr::new(172, 29, 0, 1);
const GUEST_IP: Ipv4Addr = Ipv4Addr::new(172, 29, 0, 2);
const GUEST2_IP: Ipv4Addr = Ipv4Addr::new(172, 29, 0, 3);
const UPLINK_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const NET_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
const METADATA_IP: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);
const DNS_PORT: u16 = 5353;
/// Where a daemon that is not root serves the guests' DNS (port 53 is
/// redirected here).
const REDIRECT_PORT: u16 = 42069;
const ALLOWED_PORT: u16 = 2223;
const CLOSED_PORT: u16 = 2222;
const WEB_PORT: u16 = 8080;
const TIMEOUT: Duration = Duration::from_millis(700);

/// Runs `ip` (or another tool) and panics with its stderr on failure.
fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|error| panic!("{program} {args:?}: {error}"));
    assert!(
        output.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The namespaces of one test; deleted on drop.
struct Topology {
    host: String,
    net: String,
    guest: String,
    guest2: String,
}

impl Drop for Topology {
    fn drop(&mut self) {
        for name in [&self.host, &self.net, &self.guest, &self.guest2] {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

impl Topology {
    fn new(tag: &str) -> Self {
        let id = std::process::id();
        let topology = Self {
            host: format!("bgfw-{tag}-h-{id}"),
            net: format!("bgfw-{tag}-n-{id}"),
            guest: format!("bgfw-{tag}-g-{id}"),
            guest2: format!("bgfw-{tag}-g2-{id}"),
        };
        for name in [
            &topology.host,
            &topology.net,
            &topology.guest,
            &topology.guest2,
        ] {
            run("ip", &["netns", "add", name]);
            run("ip", &["-n", name, "link", "set", "lo", "up"]);
        }
        let (h, n) = (topology.host.as_str(), topology.net.as_str());
        run("ip", &["-n", h, "link", "add", "banger0", "type", "bridge"]);
        run(
            "ip",
            &["-n", h, "addr", "add", "172.29.0.1/24", "dev", "banger0"],
        );
        run("ip", &["-n", h, "link", "set", "banger0", "up"]);
        run(
            "ip",
            &[
                "-n", h, "link", "add", "up0", "type", "veth", "peer", "name", "eth0", "netns", n,
            ],
        );
        run(
            "ip",
            &["-n", h, "addr", "add", "198.51.100.1/24", "dev", "up0"],
        );
        run("ip", &["-n", h, "link", "set", "up0", "up"]);
        run(
            "ip",
            &["-n", n, "addr", "add", "198.51.100.2/24", "dev", "eth0"],
        );
        run(
            "ip",
            &["-n", n, "addr", "add", "169.254.169.254/32", "dev", "eth0"],
        );
        run("ip", &["-n", n, "link", "set", "eth0", "up"]);
        run(
            "ip",
            &["-n", h, "route", "add", "default", "via", "198.51.100.2"],
        );
        run(
            "ip",
            &[
                "-n",
                h,
                "route",
                "add",
                "169.254.0.0/16",
                "via",
                "198.51.100.2",
            ],
        );
        for (guest, tap, ip) in [
            (&topology.guest, "bgtap7", "172.29.0.2/24"),
            (&topology.guest2, "bgtap8", "172.29.0.3/24"),
        ] {
            run(
                "ip",
                &[
                    "-n", h, "link", "add", tap, "type", "veth", "peer", "name", "eth0", "netns",
                    guest,
                ],
            );
            run(
                "ip",
                &["-n", h, "link", "set", tap, "master", "banger0", "up"],
            );
            run("ip", &["-n", guest, "addr", "add", ip, "dev", "eth0"]);
            run("ip", &["-n", guest, "link", "set", "eth0", "up"]);
            run(
                "ip",
                &["-n", guest, "route", "add", "default", "via", "172.29.0.1"],
            );
        }
        topology
    }

    /// `nft <args>` inside HOST.
    fn nft(&self, args: &[&str]) -> String {
        let mut full = vec!["netns", "exec", self.host.as_str(), "nft"];
        full.extend(args);
        run("ip", &full)
    }

    /// Every table in HOST except banger's, as `nft list table` prints it.
    fn foreign_tables(&self) -> Vec<String> {
        self.nft(&["list", "tables"])
            .lines()
            .filter_map(|line| {
                let mut words = line.split_whitespace();
                let (_, family, name) = (words.next()?, words.next()?, words.next()?);
                Some((family.to_owned(), name.to_owned()))
            })
            .filter(|(_, name)| name != firewall::TABLE_NAME)
            .map(|(family, name)| self.nft(&["list", "table", &family, &name]))
            .collect()
    }
}

/// Runs `body` on a thread inside namespace `name`.
fn in_ns<T: Send + 'static>(name: &str, body: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{name}");
    std::thread::spawn(move || {
        let file = File::open(&path).expect("open netns");
        // SAFETY: setns on a valid namespace fd only changes this thread's
        // network namespace; no pointers are passed.
        let result = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(result, 0, "setns: {}", std::io::Error::last_os_error());
        body()
    })
    .join()
    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// Whether a TCP connection from namespace `ns` (source `from` if given) to
/// `to:port` succeeds within [`TIMEOUT`].
fn connects(ns: &str, to: Ipv4Addr, port: u16) -> bool {
    in_ns(ns, move || {
        TcpStream::connect_timeout(&SocketAddr::V4(SocketAddrV4::new(to, port)), TIMEOUT).is_ok()
    })
}

/// A listener in namespace `ns` on `ip:port` that reports each peer's
/// address and writes one byte. Lives as long as the namespace.
fn listen(ns: &str, ip: Ipv4Addr, port: u16) -> mpsc::Receiver<Ipv4Addr> {
    let (ready_tx, ready_rx) = mpsc::channel();
    let (peer_tx, peer_rx) = mpsc::channel();
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = File::open(&path).expect("open netns");
        // SAFETY: as in `in_ns`.
        let result = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(result, 0, "setns");
        let listener = TcpListener::bind(SocketAddrV4::new(ip, port)).expect("bind");
        ready_tx.send(()).expect("ready");
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            if let Ok(SocketAddr::V4(peer)) = stream.peer_addr() {
                if peer_tx.send(*peer.ip()).is_err() {
                    break;
                }
            }
            let _ = std::io::Write::write_all(&mut stream, b"x");
        }
    });
    ready_rx.recv().expect("listener ready");
    peer_rx
}

/// Reads one byte back through a connection (proves both directions pass).
fn round_trip(ns: &str, to: Ipv4Addr, port: u16) -> bool {
    in_ns(ns, move || {
        let Ok(mut stream) =
            TcpStream::connect_timeout(&SocketAddr::V4(SocketAddrV4::new(to, port)), TIMEOUT)
        else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(TIMEOUT));
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte).is_ok()
    })
}

fn state(nat: bool) -> FirewallState {
    FirewallState {
        bridge: BridgeName::new("banger0").expect("bridge"),
        bridge_ip: BRIDGE_IP,
        cidr: Ipv4Cidr {
            network: Ipv4Addr::new(172, 29, 0, 0),
            prefix: 24,
        },
        dns_ports: vec![DNS_PORT],
        allowed_host_ports: vec![ALLOWED_PORT],
        dns_redirect: None,
        guests: vec![
            GuestRule {
                tap: TapName::parse("bgtap7").expect("tap"),
                ip: GUEST_IP,
                nat,
            },
            GuestRule {
                tap: TapName::parse("bgtap8").expect("tap"),
                ip: GUEST2_IP,
                nat: false,
            },
        ],
    }
}

/// Applies `state` as a fresh "daemon" would: new ops in HOST, one call.
fn apply(host: &str, state: Option<FirewallState>) -> Result<(), PrivilegedError> {
    in_ns(host, move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let ops = InProcessOps::new()?;
            match state {
                Some(state) => ops.apply_firewall(&state).await,
                None => ops.remove_firewall().await,
            }
        })
    })
}

fn forwarding(host: &str) -> bool {
    in_ns(host, || {
        firewall::ipv4_forwarding().expect("read ip_forward")
    })
}

fn usable() -> bool {
    let root = rustix::process::geteuid().is_root();
    let tools = nft::nft_program().is_ok()
        && Command::new("ip")
            .arg("-V")
            .output()
            .is_ok_and(|output| output.status.success());
    if !(root && tools) {
        banger_testkit::skip_or_fail("needs root, ip and nft");
    }
    root && tools
}

#[test]
fn nat_egress_and_isolation() {
    if !usable() {
        return;
    }
    let outer_forwarding = firewall::ipv4_forwarding().expect("outer ip_forward");
    let outer_ruleset = run("nft", &["list", "ruleset"]);
    let topo = Topology::new("nat");
    let (h, n, g, g2) = (
        topo.host.as_str(),
        topo.net.as_str(),
        topo.guest.as_str(),
        topo.guest2.as_str(),
    );
    // A foreign table with rules and a set, made before banger acts.
    topo.nft(&["add", "table", "ip", "foreign"]);
    topo.nft(&[
        "add",
        "set",
        "ip",
        "foreign",
        "blocked",
        "{ type ipv4_addr; }",
    ]);
    topo.nft(&[
        "add",
        "element",
        "ip",
        "foreign",
        "blocked",
        "{ 203.0.113.7 }",
    ]);
    topo.nft(&[
        "add",
        "chain",
        "ip",
        "foreign",
        "passing",
        "{ type filter hook forward priority 10; policy accept; }",
    ]);
    topo.nft(&[
        "add", "rule", "ip", "foreign", "passing", "ip", "saddr", "@blocked", "drop",
    ]);
    let foreign_before = topo.foreign_tables();
    assert_eq!(foreign_before.len(), 1, "{foreign_before:?}");

    let web = listen(n, NET_IP, WEB_PORT);
    let _metadata = listen(n, METADATA_IP, 80);
    let _dns = listen(h, Ipv4Addr::UNSPECIFIED, DNS_PORT);
    let _allowed = listen(h, Ipv4Addr::UNSPECIFIED, ALLOWED_PORT);
    let _closed = listen(h, Ipv4Addr::UNSPECIFIED, CLOSED_PORT);
    let _peer = listen(g2, GUEST2_IP, WEB_PORT);
    // The fake metadata service is reachable from HOST itself, so a drop
    // below is the firewall's doing, not a missing route.
    assert!(connects(h, METADATA_IP, 80));

    // No NAT: the guest reaches only the bridge's allowed ports.
    apply(h, Some(state(false))).expect("apply without NAT");
    assert!(!forwarding(h), "forwarding enabled without a NAT guest");
    forwarding_on(h); // as if something else had turned it on: still no egress
    assert!(!connects(g, NET_IP, WEB_PORT), "egress without NAT");
    assert!(round_trip(g, GUEST2_IP, WEB_PORT), "guest to guest blocked");
    assert!(round_trip(g, BRIDGE_IP, DNS_PORT), "DNS port blocked");
    assert!(connects(g, BRIDGE_IP, ALLOWED_PORT), "allowed port blocked");
    assert!(
        !connects(g, BRIDGE_IP, CLOSED_PORT),
        "host service reachable"
    );
    assert!(
        !connects(g, UPLINK_IP, CLOSED_PORT),
        "host uplink address reachable"
    );
    assert!(
        !connects(g, UPLINK_IP, DNS_PORT),
        "DNS on another host address"
    );

    // A daemon that is not root listens on an unprivileged port; port 53 of
    // the bridge address, and only that, is redirected there.
    let redirected = listen(h, Ipv4Addr::UNSPECIFIED, REDIRECT_PORT);
    assert!(!connects(g, BRIDGE_IP, 53), "nothing serves port 53 yet");
    let mut with_redirect = state(false);
    with_redirect.dns_redirect = Some(REDIRECT_PORT);
    apply(h, Some(with_redirect)).expect("apply with a DNS redirect");
    assert!(round_trip(g, BRIDGE_IP, 53), "port 53 is not redirected");
    assert_eq!(
        redirected.recv_timeout(TIMEOUT),
        Ok(GUEST_IP),
        "the redirected connection comes from the guest"
    );
    assert!(
        !connects(g, UPLINK_IP, 53),
        "the redirect is only for the bridge address"
    );
    apply(h, Some(state(false))).expect("apply without the redirect");
    assert!(!connects(g, BRIDGE_IP, 53), "the redirect is gone");
    set_forwarding(h, false);

    // NAT on for GUEST: it reaches NET, masqueraded; GUEST2 still does not.
    apply(h, Some(state(true))).expect("apply with NAT");
    assert!(forwarding(h), "NAT guest but forwarding off");
    assert!(round_trip(g, NET_IP, WEB_PORT), "no egress with NAT");
    assert_eq!(web.recv_timeout(TIMEOUT), Ok(UPLINK_IP), "not masqueraded");
    assert!(!connects(g2, NET_IP, WEB_PORT), "non-NAT guest got out");
    assert!(!connects(g, METADATA_IP, 80), "metadata reachable");
    assert!(
        !connects(g, BRIDGE_IP, CLOSED_PORT),
        "host service reachable"
    );
    assert!(
        !connects(g, UPLINK_IP, CLOSED_PORT),
        "host uplink address reachable"
    );
    assert!(connects(g, BRIDGE_IP, DNS_PORT), "DNS port blocked");
    // GUEST2 pretending to be GUEST (its address on its own TAP) is dropped
    // on the bridge, so NAT is tied to GUEST's TAP, not just the address.
    // GUEST2 is left out of the state here (a TAP the firewall does not know
    // yet), so only the "no other TAP sends as GUEST" rule can stop it.
    let mut only_guest = state(true);
    only_guest.guests.truncate(1);
    apply(h, Some(only_guest)).expect("apply with GUEST only");
    run("ip", &["-n", g2, "addr", "flush", "dev", "eth0"]);
    run(
        "ip",
        &["-n", g2, "addr", "add", "172.29.0.2/24", "dev", "eth0"],
    );
    run(
        "ip",
        &["-n", g2, "route", "add", "default", "via", "172.29.0.1"],
    );
    run("ip", &["-n", g, "link", "set", "eth0", "down"]);
    run("ip", &["-n", h, "neigh", "flush", "dev", "banger0"]);
    assert!(!connects(g2, NET_IP, WEB_PORT), "spoofed source got NAT");
    // Undo: GUEST's route went with its link; HOST's neighbour entry for
    // 172.29.0.2 points at GUEST2's MAC.
    run("ip", &["-n", g, "link", "set", "eth0", "up"]);
    run(
        "ip",
        &["-n", g, "route", "replace", "default", "via", "172.29.0.1"],
    );
    run("ip", &["-n", g2, "addr", "flush", "dev", "eth0"]);
    run(
        "ip",
        &["-n", g2, "addr", "add", "172.29.0.3/24", "dev", "eth0"],
    );
    run(
        "ip",
        &["-n", g2, "route", "add", "default", "via", "172.29.0.1"],
    );
    run("ip", &["-n", h, "neigh", "flush", "dev", "banger0"]);
    apply(h, Some(state(true))).expect("apply with NAT");
    assert!(
        connects(g, NET_IP, WEB_PORT),
        "egress after the spoofing check"
    );

    // NAT off again cuts it.
    apply(h, Some(state(false))).expect("NAT off");
    assert!(!connects(g, NET_IP, WEB_PORT), "egress after NAT off");

    // Daemon restart: fresh ops, same state, rules are back.
    apply(h, Some(state(true))).expect("NAT on");
    assert!(connects(g, NET_IP, WEB_PORT), "egress after NAT on");
    topo.nft(&["delete", "table", "inet", "banger"]); // daemon gone, rules lost
    let started = std::time::Instant::now();
    apply(h, Some(state(true))).expect("reconcile on restart");
    eprintln!("apply_firewall incl. new ops: {:?}", started.elapsed());
    let listed = in_ns(h, || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(nft::list_table("bridge"))
    })
    .expect("list bridge table");
    assert!(listed.is_some_and(|table| table.to_string().contains("bgtap7")));
    assert!(round_trip(g, NET_IP, WEB_PORT), "no egress after restart");
    let listing = topo.nft(&["list", "table", "inet", "banger"]);
    assert!(listing.contains("masquerade"), "{listing}");

    // VM deleted: its rules go; the other guest's stay.
    let mut deleted = state(true);
    deleted.guests.remove(0);
    apply(h, Some(deleted)).expect("guest deleted");
    let ruleset = topo.nft(&["list", "ruleset"]);
    assert!(!ruleset.contains("bgtap7"), "{ruleset}");
    assert!(!ruleset.contains("172.29.0.2"), "{ruleset}");
    assert!(ruleset.contains("bgtap8"), "{ruleset}");
    assert!(!connects(g, NET_IP, WEB_PORT), "egress after delete");

    // Everything removed: banger's tables are gone; removal is idempotent.
    apply(h, None).expect("remove");
    apply(h, None).expect("remove again");
    let tables = topo.nft(&["list", "tables"]);
    assert!(!tables.contains("banger"), "{tables}");
    assert_eq!(
        topo.foreign_tables(),
        foreign_before,
        "foreign table changed"
    );
    // The test's own namespace was never touched.
    assert_eq!(
        firewall::ipv4_forwarding().expect("outer"),
        outer_forwarding
    );
    assert_eq!(run("nft", &["list", "ruleset"]), outer_ruleset);
}

fn set_forwarding(host: &str, on: bool) {
    in_ns(host, move || {
        fs_err::write(firewall::FORWARDING_PATH, if on { "1" } else { "0" })
            .expect("write ip_forward")
    });
}

fn forwarding_on(host: &str) {
    set_forwarding(host, true);
}

#[test]
fn invalid_states_touch_nothing() {
    if !usable() {
        return;
    }
    let topo = Topology::new("bad");
    let before = topo.nft(&["list", "ruleset"]);
    let mut bad = state(true);
    bad.guests[0].ip = METADATA_IP;
    let error = apply(&topo.host, Some(bad)).expect_err("refused");
    assert!(error.to_string().contains("169.254.169.254"), "{error}");
    assert_eq!(topo.nft(&["list", "ruleset"]), before);
    assert!(!forwarding(&topo.host));
}
