//! Creates racing each other (docs/reliability.md, "Fault matrix: the
//! daemon"): 20 creates of one name at once give exactly one VM and 19
//! clear "already exists" refusals with nothing left of them; 20 creates
//! of different names at once give 20 running VMs with unique addresses,
//! MACs, vsock CIDs and TAPs. Each create runs in its own task on the
//! world's two-thread runtime, as the daemon serves concurrent requests.

use std::collections::BTreeSet;

use banger_api::ErrorCode;
use banger_api::vms::VmState;
use bangerd::vms;

use crate::ready;
use crate::world::{Fakes, World, chain, create, vm_name};

/// How many creates race.
const RACERS: usize = 20;

pub fn twenty_creates_of_one_name_make_exactly_one_vm() {
    let world = World::new();
    let state = ready(&world, Fakes::Working);
    world.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..RACERS {
            let state = state.clone();
            tasks.spawn(async move { create(&state, "lc-same", false, false).await });
        }
        let mut created = 0;
        let mut refused = Vec::new();
        while let Some(outcome) = tasks.join_next().await {
            match outcome.expect("a create task") {
                Ok(vm) => {
                    assert_eq!(vm.state, VmState::Running);
                    created += 1;
                }
                Err(error) => refused.push(error),
            }
        }
        assert_eq!(created, 1, "exactly one create succeeds");
        assert_eq!(refused.len(), RACERS - 1);
        for error in &refused {
            assert_eq!(error.code(), ErrorCode::Conflict, "{}", chain(error));
            assert!(
                chain(error).contains("a VM named lc-same already exists"),
                "{}",
                chain(error)
            );
        }
        let all = vms::list(&state).expect("list");
        assert_eq!(all.len(), 1, "one VM: {all:?}");
        world.assert_running(&state, "lc-same");
        assert_eq!(world.net.taps().len(), 1, "one TAP");
        let dirs = fs_err::read_dir(world.paths.state_dir.join("vms"))
            .expect("VMs dir")
            .count();
        assert_eq!(dirs, 1, "one VM directory");
        vms::delete(&state, &vm_name("lc-same"), true)
            .await
            .expect("delete");
        world.assert_gone(&state, "lc-same");
        assert!(world.net.taps().is_empty(), "no TAP left");
    });
}

pub fn twenty_creates_of_different_names_get_unique_addresses_macs_and_taps() {
    let world = World::new();
    let state = ready(&world, Fakes::Working);
    let names: Vec<String> = (0..RACERS).map(|i| format!("lc-many-{i}")).collect();
    world.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for name in &names {
            let (state, name) = (state.clone(), name.clone());
            tasks.spawn(async move { create(&state, &name, false, false).await });
        }
        while let Some(outcome) = tasks.join_next().await {
            if let Err(error) = outcome.expect("a create task") {
                panic!("a create failed: {}", chain(&error));
            }
        }
        let mut ips = BTreeSet::new();
        let mut macs = BTreeSet::new();
        let mut cids = BTreeSet::new();
        let mut taps = BTreeSet::new();
        for name in &names {
            let vm = world.assert_running(&state, name);
            ips.insert(vm.ip);
            macs.insert(vm.mac.clone());
            cids.insert(vm.vsock_cid);
            taps.insert(vm.tap.clone().expect("a running VM has a TAP"));
        }
        for (what, count) in [
            ("addresses", ips.len()),
            ("MACs", macs.len()),
            ("vsock CIDs", cids.len()),
            ("TAPs", taps.len()),
        ] {
            assert_eq!(count, RACERS, "{what} are unique");
        }
        assert_eq!(world.net.taps().len(), RACERS, "one TAP per VM");
        world.assert_network_matches(&state);
        for name in &names {
            vms::delete(&state, &vm_name(name), true)
                .await
                .expect("delete");
            world.assert_gone(&state, name);
        }
        assert!(world.net.taps().is_empty(), "no TAP left");
    });
}
