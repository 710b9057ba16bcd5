//! Serving on a "bridge" address inside a network namespace the test
//! creates: the address does not exist at first (as before the daemon
//! creates the bridge), then appears, and the server adds a listener on it,
//! on port 53 as guests need.
//!
//! Needs root (CAP_SYS_ADMIN for the namespace); otherwise fails under CI and
//! reports itself SKIPPED elsewhere (`banger_testkit::skip_or_fail`).

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;

use banger_dns::{DnsError, DnsServer, VmRecords};
use rustix::thread::{UnshareFlags, unshare_unsafe};

/// Runs a command in the current thread's namespaces (children inherit
/// the namespaces of the thread that forks them).
fn run(program: &str, args: &[&str]) {
    let status = Command::new(program)
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("{program} runs: {e}"));
    assert!(status.success(), "{program} {args:?} failed");
}

async fn dig_short(server: SocketAddr, name: &str, tcp: bool) -> String {
    let out = tokio::process::Command::new("dig")
        .arg(format!("@{}", server.ip()))
        .args(["-p", &server.port().to_string(), "+time=2", "+tries=1"])
        .arg(if tcp { "+tcp" } else { "+notcp" })
        .args([name, "+short"])
        .output()
        .await
        .expect("dig runs");
    assert!(out.status.success(), "dig failed");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn serves_on_an_address_in_a_private_network_namespace() {
    let worker = std::thread::spawn(|| {
        // SAFETY: only NEWNET is unshared, on this dedicated thread; no file
        // descriptor table is split, which is what makes unshare unsafe.
        if let Err(error) = unsafe { unshare_unsafe(UnshareFlags::NEWNET) } {
            return Err(format!(
                "cannot create a network namespace ({error}); needs root"
            ));
        }
        // Everything below runs in the new namespace, including the
        // children this thread forks and the single-threaded runtime.
        run("ip", &["link", "set", "lo", "up"]);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let records = VmRecords::new();
            records
                .set("alpha", Ipv4Addr::new(10, 99, 0, 2))
                .expect("valid");
            let mut server = DnsServer::bind(&["127.0.0.1:0".parse().expect("addr")], records)
                .await
                .expect("bind loopback");

            let bridge: SocketAddr = "10.99.0.1:53".parse().expect("addr");
            let err = server
                .add_listener(bridge)
                .await
                .expect_err("address not there yet");
            assert!(
                matches!(&err, DnsError::BindUdp { addr, .. } if *addr == bridge),
                "{err}"
            );

            // The "bridge" appears.
            run("ip", &["addr", "add", "10.99.0.1/24", "dev", "lo"]);
            let bound = server.add_listener(bridge).await.expect("bind bridge");
            assert_eq!(bound, bridge);
            for tcp in [false, true] {
                assert_eq!(dig_short(bridge, "alpha.vm", tcp).await, "10.99.0.2");
            }

            // And goes away again: the loopback listener keeps serving.
            server.remove_listener(bridge).await.expect("remove");
            let loopback = server.local_addrs()[0];
            assert_eq!(dig_short(loopback, "alpha.vm", false).await, "10.99.0.2");
            server.shutdown().await.expect("shutdown");
        });
        Ok(())
    });
    // Reported here, on the test's own thread, which carries its name.
    if let Err(reason) = worker.join().expect("namespace thread") {
        banger_testkit::skip_or_fail(reason);
    }
}
