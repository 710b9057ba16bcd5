//! The real `dig` against a [`DnsServer`] on loopback, over UDP and TCP.

use std::net::{Ipv4Addr, SocketAddr};

use banger_dns::{DnsServer, VmRecords};
use tokio::process::Command;

const ALPHA: Ipv4Addr = Ipv4Addr::new(172, 16, 0, 2);

/// Runs `dig @server -p port ARGS...` and returns its stdout.
async fn dig(server: SocketAddr, args: &[&str]) -> String {
    let out = Command::new("dig")
        .arg(format!("@{}", server.ip()))
        .arg("-p")
        .arg(server.port().to_string())
        .args(["+time=2", "+tries=1"])
        .args(args)
        .output()
        .await
        .expect("dig runs (package dnsutils)");
    assert!(
        out.status.success(),
        "dig {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// The `status:` of dig's header line.
async fn status(server: SocketAddr, args: &[&str]) -> String {
    let text = dig(server, args).await;
    text.split("status: ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .unwrap_or_else(|| panic!("no status in dig output:\n{text}"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dig_answers_over_udp_and_tcp() {
    let records = VmRecords::new();
    records.set("alpha", ALPHA).expect("valid");
    let server = DnsServer::bind(&["127.0.0.1:0".parse().expect("addr")], records.clone())
        .await
        .expect("bind");
    let addr = server.local_addrs()[0];
    assert_ne!(addr.port(), 0);

    for transport in ["+notcp", "+tcp"] {
        let short = dig(addr, &[transport, "alpha.vm", "+short"]).await;
        assert_eq!(short.trim(), "172.16.0.2", "{transport}");
        let upper = dig(addr, &[transport, "ALPHA.VM", "+short"]).await;
        assert_eq!(upper.trim(), "172.16.0.2", "{transport}");

        let full = dig(addr, &[transport, "+norecurse", "alpha.vm"]).await;
        assert!(full.contains("status: NOERROR"), "{full}");
        assert!(full.contains(" aa"), "authoritative flag: {full}");

        let unknown = status(addr, &[transport, "+norecurse", "nosuch.vm"]).await;
        assert_eq!(unknown, "NXDOMAIN", "{transport}");
        let nodata = dig(addr, &[transport, "+norecurse", "alpha.vm", "AAAA"]).await;
        assert!(nodata.contains("status: NOERROR"), "{nodata}");
        assert!(nodata.contains("ANSWER: 0"), "{nodata}");
        assert!(nodata.contains("SOA"), "SOA in authority: {nodata}");
        let outside = status(addr, &[transport, "+norecurse", "example.com"]).await;
        assert_eq!(outside, "REFUSED", "{transport}");
    }

    // A removed VM is gone for the very next query: no server-side cache.
    records.remove("alpha");
    assert_eq!(status(addr, &["+norecurse", "alpha.vm"]).await, "NXDOMAIN");
    assert_eq!(
        status(addr, &["+tcp", "+norecurse", "alpha.vm"]).await,
        "NXDOMAIN"
    );
    records.set("beta", ALPHA).expect("valid");
    assert_eq!(dig(addr, &["beta.vm", "+short"]).await.trim(), "172.16.0.2");

    server.shutdown().await.expect("graceful shutdown");
}

/// Adds a listener on `ip` at a free port below Linux's ephemeral range
/// (32768 and up). The test checks a removed listener's port can be bound
/// again; a port from the ephemeral range may meanwhile be handed to any
/// process's outgoing socket (a parallel `dig`), which would fail that check
/// for a reason that has nothing to do with the server.
async fn listen_below_ephemeral_range(server: &mut DnsServer, ip: Ipv4Addr) -> SocketAddr {
    let start = 20_000 + u16::try_from(std::process::id() % 10_000).expect("below 10,000");
    for port in (start..30_000).chain(20_000..start) {
        match server.add_listener(SocketAddr::from((ip, port))).await {
            Ok(bound) => return bound,
            Err(
                banger_dns::DnsError::BindUdp { source, .. }
                | banger_dns::DnsError::BindTcp { source, .. },
            ) if source.kind() == std::io::ErrorKind::AddrInUse => continue,
            Err(error) => panic!("listening on {ip}:{port}: {error}"),
        }
    }
    panic!("no free port on {ip} between 20000 and 30000");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listeners_come_and_go() {
    let records = VmRecords::new();
    records.set("alpha", ALPHA).expect("valid");
    let mut server = DnsServer::bind(&[], records).await.expect("empty bind");
    assert!(server.local_addrs().is_empty());

    let first = listen_below_ephemeral_range(&mut server, Ipv4Addr::LOCALHOST).await;
    let second = listen_below_ephemeral_range(&mut server, Ipv4Addr::new(127, 0, 0, 2)).await;
    for addr in [first, second] {
        assert_eq!(
            dig(addr, &["alpha.vm", "+short"]).await.trim(),
            "172.16.0.2"
        );
    }
    assert!(matches!(
        server.add_listener(first).await,
        Err(banger_dns::DnsError::AlreadyListening { addr }) if addr == first
    ));

    server.remove_listener(first).await.expect("remove");
    assert_eq!(server.local_addrs(), vec![second]);
    // The port is free again: nothing listens on it any more. hickory's
    // per-query tasks may hold the UDP socket a moment after the graceful
    // shutdown returns, so the port must come free soon, not at once.
    released_soon(first);
    assert!(matches!(
        server.remove_listener(first).await,
        Err(banger_dns::DnsError::NotListening { .. })
    ));
    assert_eq!(
        dig(second, &["alpha.vm", "+short"]).await.trim(),
        "172.16.0.2"
    );
    server.shutdown().await.expect("shutdown");
    released_soon(second);
}

/// Binds UDP and TCP on `addr`, retrying for up to 5 s while the port is
/// still in use; panics if it never comes free.
fn released_soon(addr: std::net::SocketAddr) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let udp = std::net::UdpSocket::bind(addr);
        let tcp = std::net::TcpListener::bind(addr);
        match (udp, tcp) {
            (Ok(_), Ok(_)) => return,
            (udp, tcp) => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "{addr} still in use 5 s after its listener stopped: UDP {:?}, TCP {:?}",
                    udp.err(),
                    tcp.err()
                );
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
    }
}

#[tokio::test]
async fn bind_errors_name_the_address() {
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr");
    let err = DnsServer::bind(&[addr], VmRecords::new())
        .await
        .expect_err("port in use");
    assert!(err.to_string().contains(&addr.to_string()), "{err}");

    // 192.0.2.1 (TEST-NET-1) is on no interface here.
    let absent: SocketAddr = "192.0.2.1:0".parse().expect("addr");
    let err = DnsServer::bind(&[absent], VmRecords::new())
        .await
        .expect_err("address not on this host");
    assert!(matches!(err, banger_dns::DnsError::BindUdp { addr, .. } if addr == absent));
}
