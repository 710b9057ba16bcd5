//! Snapshots and forks against the spec-validating fake Firecracker: a
//! snapshot of a running VM saves memory and disks and leaves it running; a
//! stopped VM's snapshot has disks only; restore brings the disks' bytes
//! back (and with memory resumes the VM); taken names, missing snapshots,
//! wrong states and bad fork counts are refused; a fork whose guest cannot
//! take its identity (the fake's vsock only echoes) leaves nothing behind
//! and the source running.

use banger_api::ErrorCode;
use banger_api::SnapshotName;
use banger_api::snapshots::{SnapshotCreateRequest, VmForkRequest};
use banger_api::vms::VmState;
use bangerd::progress::ProgressSink;
use bangerd::vms;
use bangerd::vms::snapshot;

use crate::ready;
use crate::world::{Fakes, World, create, show, vm_name};

fn snap(name: &str) -> SnapshotName {
    SnapshotName::parse(name).expect("snapshot name")
}

/// Forks `source` into `name` (the request's `count` as given).
async fn fork(
    state: &bangerd::state::AppState,
    source: &banger_api::VmName,
    name: &str,
    count: Option<u32>,
) -> Result<Vec<banger_api::vms::VmInfo>, snapshot::SnapshotError> {
    let request = VmForkRequest {
        name: vm_name(name),
        count,
    };
    vms::fork(state, source, &request, &ProgressSink::discard()).await
}

fn named(name: &str) -> SnapshotCreateRequest {
    SnapshotCreateRequest {
        name: Some(snap(name)),
    }
}

pub fn snapshots_restore_and_a_failed_fork_leave_nothing_behind() {
    let world = World::new();
    let state = ready(&world, Fakes::Working);
    let name = vm_name("lc-snap");
    let progress = ProgressSink::discard();
    world.block_on(async {
        create(&state, "lc-snap", false, false)
            .await
            .expect("create");
        world.assert_running(&state, "lc-snap");

        // A running VM: memory and disks; it runs again afterwards.
        let one = snapshot::create(&state, &name, &named("one"), &progress)
            .await
            .expect("snapshot of a running VM");
        assert!(one.memory);
        assert_eq!(one.vm_state, VmState::Running);
        assert_eq!(show(&state, "lc-snap").state, VmState::Running);
        let taken = snapshot::create(&state, &name, &named("one"), &progress)
            .await
            .expect_err("a taken name");
        assert_eq!(taken.code(), ErrorCode::Conflict);

        // Restore refuses a running VM and changes nothing.
        let running = snapshot::restore(&state, &name, &snap("one"), &progress)
            .await
            .expect_err("restore of a running VM");
        assert_eq!(running.code(), ErrorCode::Conflict);
        assert_eq!(show(&state, "lc-snap").state, VmState::Running);

        // A fork with a bad count, to a taken name, and of a stopped VM.
        let bad = fork(&state, &name, "lc-copy", Some(0))
            .await
            .expect_err("count 0");
        assert_eq!(bad.code(), ErrorCode::BadRequest);
        let taken = fork(&state, &name, "lc-snap", None)
            .await
            .expect_err("a taken name");
        assert_eq!(taken.code(), ErrorCode::Conflict);

        // The fake guest's agent only echoes, so the fork cannot reach it
        // to give it an identity: the fork is removed, the source keeps
        // running, no capture is left.
        let failed = fork(&state, &name, "lc-copy", None)
            .await
            .expect_err("the fake's guest has no agent");
        assert!(
            bangerd::error::error_chain(&failed).contains("its guest agent"),
            "{}",
            bangerd::error::error_chain(&failed)
        );
        world.assert_gone(&state, "lc-copy");
        assert_eq!(show(&state, "lc-snap").state, VmState::Running);
        assert!(!world.vm_dir("lc-snap").join("fork.partial").exists());

        // A stopped VM: disks only; restore brings their bytes back.
        vms::stop(&state, &name).await.expect("stop");
        let work = world.vm_dir("lc-snap").join("work.ext4");
        let original = fs_err::read(&work).expect("work disk");
        let two = snapshot::create(&state, &name, &named("two"), &progress)
            .await
            .expect("snapshot of a stopped VM");
        assert!(!two.memory);
        let stopped_fork = fork(&state, &name, "lc-copy", None)
            .await
            .expect_err("fork of a stopped VM");
        assert_eq!(stopped_fork.code(), ErrorCode::Conflict);
        fs_err::write(&work, b"changed after the snapshot").expect("change the disk");
        let restored = snapshot::restore(&state, &name, &snap("two"), &progress)
            .await
            .expect("restore disks");
        assert_eq!(restored.state, VmState::Stopped);
        assert!(fs_err::read(&work).expect("work disk") == original);

        // With memory, a restore resumes the VM where the snapshot was.
        let resumed = snapshot::restore(&state, &name, &snap("one"), &progress)
            .await
            .expect("restore with memory");
        assert_eq!(resumed.state, VmState::Running);
        vms::stop(&state, &name).await.expect("stop");

        let listed: Vec<String> = snapshot::list(&state, &name)
            .expect("list")
            .into_iter()
            .map(|snapshot| snapshot.name.to_string())
            .collect();
        assert_eq!(listed, ["one", "two"]);
        let deleted = snapshot::delete(&state, &name, &snap("two"))
            .await
            .expect("delete");
        assert!(deleted.bytes > 0);
        let missing = snapshot::delete(&state, &name, &snap("two"))
            .await
            .expect_err("deleted already");
        assert_eq!(missing.code(), ErrorCode::NotFound);
        assert_eq!(show(&state, "lc-snap").state, VmState::Stopped);

        // Deleting the VM takes its snapshots.
        vms::delete(&state, &name, false)
            .await
            .expect("delete the VM");
        world.assert_gone(&state, "lc-snap");
    });
}
