//! Tests against the real Debian cloud kernel (fetched with apt into the cache
//! on first use): vmlinux extraction, module dependency resolution, and that the
//! crate's own `.modinfo`-based dependency scan agrees with `depmod`.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;

use banger_image::initramfs::BOOT_MODULES;
use banger_image::modules::ModuleIndex;
use banger_image::vmlinux;

#[test]
fn extracts_elf_vmlinux_from_debian_bzimage() {
    let Some(kernel) = common::debian_kernel() else {
        return;
    };
    let bz = fs_err::read(&kernel.vmlinuz).unwrap();
    let payload = vmlinux::payload(&bz).unwrap();
    assert_eq!(
        vmlinux::detect(payload).unwrap(),
        vmlinux::Compression::Lz4Legacy
    );
    let start = std::time::Instant::now();
    let elf = vmlinux::extract_vmlinux(&bz).unwrap();
    eprintln!(
        "vmlinux: {} -> {} bytes in {:?}",
        bz.len(),
        elf.len(),
        start.elapsed()
    );
    assert_eq!(&elf[..4], b"\x7fELF");
    assert!(elf.len() > 20 << 20, "a real vmlinux is tens of MB");
    let banner = format!("Linux version {} ", kernel.version);
    assert!(
        elf.windows(banner.len()).any(|w| w == banner.as_bytes()),
        "banner {banner:?} not found"
    );

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("vmlinux");
    vmlinux::extract_vmlinux_file(&kernel.vmlinuz, &out).unwrap();
    assert_eq!(fs_err::metadata(&out).unwrap().len(), elf.len() as u64);
}

#[test]
fn resolves_boot_modules_of_debian_kernel() {
    let Some(kernel) = common::debian_kernel() else {
        return;
    };
    assert!(kernel.modules_dir.join("modules.dep").exists());
    let index = ModuleIndex::load(&kernel.modules_dir).unwrap();
    assert!(index.is_builtin("ext4"), "FACTS.md: ext4 is built in");
    let order: Vec<String> = index
        .resolve(BOOT_MODULES)
        .unwrap()
        .iter()
        .map(|e| e.name.clone())
        .collect();
    for needed in [
        "virtio_pci_modern_dev",
        "virtio_pci_legacy_dev",
        "virtio_pci",
        "virtio_mmio",
        "virtio_blk",
        "failover",
        "net_failover",
        "virtio_net",
        "overlay",
        "vsock",
        "vmw_vsock_virtio_transport_common",
        "vmw_vsock_virtio_transport",
        "virtio_rng",
    ] {
        assert!(
            order.iter().any(|n| n == needed),
            "{needed} missing from {order:?}"
        );
    }
    let pos = |n: &str| order.iter().position(|x| x == n).unwrap();
    assert!(pos("net_failover") < pos("virtio_net"));
    assert!(pos("vmw_vsock_virtio_transport_common") < pos("vmw_vsock_virtio_transport"));
    // Nothing beyond what reaching the root needs.
    assert!(order.len() <= 16, "{order:?}");
}

#[test]
fn modinfo_scan_agrees_with_modules_dep() {
    let Some(kernel) = common::debian_kernel() else {
        return;
    };
    let from_dep = ModuleIndex::load(&kernel.modules_dir).unwrap();
    let scanned = ModuleIndex::scan(&kernel.modules_dir).unwrap();
    assert_eq!(from_dep.len(), scanned.len());
    for name in [
        "virtio_net",
        "vmw_vsock_virtio_transport",
        "nf_tables",
        "overlay",
        "virtio_pci",
    ] {
        let closure = |idx: &ModuleIndex| -> BTreeSet<String> {
            idx.resolve(&[name])
                .unwrap()
                .iter()
                .map(|e| e.name.clone())
                .collect()
        };
        assert_eq!(closure(&from_dep), closure(&scanned), "{name}");
    }
}

#[test]
fn prepares_and_reuses_boot_artifacts() {
    let Some(kernel) = common::debian_kernel() else {
        return;
    };
    let busybox = std::path::Path::new(banger_image::initramfs::DEFAULT_BUSYBOX);
    if !busybox.exists() || !common::have("mkfs.ext4") {
        banger_testkit::skip_or_fail("busybox-static or e2fsprogs missing");
        return;
    }
    let cache = tempfile::tempdir().unwrap();
    let start = std::time::Instant::now();
    let a = banger_image::artifacts::prepare_boot_artifacts(cache.path(), &kernel, busybox, true)
        .unwrap();
    let first = start.elapsed();
    assert!(
        a.initramfs
            .starts_with(cache.path().join("boot").join(&kernel.version))
    );
    assert_eq!(
        &fs_err::read(a.vmlinux.as_ref().unwrap()).unwrap()[..4],
        b"\x7fELF"
    );
    assert!(a.modules_disk.exists());
    let start = std::time::Instant::now();
    let b = banger_image::artifacts::prepare_boot_artifacts(cache.path(), &kernel, busybox, true)
        .unwrap();
    let second = start.elapsed();
    assert_eq!(a, b);
    eprintln!("boot artifacts: first {first:?}, cached {second:?}");
    assert!(second < first);
}
