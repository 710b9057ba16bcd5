//! `vm adopt`: an orphaned VM directory (its row gone behind the daemon's
//! back) is re-registered with its disks as they are, boots and deletes
//! cleanly; anything but an orphan under `<state>/vms` is refused and
//! nothing changes.

use banger_api::ErrorCode;
use banger_api::vms::{VmAdoptRequest, VmState};
use bangerd::progress::ProgressSink;
use bangerd::vms;

use crate::ready;
use crate::world::{Fakes, IMAGE, World, chain, create, vm_name};

/// Removes the VM's row behind the daemon's back, as a lost database would.
fn forget_row(world: &World, name: &str) {
    let database = rusqlite::Connection::open(world.paths.database()).expect("open db");
    let removed = database
        .execute("DELETE FROM vms WHERE name = ?1", [name])
        .expect("remove the row");
    assert_eq!(removed, 1);
}

fn adopt_request(dir: &std::path::Path) -> VmAdoptRequest {
    VmAdoptRequest {
        dir: dir.display().to_string(),
        image: Some(banger_api::ImageName::parse(IMAGE).expect("image name")),
        vcpus: Some(1),
        memory_mib: Some(256),
        nat: false,
    }
}

/// The names of the entries of `dir`, sorted.
fn entries(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = fs_err::read_dir(dir)
        .expect("read dir")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

pub fn adopt_reregisters_an_orphan_that_starts_and_deletes() {
    let world = World::new();
    let state = ready(&world, Fakes::Working);
    let dir = world.vm_dir("lc-adopt");
    world.block_on(async {
        create(&state, "lc-adopt", true, false)
            .await
            .expect("create");
        let work = fs_err::read(dir.join("work.ext4")).expect("work disk");
        forget_row(&world, "lc-adopt");
        assert!(vms::list(&state).expect("list").is_empty());
        let orphans = vms::orphans(&state).expect("orphans");
        assert_eq!(orphans.len(), 1, "{orphans:?}");
        assert_eq!(orphans[0].dir, dir.display().to_string());
        assert!(orphans[0].adoptable);

        let adopted = vms::adopt(&state, &adopt_request(&dir))
            .await
            .expect("adopt");
        assert_eq!(adopted.name.as_str(), "lc-adopt");
        assert_eq!(adopted.state, VmState::Created);
        assert_eq!(adopted.disk_bytes, work.len() as u64);
        assert_eq!(adopted.dir, dir.display().to_string());
        assert_eq!(vms::list(&state).expect("list").len(), 1);
        assert!(vms::orphans(&state).expect("orphans").is_empty());
        assert_eq!(
            fs_err::read(dir.join("work.ext4")).expect("work disk"),
            work,
            "the work disk is untouched"
        );
        assert_eq!(world.known_host_keys("lc-adopt").len(), 1);
        assert_eq!(state.dns().records.get("lc-adopt"), Some(adopted.ip));

        vms::start(&state, &vm_name("lc-adopt"), &ProgressSink::discard())
            .await
            .expect("start the adopted VM");
        world.assert_running(&state, "lc-adopt");
        vms::delete(&state, &vm_name("lc-adopt"), true)
            .await
            .expect("delete");
        world.assert_gone(&state, "lc-adopt");
    });
}

pub fn adopt_refuses_what_is_not_an_orphan_and_changes_nothing() {
    let world = World::new();
    let state = ready(&world, Fakes::Working);
    world.block_on(async {
        // A directory a VM row owns.
        create(&state, "lc-owned", true, false)
            .await
            .expect("create");
        let owned = world.vm_dir("lc-owned");
        let error = vms::adopt(&state, &adopt_request(&owned))
            .await
            .expect_err("an owned directory is refused");
        assert_eq!(error.code(), ErrorCode::Conflict, "{}", chain(&error));

        // A VM directory outside `<state>/vms`, and one reached through `..`.
        let elsewhere = world.root.join("elsewhere").join("lc-outside");
        fs_err::create_dir_all(&elsewhere).expect("outside dir");
        for dir in [
            elsewhere.clone(),
            world.paths.state_dir.join("vms/../vms/lc-owned"),
            world.paths.state_dir.join("vms"),
            world.paths.state_dir.clone(),
        ] {
            let error = vms::adopt(&state, &adopt_request(&dir))
                .await
                .expect_err("a path outside <state>/vms is refused");
            assert_eq!(error.code(), ErrorCode::BadRequest, "{}", chain(&error));
            assert!(
                chain(&error).contains("not a VM directory of banger"),
                "{}",
                chain(&error)
            );
        }

        // An orphan without its work disk, then with a symlink for it.
        create(&state, "lc-nowork", true, false)
            .await
            .expect("create");
        forget_row(&world, "lc-nowork");
        let dir = world.vm_dir("lc-nowork");
        let moved = world.root.join("work-moved.ext4");
        fs_err::rename(dir.join("work.ext4"), &moved).expect("move the work disk");
        let before = entries(&dir);
        let error = vms::adopt(&state, &adopt_request(&dir))
            .await
            .expect_err("no work disk is refused");
        assert_eq!(error.code(), ErrorCode::BadRequest, "{}", chain(&error));
        assert!(chain(&error).contains("work disk"), "{}", chain(&error));
        fs_err::os::unix::fs::symlink(&moved, dir.join("work.ext4")).expect("symlink");
        let error = vms::adopt(&state, &adopt_request(&dir))
            .await
            .expect_err("a symlinked work disk is refused");
        assert!(chain(&error).contains("symbolic link"), "{}", chain(&error));
        fs_err::remove_file(dir.join("work.ext4")).expect("remove the link");
        assert_eq!(entries(&dir), before, "the directory is untouched");

        let names: Vec<String> = vms::list(&state)
            .expect("list")
            .into_iter()
            .map(|vm| vm.name.to_string())
            .collect();
        assert_eq!(names, ["lc-owned"], "no row was added");
    });
}
