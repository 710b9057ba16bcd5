//! Faults that do not end the VMM, and records that no longer describe it
//! (issue 19's fault matrix; docs/reliability.md):
//!
//! - a SIGSTOPped VMM is reported `running` with an `unhealthy:` reason
//!   within seconds, the reason goes with SIGCONT, and stop, kill, start and
//!   delete all work on a frozen VMM;
//! - a dead VM helper (`vhost-device-vsock` under QEMU; a `sleep` recorded as
//!   the VM's helper here, since the fake Firecracker has none) is reported
//!   the same way, and `vm restart` brings a new one;
//! - a recorded VMM pid that now belongs to an unrelated process (a `sleep`)
//!   is never signalled, by stop, start, delete or a restarted daemon's
//!   recovery, and a stale API socket left behind does not stop a start.

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use banger_api::events::EventKind;
use banger_api::vms::{VmInfo, VmSignal, VmState};
use banger_vmm::process::{ProcessIdentity, Signal};
use bangerd::progress::ProgressSink;
use bangerd::state::AppState;
use bangerd::store::VmmHandle;
use bangerd::vms;

use crate::harness::is_live;
use crate::ready;
use crate::world::{Fakes, World, create, show, vm_name};

/// The promise for a health change: noticed within this (it is looked at
/// every `vms::HEALTH_TICK`).
const NOTICED_WITHIN: Duration = Duration::from_secs(3);

/// Waits until VM `name`'s record satisfies `check`; fails after
/// [`NOTICED_WITHIN`] with `what`. Returns the record and how long it took.
async fn wait_for(
    state: &AppState,
    name: &str,
    what: &str,
    check: impl Fn(&VmInfo) -> bool,
) -> (VmInfo, Duration) {
    let started = Instant::now();
    loop {
        let vm = show(state, name);
        if check(&vm) {
            return (vm, started.elapsed());
        }
        assert!(
            started.elapsed() < NOTICED_WITHIN,
            "{name}: not {what} after {NOTICED_WITHIN:?}: {vm:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn unhealthy_with(vm: &VmInfo, words: &str) -> bool {
    vm.state == VmState::Running
        && vm
            .last_error
            .as_deref()
            .is_some_and(|reason| reason.starts_with(vms::UNHEALTHY) && reason.contains(words))
}

/// Signals the running VMM of `name` with `signal`; returns its identity.
fn signal_vmm(state: &AppState, name: &str, signal: Signal) -> ProcessIdentity {
    let pid = show(state, name).pid.expect("a VMM pid");
    let vmm = ProcessIdentity::of(pid).expect("identify the VMM");
    assert!(vmm.signal(signal).expect("signal the VMM"), "{signal:?}");
    vmm
}

pub fn a_stopped_vmm_is_reported_and_stop_kill_start_delete_work() {
    let world = World::new();
    let state = ready(&world, Fakes::Working);
    let name = vm_name("lc-frozen");
    world.block_on(async {
        create(&state, "lc-frozen", false, false)
            .await
            .expect("create");
        let mut events = state.events().subscribe();
        let vmm = signal_vmm(&state, "lc-frozen", Signal::STOP);
        let (vm, took) = wait_for(&state, "lc-frozen", "reported frozen", |vm| {
            unhealthy_with(vm, "is stopped (SIGSTOP")
        })
        .await;
        println!("  SIGSTOP reported after {took:?}");
        let reason = vm.last_error.unwrap_or_default();
        assert!(
            reason.contains(&format!("kill -CONT {}", vmm.pid)),
            "{reason}"
        );
        assert!(reason.contains("banger vm kill lc-frozen"), "{reason}");

        // SIGCONT: healthy again, the reason is gone.
        assert!(vmm.signal(Signal::CONT).expect("SIGCONT"));
        let (_, took) = wait_for(&state, "lc-frozen", "healthy again", |vm| {
            vm.state == VmState::Running && vm.last_error.is_none()
        })
        .await;
        println!("  SIGCONT reported after {took:?}");
        // Watchers (TUI, web UI) were told both changes, in order.
        let mut health = Vec::new();
        while let Ok(event) = events.try_recv() {
            if let EventKind::VmHealth { vm, warning } = &event.event
                && *vm == name
            {
                health.push(warning.clone());
            }
        }
        assert!(
            matches!(health.as_slice(), [Some(warning), None] if warning.contains("is stopped (SIGSTOP")),
            "vm_health events: {health:?}"
        );

        // A stop continues the frozen VMM and shuts it down cleanly, far
        // sooner than the stop timeout that ends in a SIGKILL.
        signal_vmm(&state, "lc-frozen", Signal::STOP);
        wait_for(&state, "lc-frozen", "reported frozen", |vm| {
            unhealthy_with(vm, "is stopped")
        })
        .await;
        let started = Instant::now();
        vms::stop(&state, &name).await.expect("stop a frozen VMM");
        let took = started.elapsed();
        println!("  stop of a frozen VMM took {took:?}");
        assert!(took < Duration::from_secs(15), "stop took {took:?}");
        let vm = world.assert_stopped(&state, "lc-frozen");
        assert_eq!(vm.last_error, None, "a clean stop: {vm:?}");

        // Start, freeze, kill (SIGKILL ends a stopped process), start again.
        vms::start(&state, &name, &ProgressSink::discard())
            .await
            .expect("start after the stop");
        let vm = world.assert_running(&state, "lc-frozen");
        assert_eq!(vm.last_error, None, "{vm:?}");
        let frozen = signal_vmm(&state, "lc-frozen", Signal::STOP);
        wait_for(&state, "lc-frozen", "reported frozen", |vm| {
            unhealthy_with(vm, "is stopped")
        })
        .await;
        vms::kill(&state, &name, Some(VmSignal::Kill))
            .await
            .expect("kill a frozen VMM");
        world.assert_stopped(&state, "lc-frozen");
        assert!(!is_live(frozen.pid), "the frozen VMM was killed");
        vms::start(&state, &name, &ProgressSink::discard())
            .await
            .expect("start after the kill");
        world.assert_running(&state, "lc-frozen");

        // Delete --force of a frozen VM.
        signal_vmm(&state, "lc-frozen", Signal::STOP);
        wait_for(&state, "lc-frozen", "reported frozen", |vm| {
            unhealthy_with(vm, "is stopped")
        })
        .await;
        let started = Instant::now();
        vms::delete(&state, &name, true)
            .await
            .expect("delete a frozen VM");
        println!("  delete of a frozen VM took {:?}", started.elapsed());
        world.assert_gone(&state, "lc-frozen");
    });
}

/// A `sleep` that stands for another process (a helper, or whoever got a
/// recycled pid); killed and reaped when dropped.
struct Sleeper(Child);

impl Sleeper {
    fn start() -> Self {
        Self(
            Command::new("sleep")
                .arg("1000")
                .spawn()
                .expect("start sleep"),
        )
    }

    fn identity(&self) -> ProcessIdentity {
        ProcessIdentity::of(self.0.id()).expect("identify sleep")
    }

    /// Alive and not a zombie: nothing signalled it.
    fn untouched(&mut self) -> bool {
        self.0.try_wait().expect("wait on sleep").is_none() && is_live(self.0.id())
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Rewrites VM `name`'s recorded VMM handle with `edit` (what a crash, a
/// bug or time can leave in the database).
fn edit_record(state: &AppState, name: &str, edit: impl FnOnce(&mut banger_vmm::RunningVm)) {
    let mut store = state.store();
    let mut vm = store.vm(&vm_name(name)).expect("query").expect("row");
    let VmmHandle::Recorded(running) = &mut vm.vmm else {
        panic!("{name} has no recorded VMM: {:?}", vm.vmm);
    };
    edit(running);
    store.update_vm(&vm).expect("update the record");
}

pub fn a_dead_helper_is_reported_and_a_restart_brings_a_new_one() {
    let world = World::new();
    let first = ready(&world, Fakes::Working);
    world.block_on(async {
        create(&first, "lc-helper", false, false)
            .await
            .expect("create");
    });
    let mut helper = Sleeper::start();
    edit_record(&first, "lc-helper", |running| {
        running.helpers.push(helper.identity())
    });
    drop(first);
    world.block_on(async {
        // A restarted daemon adopts the VM with its helper and watches both.
        let state = world.restart().await;
        world.assert_running(&state, "lc-helper");
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let vm = show(&state, "lc-helper");
        assert_eq!(vm.last_error, None, "healthy while the helper runs");
        assert!(helper.untouched());

        helper.0.kill().expect("kill the helper");
        helper.0.wait().expect("reap the helper");
        let (vm, took) = wait_for(&state, "lc-helper", "reported", |vm| {
            unhealthy_with(vm, "sleep (pid")
        })
        .await;
        println!("  helper death reported after {took:?}");
        let reason = vm.last_error.unwrap_or_default();
        assert!(reason.contains("guest agent cannot be reached"), "{reason}");
        assert!(reason.contains("banger vm restart lc-helper"), "{reason}");

        vms::restart(&state, &vm_name("lc-helper"), &ProgressSink::discard())
            .await
            .expect("restart");
        let vm = world.assert_running(&state, "lc-helper");
        assert_eq!(vm.last_error, None, "{vm:?}");
        vms::delete(&state, &vm_name("lc-helper"), true)
            .await
            .expect("delete");
        world.assert_gone(&state, "lc-helper");
    });
}

/// Points VM `name`'s recorded VMM at `stranger`'s pid (start time and
/// executable stay the VMM's: the pid was recycled), then SIGKILLs the real
/// VMM and waits until it is gone (its watcher reaps it and, the record no
/// longer naming it, records nothing).
async fn recycle_vmm_pid(state: &AppState, name: &str, stranger: &ProcessIdentity) {
    let real = ProcessIdentity::of(show(state, name).pid.expect("pid")).expect("identify");
    edit_record(state, name, |running| running.vmm.pid = stranger.pid);
    assert!(real.signal(Signal::KILL).expect("SIGKILL the real VMM"));
    let deadline = Instant::now() + NOTICED_WITHIN;
    while real.is_alive_and_same() {
        assert!(Instant::now() < deadline, "VMM {} survived", real.pid);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn a_recycled_vmm_pid_is_never_signalled() {
    let world = World::new();
    let state = ready(&world, Fakes::Working);
    let mut stranger = Sleeper::start();
    let identity = stranger.identity();
    let name = vm_name("lc-recycled");
    world.block_on(async {
        create(&state, "lc-recycled", false, false)
            .await
            .expect("create");
        recycle_vmm_pid(&state, "lc-recycled", &identity).await;
        // The record says running; the VMM it names is gone.
        // Whatever kill answers (its VMM is gone), it must not hit the
        // stranger.
        let killed = vms::kill(&state, &name, Some(VmSignal::Term)).await;
        println!("  kill of a recycled pid: {:?}", killed.map(|vm| vm.state));
        assert!(stranger.untouched(), "kill signalled the stranger");
        vms::stop(&state, &name).await.expect("stop");
        assert!(stranger.untouched(), "stop signalled the stranger");
        world.assert_stopped(&state, "lc-recycled");

        // Started again, and the same with a daemon restart in between.
        vms::start(&state, &name, &ProgressSink::discard())
            .await
            .expect("start");
        world.assert_running(&state, "lc-recycled");
        recycle_vmm_pid(&state, "lc-recycled", &identity).await;
    });
    drop(state);
    world.block_on(async {
        let state = world.restart().await;
        assert!(stranger.untouched(), "recovery signalled the stranger");
        let vm = world.assert_stopped(&state, "lc-recycled");
        let reason = vm.last_error.unwrap_or_default();
        assert!(reason.contains("exited while bangerd"), "{reason}");
        assert!(
            !world.run_dir("lc-recycled").exists(),
            "the runtime dir with the dead VMM's sockets is gone"
        );

        // A stale API socket (bound, nobody listening) where the next VMM
        // makes its own: the start replaces it.
        let run_dir = world.run_dir("lc-recycled");
        fs_err::create_dir_all(&run_dir).expect("run dir");
        let stale = run_dir.join("firecracker.sock");
        drop(std::os::unix::net::UnixListener::bind(&stale).expect("bind a stale socket"));
        assert!(stale.exists());
        vms::start(&state, &name, &ProgressSink::discard())
            .await
            .expect("start over a stale socket");
        world.assert_running(&state, "lc-recycled");
        vms::delete(&state, &name, true).await.expect("delete");
        assert!(stranger.untouched(), "delete signalled the stranger");
        world.assert_gone(&state, "lc-recycled");
    });
}
