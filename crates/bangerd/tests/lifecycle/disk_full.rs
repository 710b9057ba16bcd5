//! A full state filesystem (issue 19's fault matrix; docs/reliability.md):
//! the state dir on a small tmpfs, filled up to a few hundred KiB with one
//! VM running. A create then fails with an out-of-space error naming the
//! file it could not make, leaves no row, directory or TAP, and the running
//! VM goes on (stop, start); a pause, a snapshot and a fork are refused
//! before writing anything;
//! the database reads and is reopened by a restarted daemon intact, and once
//! space is freed the same create works.

use std::os::fd::AsFd as _;
use std::path::Path;

use banger_testkit::tmpfs::SmallTmpfs;
use bangerd::progress::ProgressSink;
use bangerd::vms;

use crate::ready;
use crate::world::{Fakes, World, chain, create, vm_name};

/// What is left free when the filler is written: room for database pages,
/// none for a VM's disks.
const LEFT_FREE: u64 = 256 << 10;

/// Free bytes (for an unprivileged writer) on the filesystem of `path`.
fn available(path: &Path) -> u64 {
    let stat = rustix::fs::statvfs(path).expect("statvfs");
    stat.f_bavail * stat.f_frsize
}

/// Fills the filesystem of `dir` until [`LEFT_FREE`] bytes are left, with
/// one file, returned for removal.
fn fill(dir: &Path) -> std::path::PathBuf {
    let filler = dir.join("filler");
    let file = fs_err::File::create(&filler).expect("filler");
    let len = available(dir).saturating_sub(LEFT_FREE);
    rustix::fs::fallocate(file.as_fd(), rustix::fs::FallocateFlags::empty(), 0, len)
        .expect("fill the filesystem");
    filler
}

pub fn create_on_a_full_disk_fails_clearly_and_harms_nothing() {
    // Declared first, dropped last: the world's processes end before the
    // filesystem goes.
    let Some(tmpfs) = SmallTmpfs::mount("64m") else {
        return;
    };
    let mut world = World::new();
    world.paths.state_dir = tmpfs.path().join("state");
    world.paths.prepare_state_dir().expect("state dir");
    let state = ready(&world, Fakes::Working);
    let a = vm_name("lc-full-a");
    world.block_on(async {
        create(&state, "lc-full-a", false, false)
            .await
            .expect("create with room");
        let filler = fill(tmpfs.path());
        println!("  {} bytes left free", available(tmpfs.path()));

        let error = create(&state, "lc-full-b", false, false)
            .await
            .expect_err("no room for the disks");
        let text = chain(&error);
        println!("  create on a full disk: {text}");
        assert!(text.contains("No space left on device"), "{text}");
        let state_dir = world.paths.state_dir.display().to_string();
        assert!(text.contains(&state_dir), "names the path: {text}");
        world.assert_gone(&state, "lc-full-b");
        assert!(
            !world.vm_dir("lc-full-b").exists(),
            "nothing half-written is left"
        );

        // A pause needs room for the guest's memory: refused before
        // anything is written, the VM keeps running.
        let refused = vms::pause(&state, &a)
            .await
            .expect_err("no room for the memory");
        let text = chain(&refused);
        println!("  pause on a full disk: {text}");
        assert_eq!(refused.code(), banger_api::ErrorCode::Unavailable, "{text}");
        assert!(
            text.contains(&world.vm_dir("lc-full-a").display().to_string()),
            "names where the memory would go: {text}"
        );
        assert!(
            !vms::memory_dir(&world.vm_dir("lc-full-a")).exists(),
            "no memory file was started"
        );

        // A snapshot and a fork need the same room (memory, disk copies):
        // refused before anything is written, nothing is left.
        let snapshot = banger_api::snapshots::SnapshotCreateRequest {
            name: Some(banger_api::SnapshotName::parse("full").expect("snapshot name")),
        };
        let refused = vms::snapshot::create(&state, &a, &snapshot, &ProgressSink::discard())
            .await
            .expect_err("no room for a snapshot");
        let text = bangerd::error::error_chain(&refused);
        println!("  snapshot on a full disk: {text}");
        assert_eq!(refused.code(), banger_api::ErrorCode::Unavailable, "{text}");
        assert!(
            vms::snapshot::list(&state, &a).expect("list").is_empty(),
            "no snapshot was recorded"
        );
        assert!(
            !vms::snapshot::snapshots_dir(&world.vm_dir("lc-full-a"))
                .join("full")
                .exists()
        );
        let fork = banger_api::snapshots::VmForkRequest {
            name: vm_name("lc-full-fork"),
            count: None,
        };
        let refused = vms::fork(&state, &a, &fork, &ProgressSink::discard())
            .await
            .expect_err("no room for a fork");
        let text = bangerd::error::error_chain(&refused);
        println!("  fork on a full disk: {text}");
        assert_eq!(refused.code(), banger_api::ErrorCode::Unavailable, "{text}");
        world.assert_gone(&state, "lc-full-fork");
        assert!(!world.vm_dir("lc-full-fork").exists());

        // The other VM goes on, and the database answers.
        world.assert_running(&state, "lc-full-a");
        vms::stop(&state, &a).await.expect("stop on a full disk");
        vms::start(&state, &a, &ProgressSink::discard())
            .await
            .expect("start on a full disk");
        world.assert_running(&state, "lc-full-a");
        assert_eq!(vms::list(&state).expect("list").len(), 1);

        fs_err::remove_file(&filler).expect("free the space");
        create(&state, "lc-full-b", false, false)
            .await
            .expect("the same create once there is room");
        world.assert_running(&state, "lc-full-b");
    });
    drop(state);
    world.block_on(async {
        // The database survived intact: a restarted daemon opens it and
        // adopts both VMs.
        let state = world.restart().await;
        for name in ["lc-full-a", "lc-full-b"] {
            world.assert_running(&state, name);
            vms::delete(&state, &vm_name(name), true)
                .await
                .expect("delete");
            world.assert_gone(&state, name);
        }
    });
}
