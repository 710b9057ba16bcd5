//! Data banger does not own is never touched: a VM directory that no row
//! owns is refused by create and kept byte for byte, and delete removes only
//! the directory derived from the VM's name, whatever the row says.

use banger_api::ErrorCode;
use banger_testkit::fake_network::CallKind;
use bangerd::vms;

use crate::ready;
use crate::world::{Fakes, World, chain, create, vm_name};

/// A work disk someone cares about, left in `dir`.
fn precious_work_disk(dir: &std::path::Path) -> std::path::PathBuf {
    fs_err::create_dir_all(dir).expect("create the orphan dir");
    let disk = dir.join("work.ext4");
    fs_err::write(&disk, b"precious user data").expect("write the work disk");
    disk
}

pub fn create_refuses_an_orphan_directory_and_keeps_it() {
    let world = World::new();
    let state = ready(&world, Fakes::Working);
    let dir = world.vm_dir("lc-orphan");
    let disk = precious_work_disk(&dir);
    world.block_on(async {
        let error = create(&state, "lc-orphan", false, false)
            .await
            .expect_err("an orphan directory is refused");
        assert_eq!(error.code(), ErrorCode::Conflict, "{}", chain(&error));
        let message = chain(&error);
        assert!(message.contains(&dir.display().to_string()), "{message}");
        assert!(
            message.contains("no VM in banger's database owns it"),
            "{message}"
        );
        assert_eq!(
            fs_err::read(&disk).expect("the work disk is still there"),
            b"precious user data"
        );
        let entries: Vec<_> = fs_err::read_dir(&dir)
            .expect("read the orphan dir")
            .map(|entry| entry.expect("entry").file_name())
            .collect();
        assert_eq!(entries, ["work.ext4"], "nothing was added to it");
        assert!(vms::list(&state).expect("list").is_empty(), "no row");
        assert_eq!(world.net.count(CallKind::CreateTap), 0, "no TAP");
        assert_eq!(state.dns().records.get("lc-orphan"), None);
        // Once it is moved away, the name works.
        fs_err::rename(&dir, world.root.join("moved-away")).expect("move it away");
        create(&state, "lc-orphan", true, false)
            .await
            .expect("create after the move");
        vms::delete(&state, &vm_name("lc-orphan"), false)
            .await
            .expect("delete");
        world.assert_gone(&state, "lc-orphan");
        assert_eq!(
            fs_err::read(world.root.join("moved-away/work.ext4")).expect("moved disk"),
            b"precious user data"
        );
    });
}

pub fn delete_removes_only_the_directory_named_after_the_vm() {
    let world = World::new();
    let state = ready(&world, Fakes::Working);
    let elsewhere = world.root.join("not-banger");
    let disk = precious_work_disk(&elsewhere);
    world.block_on(async {
        create(&state, "lc-tampered", true, false)
            .await
            .expect("create");
        // A damaged or hostile row names another directory.
        let database = rusqlite::Connection::open(world.paths.database()).expect("open db");
        let changed = database
            .execute(
                "UPDATE vms SET dir = ?1 WHERE name = 'lc-tampered'",
                [elsewhere.display().to_string()],
            )
            .expect("tamper with the row");
        assert_eq!(changed, 1);
        drop(database);
        vms::delete(&state, &vm_name("lc-tampered"), false)
            .await
            .expect("delete");
        assert_eq!(
            fs_err::read(&disk).expect("the other directory is untouched"),
            b"precious user data"
        );
        world.assert_gone(&state, "lc-tampered");
    });
}
