//! The event bus sees every VM record change the store makes: created,
//! each state change in order, deleted.

use banger_api::events::EventKind;
use banger_api::vms::VmState;
use bangerd::vms;

use crate::ready;
use crate::world::{Fakes, World, create, vm_name};

pub fn events_follow_a_vm_from_create_to_delete() {
    let world = World::new();
    let state = ready(&world, Fakes::Working);
    let mut events = state.events().subscribe();
    let name = vm_name("lc-events");
    world.block_on(async {
        create(&state, "lc-events", false, false)
            .await
            .expect("create");
        vms::stop(&state, &name).await.expect("stop");
        vms::delete(&state, &name, false).await.expect("delete");
    });
    let mut seen = Vec::new();
    while let Ok(event) = events.try_recv() {
        match &event.event {
            EventKind::VmCreated { vm } if *vm == name => seen.push("created".to_owned()),
            EventKind::VmState { vm, from, to, .. } if *vm == name => {
                seen.push(format!("{}->{}", from.as_str(), to.as_str()))
            }
            EventKind::VmDeleted { vm } if *vm == name => seen.push("deleted".to_owned()),
            _ => {}
        }
    }
    assert_eq!(
        seen.first().map(String::as_str),
        Some("created"),
        "{seen:?}"
    );
    assert_eq!(seen.last().map(String::as_str), Some("deleted"), "{seen:?}");
    for (from, to) in [
        (VmState::Created, VmState::Starting),
        (VmState::Starting, VmState::Running),
        (VmState::Stopping, VmState::Stopped),
    ] {
        let step = format!("{}->{}", from.as_str(), to.as_str());
        assert!(seen.contains(&step), "{step} missing from {seen:?}");
    }
}
