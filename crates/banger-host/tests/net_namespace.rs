//! Component tests for `PrivilegedOps` and the TAP pool, each inside a
//! network namespace of its own.
//!
//! Every test runs its body on a fresh thread that first calls
//! `unshare(CLONE_NEWNET)`, then builds a current-thread tokio runtime, so
//! the netlink socket, `/dev/net/tun` and any `ip` child all act on the
//! private namespace. The host's real namespace is never touched; the
//! namespace (and every device in it) disappears when the thread ends.
//! Needs root (CAP_NET_ADMIN) and TUN; otherwise fails under CI and reports
//! itself SKIPPED elsewhere (`banger_testkit::skip_or_fail`).

use std::collections::BTreeSet;
use std::future::Future;
use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::Arc;

use banger_host::net::link::{LinkSummary, Netlink};
use banger_host::net::tun::TunError;
use banger_host::net::{BridgeName, TapName, TapPool};
use banger_host::privileged::{InProcessOps, PrivilegedError, PrivilegedOps};
use rtnetlink::packet_route::link::InfoKind;

const BRIDGE: &str = "bgtestbr0";
const BRIDGE_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const OWNER: u32 = 4242;

/// Runs `body` in a new network namespace; returns false (after
/// `skip_or_fail`, on the test's own thread) when namespaces or TUN are not
/// available.
fn in_new_netns<F, Fut>(body: F) -> bool
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    let handle = std::thread::spawn(move || {
        // SAFETY: unshare with CLONE_NEWNET only changes this thread's
        // network namespace; it takes no pointers.
        let result = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        if result != 0 {
            return Err(format!(
                "unshare(CLONE_NEWNET) failed: {}",
                std::io::Error::last_os_error()
            ));
        }
        if !std::path::Path::new("/dev/net/tun").exists() {
            return Err("no /dev/net/tun".to_owned());
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(body());
        Ok(())
    });
    match handle.join() {
        Ok(Ok(())) => true,
        Ok(Err(reason)) => {
            banger_testkit::skip_or_fail(reason);
            false
        }
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

async fn link(netlink: &Netlink, name: &str) -> Option<LinkSummary> {
    netlink.link_by_name(name).await.expect("get link")
}

fn bridge() -> BridgeName {
    BridgeName::new(BRIDGE).expect("bridge name")
}

#[test]
fn bridge_and_tap_lifecycle() {
    in_new_netns(|| async {
        let ops = InProcessOps::new().expect("ops");
        let netlink = ops.netlink().clone();
        let bridge = bridge();

        // Idempotent: twice is the same as once.
        ops.ensure_bridge(&bridge, BRIDGE_IP, 24)
            .await
            .expect("ensure bridge");
        ops.ensure_bridge(&bridge, BRIDGE_IP, 24)
            .await
            .expect("ensure bridge again");
        let br = link(&netlink, BRIDGE).await.expect("bridge exists");
        assert_eq!(br.kind, Some(InfoKind::Bridge));
        assert!(br.up, "bridge is up");
        let addresses = netlink
            .ipv4_addresses(br.index, BRIDGE)
            .await
            .expect("addresses");
        assert_eq!(addresses, vec![(BRIDGE_IP, 24)]);

        let tap = TapName::new(0);
        ops.create_tap(&tap, OWNER, &bridge)
            .await
            .expect("create tap");
        let info = link(&netlink, "bgtap0").await.expect("tap exists");
        assert_eq!(info.kind, Some(InfoKind::Tun));
        let tun = info.tun.expect("tun attributes");
        assert!(tun.is_tap, "TAP, not TUN");
        assert!(tun.persist, "persistent");
        assert!(tun.vnet_hdr, "vnet header");
        assert!(!tun.pi, "no packet info");
        assert_eq!(tun.owner, Some(OWNER));
        assert_eq!(info.controller, Some(br.index), "attached to the bridge");
        assert!(info.up, "up");

        // A second create of the same name must not adopt the device.
        let again = ops.create_tap(&tap, OWNER, &bridge).await;
        assert!(
            matches!(again, Err(PrivilegedError::Tun(TunError::Exists { .. }))),
            "{again:?}"
        );

        assert_eq!(
            ops.list_banger_taps().await.expect("list"),
            vec![tap.clone()]
        );
        ops.delete_tap(&tap).await.expect("delete tap");
        assert!(link(&netlink, "bgtap0").await.is_none());
        ops.delete_tap(&tap)
            .await
            .expect("deleting a missing TAP is fine");

        ops.delete_bridge(&bridge).await.expect("delete bridge");
        assert!(link(&netlink, BRIDGE).await.is_none());
        ops.delete_bridge(&bridge)
            .await
            .expect("deleting a missing bridge is fine");
    });
}

#[test]
fn refuses_foreign_devices_and_bad_arguments() {
    in_new_netns(|| async {
        let ops = InProcessOps::new().expect("ops");
        let bridge = bridge();

        // No bridge yet: creating a TAP is refused and leaves nothing.
        let missing = ops.create_tap(&TapName::new(1), OWNER, &bridge).await;
        assert!(
            matches!(missing, Err(PrivilegedError::NoBridge { .. })),
            "{missing:?}"
        );
        assert!(ops.list_banger_taps().await.expect("list").is_empty());

        // A dummy device under the bridge's name and one under a banger TAP
        // name: neither may be adopted, modified or deleted.
        // (veth: the dummy module is not available everywhere.)
        let status = Command::new("ip")
            .args([
                "link", "add", BRIDGE, "type", "veth", "peer", "name", "bgtap5",
            ])
            .status()
            .expect("ip");
        assert!(
            status.success(),
            "ip link add {BRIDGE} type veth peer name bgtap5"
        );
        let refused = ops.ensure_bridge(&bridge, BRIDGE_IP, 24).await;
        assert!(
            matches!(refused, Err(PrivilegedError::NotABridge { .. })),
            "{refused:?}"
        );
        let refused = ops.delete_bridge(&bridge).await;
        assert!(
            matches!(refused, Err(PrivilegedError::NotABridge { .. })),
            "{refused:?}"
        );
        let refused = ops.delete_tap(&TapName::new(5)).await;
        assert!(
            matches!(refused, Err(PrivilegedError::NotATap { .. })),
            "{refused:?}"
        );
        assert!(
            ops.list_banger_taps().await.expect("list").is_empty(),
            "dummies are not TAPs"
        );
        let netlink = ops.netlink();
        assert!(link(netlink, BRIDGE).await.is_some());
        assert!(link(netlink, "bgtap5").await.is_some());

        // Out-of-range prefix.
        let other = BridgeName::new("bgtestbr1").expect("name");
        let refused = ops.ensure_bridge(&other, BRIDGE_IP, 31).await;
        assert!(
            matches!(refused, Err(PrivilegedError::BadPrefix { prefix: 31, .. })),
            "{refused:?}"
        );
        assert!(link(netlink, "bgtestbr1").await.is_none());
    });
    // Names that are paths or too long cannot even be expressed.
    for bad in ["../../etc", "br 0", "a234567890123456", ""] {
        assert!(BridgeName::new(bad).is_err(), "{bad:?}");
    }
    for bad in ["eth0", "bgtap01", "bgtap/0"] {
        assert!(TapName::try_from_str(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn pool_fills_hands_out_refills_and_releases() {
    in_new_netns(|| async {
        let ops = Arc::new(InProcessOps::new().expect("ops"));
        let netlink = ops.netlink().clone();
        let bridge = bridge();
        ops.ensure_bridge(&bridge, BRIDGE_IP, 24)
            .await
            .expect("bridge");
        let pool = TapPool::new(ops.clone(), bridge.clone(), OWNER, 2);

        pool.fill().await.expect("fill");
        assert_eq!(pool.spares(), vec![TapName::new(0), TapName::new(1)]);

        let first = pool.take().await.expect("take");
        assert_eq!(first, TapName::new(0));
        // take() refilled in the background; fill() waits for it.
        pool.fill().await.expect("fill");
        assert_eq!(pool.spares(), vec![TapName::new(1), TapName::new(2)]);
        let info = link(&netlink, first.as_str())
            .await
            .expect("taken TAP exists");
        assert_eq!(info.tun.and_then(|t| t.owner), Some(OWNER));

        // An empty pool creates on demand.
        let empty = TapPool::new(ops.clone(), bridge.clone(), OWNER, 0);
        empty.mark_claimed(&TapName::new(0));
        empty.mark_claimed(&TapName::new(1));
        empty.mark_claimed(&TapName::new(2));
        let on_demand = empty.take().await.expect("take from empty pool");
        assert_eq!(on_demand, TapName::new(3));
        assert!(link(&netlink, "bgtap3").await.is_some());

        pool.release(&first).await.expect("release");
        assert!(link(&netlink, first.as_str()).await.is_none());
        empty.release(&on_demand).await.expect("release");

        // Spares go first; the refill reuses the freed name (lowest free).
        assert_eq!(pool.take().await.expect("take"), TapName::new(1));
        pool.fill().await.expect("fill");
        assert_eq!(pool.spares(), vec![TapName::new(2), TapName::new(0)]);

        pool.drain().await.expect("drain");
        assert!(pool.spares().is_empty());
        assert_eq!(
            ops.list_banger_taps().await.expect("list"),
            vec![TapName::new(1)]
        );
    });
}

#[test]
fn reconcile_deletes_only_unclaimed_banger_taps() {
    in_new_netns(|| async {
        let ops = Arc::new(InProcessOps::new().expect("ops"));
        let netlink = ops.netlink().clone();
        let bridge = bridge();
        ops.ensure_bridge(&bridge, BRIDGE_IP, 24)
            .await
            .expect("bridge");

        // What a crashed daemon left: a TAP a VM still claims, two leaked
        // ones, and somebody else's TAP that must survive.
        for index in [5, 7, 9] {
            ops.create_tap(&TapName::new(index), OWNER, &bridge)
                .await
                .expect("create");
        }
        let status = Command::new("ip")
            .args(["tuntap", "add", "dev", "footap0", "mode", "tap"])
            .status()
            .expect("ip");
        assert!(status.success(), "ip tuntap add footap0");

        let pool = TapPool::new(ops.clone(), bridge.clone(), OWNER, 2);
        let claimed: BTreeSet<TapName> = [TapName::new(5)].into();
        let deleted = pool.reconcile(&claimed).await.expect("reconcile");
        assert_eq!(deleted, vec![TapName::new(7), TapName::new(9)]);
        assert_eq!(
            ops.list_banger_taps().await.expect("list"),
            vec![TapName::new(5)]
        );
        assert!(
            link(&netlink, "footap0").await.is_some(),
            "foreign TAP untouched"
        );

        // Spares survive a second reconciliation and skip the claimed name.
        pool.fill().await.expect("fill");
        assert_eq!(pool.spares(), vec![TapName::new(0), TapName::new(1)]);
        let deleted = pool.reconcile(&claimed).await.expect("reconcile again");
        assert!(deleted.is_empty(), "{deleted:?}");
        assert_eq!(
            ops.list_banger_taps().await.expect("list"),
            vec![TapName::new(0), TapName::new(1), TapName::new(5)]
        );
    });
}

#[test]
fn ops_refuse_to_run_from_another_namespace() {
    // Created in one private namespace, called from another thread in a
    // second one: TAPs would land in the wrong place, so it is refused.
    let (sender, receiver) = std::sync::mpsc::channel::<()>();
    let ran = in_new_netns(move || async move {
        let ops = Arc::new(InProcessOps::new().expect("ops"));
        ops.ensure_bridge(&bridge(), BRIDGE_IP, 24)
            .await
            .expect("bridge");
        let other = ops.clone();
        let result = std::thread::spawn(move || {
            // SAFETY: as in in_new_netns; affects only this thread.
            assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0);
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async { other.create_tap(&TapName::new(0), OWNER, &bridge()).await })
        })
        .join()
        .expect("thread");
        assert!(
            matches!(result, Err(PrivilegedError::WrongNamespace { .. })),
            "{result:?}"
        );
        sender.send(()).expect("send");
    });
    if ran {
        receiver.recv().expect("test body ran to the end");
    }
}

#[test]
fn host_namespace_is_untouched() {
    // The other tests run in private namespaces; none of their devices may
    // ever appear here.
    in_new_netns(|| async {
        let ops = InProcessOps::new().expect("ops");
        ops.ensure_bridge(&bridge(), BRIDGE_IP, 24)
            .await
            .expect("bridge");
        ops.create_tap(&TapName::new(3), OWNER, &bridge())
            .await
            .expect("tap");
    });
    let names: Vec<String> = fs_err::read_dir("/sys/class/net")
        .expect("read /sys/class/net")
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names.iter().any(|name| name == BRIDGE || name == "bgtap3"),
        "{names:?}"
    );
}
