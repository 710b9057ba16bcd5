//! Force never waits on the guest: `vm delete --force` and `vm kill` end a
//! VM whose create is stuck waiting for SSH at once, instead of waiting for
//! that create (up to its SSH timeout) to let go of the VM.

use std::time::{Duration, Instant};

use banger_api::vms::{VmSignal, VmState};
use bangerd::state::AppState;
use bangerd::vms;

use crate::ready;
use crate::world::{Fakes, World, create, vm_name};

/// Far longer than any case may take: the stuck create would wait this long.
const STUCK_SSH: Duration = Duration::from_secs(120);
/// What "at once" means here, generously for a loaded machine.
const PROMPT: Duration = Duration::from_secs(15);

/// Starts a create whose SSH never answers and waits until its VMM runs.
async fn stuck_create(
    state: &AppState,
    name: &'static str,
) -> tokio::task::JoinHandle<Result<banger_api::vms::VmInfo, vms::VmError>> {
    let creating = tokio::spawn({
        let state = state.clone();
        async move { create(&state, name, false, false).await }
    });
    let deadline = Instant::now() + PROMPT;
    loop {
        if let Ok(vm) = vms::show(state, &vm_name(name)) {
            if vm.state == VmState::Running && vm.pid.is_some() {
                break;
            }
        }
        assert!(Instant::now() < deadline, "the VMM of {name} never ran");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    creating
}

pub fn forced_delete_ends_a_create_stuck_waiting_for_ssh() {
    let mut world = World::new();
    world.ssh_timeout = STUCK_SSH;
    let state = ready(&world, Fakes::SshNeverAnswers);
    world.block_on(async {
        let creating = stuck_create(&state, "lc-stuck").await;
        let started = Instant::now();
        vms::delete(&state, &vm_name("lc-stuck"), true)
            .await
            .expect("a forced delete succeeds");
        assert!(started.elapsed() < PROMPT, "took {:?}", started.elapsed());
        let created = creating.await.expect("the create task ends");
        assert!(created.is_err(), "the interrupted create fails");
        world.assert_gone(&state, "lc-stuck");
    });
}

pub fn kill_does_not_wait_for_a_create_stuck_waiting_for_ssh() {
    let mut world = World::new();
    world.ssh_timeout = STUCK_SSH;
    let state = ready(&world, Fakes::SshNeverAnswers);
    world.block_on(async {
        let creating = stuck_create(&state, "lc-stuck-kill").await;
        let started = Instant::now();
        vms::kill(&state, &vm_name("lc-stuck-kill"), Some(VmSignal::Kill))
            .await
            .expect("kill signals at once");
        assert!(started.elapsed() < PROMPT, "took {:?}", started.elapsed());
        let created = tokio::time::timeout(PROMPT, creating)
            .await
            .expect("the create ends promptly once its VMM is killed")
            .expect("the create task ends");
        assert!(created.is_err(), "the interrupted create fails");
        world.assert_gone(&state, "lc-stuck-kill");
    });
}

pub fn restart_with_only_never_started_vms_leaves_the_host_network_alone() {
    let world = World::new();
    // The first daemon registers the image (no network needed for that).
    let state = ready(&world, Fakes::Working);
    world.block_on(async {
        create(&state, "lc-never", true, false)
            .await
            .expect("create without starting");
        assert!(world.net.calls().is_empty(), "{:?}", world.net.calls());
        let restarted = world.restart().await;
        assert!(
            world.net.calls().is_empty(),
            "a restart with only never-started VMs touched the network: {:?}",
            world.net.calls()
        );
        vms::delete(&restarted, &vm_name("lc-never"), false)
            .await
            .expect("delete");
        world.assert_gone(&restarted, "lc-never");
    });
}
