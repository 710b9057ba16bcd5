//! Disk usage and prunes (docs/reliability.md "Disks that give space
//! back"): a VM shows each disk's host allocation, `usage::report` totals
//! VMs, images, kernels and caches, and the image and kernel prunes remove
//! only what nothing uses, say why they kept the rest, and change nothing in
//! a dry run.

use std::path::{Path, PathBuf};

use banger_api::usage::{PruneReport, PruneRequest};
use banger_api::{ImageName, KernelName};
use bangerd::state::AppState;
use bangerd::store::{ImageRow, KernelRow};

use crate::ready;
use crate::world::{Fakes, IMAGE, World, create, show, vm_name};

const MIB: u64 = 1 << 20;

/// A directory holding one fully allocated file of `mib` MiB.
fn filled_dir(dir: &Path, mib: u64) -> PathBuf {
    fs_err::create_dir_all(dir).expect("create a dir");
    let len = usize::try_from(mib * MIB).expect("small");
    fs_err::write(dir.join("data"), vec![1u8; len]).expect("fill a file");
    dir.to_owned()
}

fn kernel(state: &AppState, name: &str, source: &str, dir: PathBuf) -> i64 {
    state
        .store()
        .upsert_kernel(&KernelRow {
            id: 0,
            name: KernelName::parse(name).expect("kernel name"),
            version: "6.1.0-lifecycle".into(),
            source: source.into(),
            initramfs: dir.join("initramfs.img"),
            vmlinux: Some(dir.join("data")),
            dir,
            bzimage: None,
            modules_disk: None,
            size_bytes: MIB,
            created_at: 0,
        })
        .expect("insert a kernel")
}

/// A managed image row named `name` whose directory holds `mib` MiB.
fn managed_image(state: &AppState, name: &str, kernel_id: i64, mib: u64) -> PathBuf {
    let dir = filled_dir(&state.paths().state_dir.join("images").join(name), mib);
    state
        .store()
        .upsert_image(&ImageRow {
            id: 0,
            name: ImageName::parse(name).expect("image name"),
            managed: true,
            rootfs: dir.join("data"),
            dir: Some(dir.clone()),
            work_seed: None,
            kernel_id,
            initrd: None,
            size_bytes: mib * MIB,
            created_at: 0,
            updated_at: 0,
            oci: None,
        })
        .expect("insert an image");
    dir
}

fn names(report: &PruneReport) -> (Vec<&str>, Vec<&str>) {
    (
        report
            .removed
            .iter()
            .map(|item| item.name.as_str())
            .collect(),
        report.kept.iter().map(|item| item.name.as_str()).collect(),
    )
}

fn reason<'a>(report: &'a PruneReport, name: &str) -> &'a str {
    report
        .kept
        .iter()
        .find(|item| item.name == name)
        .map_or("", |item| item.reason.as_str())
}

pub fn usage_and_prunes_remove_only_what_nothing_uses() {
    let world = World::new();
    let state = ready(&world, Fakes::Working);
    let lc_kernel = state
        .store()
        .kernel(&KernelName::parse("lc-kernel").expect("kernel name"))
        .expect("read kernels")
        .expect("lc-kernel installed")
        .id;
    let kernels_dir = state.paths().state_dir.join("kernels");
    let unused = managed_image(&state, "lc-unused", lc_kernel, 2);
    let own_kernel_dir = filled_dir(&kernels_dir.join("lc-own"), 1);
    let own_kernel = kernel(&state, "lc-own", "image:lc-own", own_kernel_dir.clone());
    let own = managed_image(&state, "lc-own", own_kernel, 1);
    let spare_dir = filled_dir(&kernels_dir.join("lc-spare"), 3);
    kernel(&state, "lc-spare", "import", spare_dir.clone());
    filled_dir(&state.paths().cache_dir.join("oci"), 1);

    world.block_on(async {
        create(&state, "lc-space", true, false)
            .await
            .expect("create a VM");
    });
    // vm show: each disk with its host allocation, never above its size.
    let vm = show(&state, "lc-space");
    let disks: Vec<&str> = vm.disks.iter().map(|disk| disk.name.as_str()).collect();
    assert_eq!(disks, ["overlay", "work"], "{:?}", vm.disks);
    for disk in &vm.disks {
        assert!(disk.size_bytes > 0, "{disk:?}");
        assert!(
            disk.allocated_bytes <= disk.size_bytes + MIB,
            "sparse: {disk:?}"
        );
    }

    // system df: per VM, image, kernel and cache, and the total.
    let report = bangerd::usage::report(&state).expect("usage report");
    let vm_usage = &report.vms[0];
    assert_eq!(vm_usage.name, vm_name("lc-space"));
    assert_eq!(
        vm_usage.disks_bytes,
        vm.disks
            .iter()
            .map(|disk| disk.allocated_bytes)
            .sum::<u64>()
    );
    assert!(vm_usage.total_bytes >= vm_usage.disks_bytes, "{vm_usage:?}");
    let image_bytes = |name: &str| {
        report
            .images
            .iter()
            .find(|image| image.name.as_str() == name)
            .map(|image| image.total_bytes)
    };
    assert_eq!(
        image_bytes(IMAGE),
        Some(0),
        "registered: not banger's files"
    );
    assert!(image_bytes("lc-unused").is_some_and(|bytes| bytes >= 2 * MIB));
    let spare = report
        .kernels
        .iter()
        .find(|kernel| kernel.name.as_str() == "lc-spare")
        .expect("lc-spare in the report");
    assert!(spare.total_bytes >= 3 * MIB && spare.used_by_images.is_empty());
    let oci = report.caches.iter().find(|cache| cache.name == "oci");
    assert!(
        oci.is_some_and(|cache| cache.total_bytes >= MIB),
        "{report:?}"
    );
    let parts = report.vms.iter().map(|v| v.total_bytes).sum::<u64>()
        + report.images.iter().map(|i| i.total_bytes).sum::<u64>()
        + report.kernels.iter().map(|k| k.total_bytes).sum::<u64>()
        + report.caches.iter().map(|c| c.total_bytes).sum::<u64>();
    assert_eq!(report.total_bytes, parts);

    // A dry run says what would go and removes nothing.
    let dry = PruneRequest {
        dry_run: true,
        all: false,
    };
    let planned = bangerd::images::prune(&state, &dry).expect("image prune dry run");
    assert_eq!(names(&planned), (vec!["lc-own", "lc-unused"], vec![IMAGE]));
    assert!(reason(&planned, IMAGE).contains("used by VMs lc-space"));
    assert!(planned.freed_bytes >= 4 * MIB, "{planned:?}");
    let own_plan = &planned.removed[0];
    assert!(
        own_plan
            .removed_files
            .contains(&own_kernel_dir.display().to_string()),
        "an image's own kernel goes with it: {own_plan:?}"
    );
    assert!(unused.exists() && own.exists() && own_kernel_dir.exists());

    // Grown copies of a work seed no image has (left by an image deleted
    // before banger pruned them) go with a prune; other files stay.
    let grown = state.paths().cache_dir.join("grown-seeds");
    fs_err::create_dir_all(&grown).expect("grown-seeds dir");
    let stale = grown.join("grown-fe00-1234-4000000-1796000000.5-8589934592.ext4");
    fs_err::write(&stale, b"a grown seed of a deleted image").expect("stale entry");
    fs_err::write(grown.join("notes.txt"), b"not an entry").expect("foreign file");

    // The prune itself: the same images, their directories gone.
    let pruned = bangerd::images::prune(&state, &PruneRequest::default()).expect("image prune");
    assert_eq!(names(&pruned), names(&planned));
    assert_eq!(pruned.freed_bytes, planned.freed_bytes);
    assert!(!unused.exists() && !own.exists() && !own_kernel_dir.exists());
    assert!(!stale.exists(), "the stale grown seed is gone");
    assert!(grown.join("notes.txt").exists());

    // Kernels: the unused one goes; the one an image boots stays.
    let kernels = bangerd::kernels::prune(&state, &PruneRequest::default()).expect("kernel prune");
    assert_eq!(names(&kernels), (vec!["lc-spare"], vec!["lc-kernel"]));
    assert!(reason(&kernels, "lc-kernel").contains("used by images lc-image"));
    assert!(kernels.freed_bytes >= 3 * MIB && !spare_dir.exists());

    // Once no VM uses it, the default image is kept (as registered here,
    // so it gives nothing back) and a managed default is kept unless --all.
    world.block_on(async {
        bangerd::vms::delete(&state, &vm_name("lc-space"), true)
            .await
            .expect("delete the VM");
    });
    let mut row = state
        .store()
        .image(&ImageName::parse(IMAGE).expect("image name"))
        .expect("read images")
        .expect("the default image");
    let default_dir = filled_dir(&state.paths().state_dir.join("images").join(IMAGE), 1);
    row.managed = true;
    row.dir = Some(default_dir.clone());
    state.store().upsert_image(&row).expect("make it managed");
    let kept = bangerd::images::prune(&state, &PruneRequest::default()).expect("image prune");
    assert_eq!(names(&kept), (vec![], vec![IMAGE]));
    assert!(reason(&kept, IMAGE).contains("default image"), "{kept:?}");
    let all = PruneRequest {
        dry_run: false,
        all: true,
    };
    let removed = bangerd::images::prune(&state, &all).expect("image prune --all");
    assert_eq!(names(&removed), (vec![IMAGE], vec![]));
    assert!(!default_dir.exists());
    assert!(
        bangerd::usage::report(&state)
            .expect("usage report")
            .images
            .is_empty()
    );
}
