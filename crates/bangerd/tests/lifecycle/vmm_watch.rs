//! A VMM that exits on its own while nothing waits on the VM (a SIGKILL
//! from outside here) is noticed within 2 seconds, reaped (no zombie is
//! left) and its VM recorded `stopped` with the exit status, by the watcher
//! the start began; and the same for a VM a restarted daemon adopted, whose
//! watcher recovery began.
//!
//! The VMM is killed without being reaped: reaping is the daemon's job, and
//! `/proc/<pid>` disappearing proves it was done.
//!
//! The "restarted" daemon lives in this same process (see
//! `World::restart`), so its adopted VMM is still this process's child and
//! its exit status is known; a VMM that is not the daemon's child is waited
//! on through its pidfd the same way (with an unknown status), which
//! banger-vmm's `a_process_that_is_not_our_child_is_watched_by_pidfd`
//! covers.

use std::path::Path;
use std::time::{Duration, Instant};

use banger_api::vms::{VmInfo, VmState};
use banger_vmm::process::{ProcessIdentity, Signal};
use bangerd::state::AppState;
use bangerd::vms;

use crate::ready;
use crate::world::{Fakes, World, create, show, vm_name};

/// The promise: an exit is noticed, reaped and recorded within this.
const NOTICED_WITHIN: Duration = Duration::from_secs(2);

/// SIGKILLs the VMM `pid` (without reaping it) and waits until VM `name` is
/// recorded stopped; fails if that takes longer than [`NOTICED_WITHIN`].
/// Returns the VM's record and how long it took.
async fn kill_vmm_and_wait_for_stopped(
    state: &AppState,
    name: &str,
    pid: u32,
) -> (VmInfo, Duration) {
    let vmm = ProcessIdentity::of(pid).expect("identify the VMM");
    let killed = Instant::now();
    assert!(vmm.signal(Signal::KILL).expect("SIGKILL the VMM"));
    loop {
        let vm = show(state, name);
        if vm.state == VmState::Stopped {
            let took = killed.elapsed();
            assert!(took < NOTICED_WITHIN, "recorded stopped after {took:?}");
            return (vm, took);
        }
        assert!(
            killed.elapsed() < NOTICED_WITHIN,
            "VM {name} still {:?} {NOTICED_WITHIN:?} after its VMM was killed",
            vm.state
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The VM is stopped for the right reason and its VMM was reaped.
fn assert_noticed(world: &World, state: &AppState, name: &str, pid: u32, status: &str) {
    let vm = world.assert_stopped(state, name);
    let reason = vm.last_error.unwrap_or_default();
    assert!(reason.contains("the VMM exited on its own"), "{reason}");
    assert!(reason.contains(status), "exit status {status:?}: {reason}");
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "VMM {pid} was not reaped (a zombie is left)"
    );
}

pub fn a_killed_vmm_is_noticed_reaped_and_recorded_within_2s() {
    let world = World::new();
    let state = ready(&world, Fakes::Working);
    world.block_on(async {
        create(&state, "lc-watch", false, false)
            .await
            .expect("create");
        let pid = world.assert_running(&state, "lc-watch").pid.expect("pid");
        let (_, took) = kill_vmm_and_wait_for_stopped(&state, "lc-watch", pid).await;
        println!("  noticed after {took:?}");
        assert_noticed(&world, &state, "lc-watch", pid, "killed by signal 9");
        // Nothing is left to confuse the next start.
        vms::start(
            &state,
            &vm_name("lc-watch"),
            &bangerd::progress::ProgressSink::discard(),
        )
        .await
        .expect("start again");
        world.assert_running(&state, "lc-watch");
        vms::delete(&state, &vm_name("lc-watch"), true)
            .await
            .expect("delete");
        world.assert_gone(&state, "lc-watch");
    });
}

pub fn an_adopted_vmm_that_is_killed_is_noticed_within_2s() {
    let world = World::new();
    let first = ready(&world, Fakes::Working);
    let pid = world.block_on(async {
        create(&first, "lc-watch-adopt", false, false)
            .await
            .expect("create");
        world
            .assert_running(&first, "lc-watch-adopt")
            .pid
            .expect("pid")
    });
    // The first daemon is gone; its watcher must not act for it.
    drop(first);
    world.block_on(async {
        let second = world.restart().await;
        let adopted = world.assert_running(&second, "lc-watch-adopt");
        assert_eq!(adopted.pid, Some(pid), "the same VMM was adopted");
        let (_, took) = kill_vmm_and_wait_for_stopped(&second, "lc-watch-adopt", pid).await;
        println!("  noticed after {took:?}");
        assert_noticed(&world, &second, "lc-watch-adopt", pid, "signal 9");
        vms::delete(&second, &vm_name("lc-watch-adopt"), false)
            .await
            .expect("delete");
        world.assert_gone(&second, "lc-watch-adopt");
    });
}

pub fn a_stop_on_purpose_is_not_recorded_by_the_watcher() {
    let world = World::new();
    let state = ready(&world, Fakes::Working);
    let name = vm_name("lc-watch-stop");
    world.block_on(async {
        create(&state, "lc-watch-stop", false, false)
            .await
            .expect("create");
        vms::stop(&state, &name).await.expect("stop");
        // Give the watcher, woken by the stop's end of the VMM, every chance
        // to (wrongly) record an exit of its own.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let vm = world.assert_stopped(&state, "lc-watch-stop");
        assert_eq!(vm.last_error, None, "a stop on purpose records no error");
        vms::start(&state, &name, &bangerd::progress::ProgressSink::discard())
            .await
            .expect("start again");
        world.assert_running(&state, "lc-watch-stop");
        // And it stays running: the old VMM's watcher does not touch the new.
        tokio::time::sleep(Duration::from_millis(300)).await;
        world.assert_running(&state, "lc-watch-stop");
        vms::delete(&state, &name, true).await.expect("delete");
        world.assert_gone(&state, "lc-watch-stop");
    });
}
