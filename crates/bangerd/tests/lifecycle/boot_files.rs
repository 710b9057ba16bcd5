//! Boot files are checked again at every use: a rootfs swapped for a FIFO
//! after register fails `vm create` and `vm start` at once with a typed
//! error (never a hang), leaves nothing behind, and other VMs stay usable.

use std::time::Duration;

use banger_api::ErrorCode;
use banger_api::vms::VmState;
use bangerd::vms::{self, VmError};

use crate::ready;
use crate::world::{Fakes, World, chain, create, show, vm_name};

pub fn create_with_a_fifo_for_rootfs_fails_at_once_and_leaves_nothing() {
    let world = World::new();
    let state = ready(&world, Fakes::Working);
    let rootfs = world.root.join("artifacts/rootfs.ext4");
    world.block_on(async {
        create(&state, "lc-other", true, false)
            .await
            .expect("create a VM before the swap");
        fs_err::remove_file(&rootfs).expect("remove the rootfs");
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            &rootfs,
            rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR,
        )
        .expect("mkfifo in place of the rootfs");

        let error = tokio::time::timeout(
            Duration::from_secs(20),
            create(&state, "lc-fifo", false, false),
        )
        .await
        .expect("create must not hang on a FIFO")
        .expect_err("a FIFO rootfs is refused");
        assert!(
            matches!(error, VmError::BootFileInvalid { role: "rootfs", .. }),
            "{}",
            chain(&error)
        );
        assert_eq!(error.code(), ErrorCode::Conflict, "{}", chain(&error));
        let message = chain(&error);
        assert!(
            message.contains(&format!(
                "{}: is a FIFO, not a regular file",
                rootfs.display()
            )),
            "{message}"
        );
        world.assert_gone(&state, "lc-fifo");

        // Starting the VM made before the swap fails the same way, at once,
        // and leaves it as it was.
        let error = tokio::time::timeout(
            Duration::from_secs(20),
            vms::start(
                &state,
                &vm_name("lc-other"),
                &bangerd::progress::ProgressSink::discard(),
            ),
        )
        .await
        .expect("start must not hang on a FIFO")
        .expect_err("a FIFO rootfs is refused at start");
        assert!(
            matches!(error, VmError::BootFileInvalid { role: "rootfs", .. }),
            "{}",
            chain(&error)
        );
        assert_eq!(show(&state, "lc-other").state, VmState::Created);

        // Deleting the other VM still works.
        tokio::time::timeout(
            Duration::from_secs(20),
            vms::delete(&state, &vm_name("lc-other"), false),
        )
        .await
        .expect("delete must not hang")
        .expect("delete the other VM");
        world.assert_gone(&state, "lc-other");
    });
}

pub fn create_with_a_symlinked_rootfs_is_refused() {
    let world = World::new();
    let state = ready(&world, Fakes::Working);
    let rootfs = world.root.join("artifacts/rootfs.ext4");
    let moved = world.root.join("artifacts/real-rootfs.ext4");
    world.block_on(async {
        fs_err::rename(&rootfs, &moved).expect("move the rootfs");
        fs_err::os::unix::fs::symlink(&moved, &rootfs).expect("symlink in its place");
        let error = create(&state, "lc-link", false, false)
            .await
            .expect_err("a symlinked rootfs is refused");
        assert_eq!(error.code(), ErrorCode::Conflict, "{}", chain(&error));
        assert!(
            chain(&error).contains("is a symbolic link, not a regular file"),
            "{}",
            chain(&error)
        );
        world.assert_gone(&state, "lc-link");
    });
}
