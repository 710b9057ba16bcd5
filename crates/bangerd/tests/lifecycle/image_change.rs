//! An image changed while a VM is being created: the create notices under
//! the images lock and refuses, leaving nothing, instead of recording a VM
//! whose disks came from the image as it was before the change.

use std::time::Duration;

use banger_api::ErrorCode;
use bangerd::vms::VmError;

use crate::ready;
use crate::world::{Fakes, IMAGE, World, chain, create};

pub fn create_refuses_an_image_changed_since_it_was_checked() {
    let world = World::new();
    let state = ready(&world, Fakes::Working);
    let image = banger_api::ImageName::parse(IMAGE).expect("image name");
    world.block_on(async {
        // Hold the lock a register holds: the create resolves and checks
        // the image, then waits for it before writing its row.
        let held = state.images_lock().lock().await;
        let creating = {
            let state = state.clone();
            tokio::spawn(async move { create(&state, "lc-changed", true, false).await })
        };
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(!creating.is_finished(), "the create waits for the lock");
        // What a re-register does meanwhile: a new row for the name.
        let mut row = state
            .store()
            .image(&image)
            .expect("read the image")
            .expect("the image exists");
        row.updated_at += 1;
        state.store().upsert_image(&row).expect("update the image");
        drop(held);
        let error = creating
            .await
            .expect("the create task")
            .expect_err("the image changed under the create");
        assert!(
            matches!(error, VmError::ImageChanged { .. }),
            "{}",
            chain(&error)
        );
        assert_eq!(error.code(), ErrorCode::Conflict);
        world.assert_gone(&state, "lc-changed");
        // The next create sees the image as it is now and works.
        create(&state, "lc-changed", true, false)
            .await
            .expect("create after the change");
    });
}
