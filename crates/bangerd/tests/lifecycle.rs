//! VM lifecycle without a VM: create, start, stop, kill, restart, delete,
//! recovery after a daemon restart, and every failed create, driven through
//! `bangerd::vms` against fakes, in seconds and without root.
//!
//! - Network: `banger_testkit::fake_network::FakeNetwork` (in-memory
//!   bridges, TAPs and firewall state) instead of netlink and nftables.
//! - VMM: the real Firecracker backend starting this binary as a fake
//!   `firecracker` that validates every API request against the official
//!   spec (`../shared/firecracker/firecracker.yaml` or `$BANGER_FC_SPEC`;
//!   without it the run reports itself SKIPPED), with this binary as the
//!   console copier too.
//! - SSH: a waiter that answers at once (or never, for the timeout case).
//! - Images: a registered image with a small real ext4 root filesystem and a
//!   placeholder kernel (nothing boots).
//!
//! Each case has its own temp dir and VM names; every process a case
//! started is killed when it ends, pass or fail. Run it with
//! `cargo test -p bangerd --test lifecycle` (a name filter may follow `--`).

#![allow(
    clippy::print_stdout,
    reason = "a harness-less test binary reports its results on stdout"
)]

#[path = "lifecycle/adopt.rs"]
mod adopt;
#[path = "lifecycle/boot_files.rs"]
mod boot_files;
#[path = "lifecycle/concurrency.rs"]
mod concurrency;
#[path = "lifecycle/disk_full.rs"]
mod disk_full;
#[path = "lifecycle/events.rs"]
mod events;
#[path = "lifecycle/forced.rs"]
mod forced;
#[path = "lifecycle/harness.rs"]
mod harness;
#[path = "lifecycle/image_change.rs"]
mod image_change;
#[path = "lifecycle/orphans.rs"]
mod orphans;
#[path = "lifecycle/pause.rs"]
mod pause;
#[path = "lifecycle/snapshot.rs"]
mod snapshot;
#[path = "lifecycle/space.rs"]
mod space;
#[path = "lifecycle/vmm_exit.rs"]
mod vmm_exit;
#[path = "lifecycle/vmm_faults.rs"]
mod vmm_faults;
#[path = "lifecycle/vmm_watch.rs"]
mod vmm_watch;
#[path = "lifecycle/world.rs"]
mod world;

use std::process::ExitCode;

use banger_api::ErrorCode;
use banger_api::vms::{VmSignal, VmState};
use banger_testkit::fake_network::CallKind;
use bangerd::progress::ProgressSink;
use bangerd::vms::{self, VmError};

use world::{Fakes, World, chain, create, show, vm_name};

fn main() -> ExitCode {
    harness::main(&[
        ("create_starts_a_running_vm", create_starts_a_running_vm),
        (
            "a_clean_stop_leaves_no_spare_taps",
            a_clean_stop_leaves_no_spare_taps,
        ),
        (
            "twenty_creates_of_one_name_make_exactly_one_vm",
            concurrency::twenty_creates_of_one_name_make_exactly_one_vm,
        ),
        (
            "twenty_creates_of_different_names_get_unique_addresses_macs_and_taps",
            concurrency::twenty_creates_of_different_names_get_unique_addresses_macs_and_taps,
        ),
        (
            "events_follow_a_vm_from_create_to_delete",
            events::events_follow_a_vm_from_create_to_delete,
        ),
        (
            "create_is_announced_with_progress_and_how_it_ended",
            events::create_is_announced_with_progress_and_how_it_ended,
        ),
        ("stop_then_start_again", stop_then_start_again),
        ("kill_with_term_and_with_kill", kill_with_term_and_with_kill),
        ("restart_replaces_the_vmm", restart_replaces_the_vmm),
        (
            "delete_needs_force_while_running",
            delete_needs_force_while_running,
        ),
        ("recover_adopts_then_retires", recover_adopts_then_retires),
        (
            "create_unknown_image_leaves_nothing",
            create_unknown_image_leaves_nothing,
        ),
        (
            "create_taken_name_leaves_nothing",
            create_taken_name_leaves_nothing,
        ),
        (
            "create_without_addresses_leaves_nothing",
            create_without_addresses_leaves_nothing,
        ),
        (
            "create_with_failing_vmm_leaves_nothing",
            create_with_failing_vmm_leaves_nothing,
        ),
        (
            "create_with_failing_network_leaves_nothing",
            create_with_failing_network_leaves_nothing,
        ),
        (
            "create_ssh_timeout_keeps_the_vm",
            create_ssh_timeout_keeps_the_vm,
        ),
        ("deleted_image_cannot_start", deleted_image_cannot_start),
        (
            "create_vmm_dies_during_ssh_wait_leaves_nothing",
            vmm_exit::create_vmm_dies_during_ssh_wait_leaves_nothing,
        ),
        (
            "start_vmm_dies_during_ssh_wait_marks_error",
            vmm_exit::start_vmm_dies_during_ssh_wait_marks_error,
        ),
        (
            "a_stopped_vmm_is_reported_and_stop_kill_start_delete_work",
            vmm_faults::a_stopped_vmm_is_reported_and_stop_kill_start_delete_work,
        ),
        (
            "a_dead_helper_is_reported_and_a_restart_brings_a_new_one",
            vmm_faults::a_dead_helper_is_reported_and_a_restart_brings_a_new_one,
        ),
        (
            "a_recycled_vmm_pid_is_never_signalled",
            vmm_faults::a_recycled_vmm_pid_is_never_signalled,
        ),
        (
            "create_on_a_full_disk_fails_clearly_and_harms_nothing",
            disk_full::create_on_a_full_disk_fails_clearly_and_harms_nothing,
        ),
        (
            "pause_resume_stop_and_delete_a_paused_vm",
            pause::pause_resume_stop_and_delete_a_paused_vm,
        ),
        (
            "snapshots_restore_and_a_failed_fork_leave_nothing_behind",
            snapshot::snapshots_restore_and_a_failed_fork_leave_nothing_behind,
        ),
        (
            "a_killed_vmm_is_noticed_reaped_and_recorded_within_2s",
            vmm_watch::a_killed_vmm_is_noticed_reaped_and_recorded_within_2s,
        ),
        (
            "an_adopted_vmm_that_is_killed_is_noticed_within_2s",
            vmm_watch::an_adopted_vmm_that_is_killed_is_noticed_within_2s,
        ),
        (
            "a_stop_on_purpose_is_not_recorded_by_the_watcher",
            vmm_watch::a_stop_on_purpose_is_not_recorded_by_the_watcher,
        ),
        (
            "forced_delete_ends_a_create_stuck_waiting_for_ssh",
            forced::forced_delete_ends_a_create_stuck_waiting_for_ssh,
        ),
        (
            "kill_does_not_wait_for_a_create_stuck_waiting_for_ssh",
            forced::kill_does_not_wait_for_a_create_stuck_waiting_for_ssh,
        ),
        (
            "restart_with_only_never_started_vms_leaves_the_host_network_alone",
            forced::restart_with_only_never_started_vms_leaves_the_host_network_alone,
        ),
        (
            "create_refuses_an_orphan_directory_and_keeps_it",
            orphans::create_refuses_an_orphan_directory_and_keeps_it,
        ),
        (
            "delete_removes_only_the_directory_named_after_the_vm",
            orphans::delete_removes_only_the_directory_named_after_the_vm,
        ),
        (
            "adopt_reregisters_an_orphan_that_starts_and_deletes",
            adopt::adopt_reregisters_an_orphan_that_starts_and_deletes,
        ),
        (
            "adopt_refuses_what_is_not_an_orphan_and_changes_nothing",
            adopt::adopt_refuses_what_is_not_an_orphan_and_changes_nothing,
        ),
        (
            "create_with_a_fifo_for_rootfs_fails_at_once_and_leaves_nothing",
            boot_files::create_with_a_fifo_for_rootfs_fails_at_once_and_leaves_nothing,
        ),
        (
            "create_refuses_an_image_changed_since_it_was_checked",
            image_change::create_refuses_an_image_changed_since_it_was_checked,
        ),
        (
            "create_with_a_symlinked_rootfs_is_refused",
            boot_files::create_with_a_symlinked_rootfs_is_refused,
        ),
        (
            "usage_and_prunes_remove_only_what_nothing_uses",
            space::usage_and_prunes_remove_only_what_nothing_uses,
        ),
    ])
}

/// A daemon with the image installed.
pub(crate) fn ready(world: &World, fakes: Fakes) -> bangerd::state::AppState {
    let state = world.daemon(fakes);
    world.install_image(&state);
    state
}

/// A daemon's clean stop deletes its TAP pool's spares and nothing else:
/// the running VM keeps its TAP, and no TAP is left for nobody.
fn a_clean_stop_leaves_no_spare_taps() {
    let mut world = World::new();
    world.config.tap_pool_size = 3;
    let state = ready(&world, Fakes::Working);
    world.block_on(async {
        create(&state, "lc-spares", false, false)
            .await
            .expect("create");
        let vm = show(&state, "lc-spares");
        let tap = vm.tap.expect("the VM's TAP");
        // The pool refills in the background: wait for its spares.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while world.net.taps().len() < 4 {
            assert!(
                std::time::Instant::now() < deadline,
                "the pool never refilled: {:?}",
                world.net.taps().keys().collect::<Vec<_>>()
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        vms::release_spare_taps(&state).await;
        let left: Vec<String> = world.net.taps().keys().map(ToString::to_string).collect();
        assert_eq!(left, [tap], "only the running VM's TAP is left");
        vms::delete(&state, &vm_name("lc-spares"), true)
            .await
            .expect("delete");
        assert!(world.net.taps().is_empty(), "{:?}", world.net.taps());
    });
}

fn create_starts_a_running_vm() {
    let world = World::new();
    let state = ready(&world, Fakes::Working);
    world.block_on(async {
        let created = create(&state, "lc-create", false, true)
            .await
            .expect("create");
        assert_eq!(created.state, VmState::Running);
        let vm = world.assert_running(&state, "lc-create");
        assert_eq!(vm.name.to_string(), "lc-create");
        assert_eq!(
            vm.ip.to_string(),
            "10.213.7.2",
            "first address after the bridge"
        );
        assert!(vm.nat);
        assert!(world.net.ip_forward(), "a NAT guest turns forwarding on");
        let bridges = world.net.bridges();
        let bridge = bridges.get(world::BRIDGE).expect("the bridge was set up");
        assert!(bridge.addresses.contains(&(state.config().bridge_ip, 24)));
        vms::delete(&state, &vm_name("lc-create"), true)
            .await
            .expect("delete");
        world.assert_gone(&state, "lc-create");
    });
}

fn stop_then_start_again() {
    let world = World::new();
    let state = ready(&world, Fakes::Working);
    let name = vm_name("lc-stop");
    world.block_on(async {
        create(&state, "lc-stop", false, false)
            .await
            .expect("create");
        let first = world.assert_running(&state, "lc-stop");
        let stopped = vms::stop(&state, &name).await.expect("stop");
        assert_eq!(stopped.state, VmState::Stopped);
        let vm = world.assert_stopped(&state, "lc-stop");
        assert_eq!(vm.last_error, None, "a clean stop records no error");
        assert!(world.net.taps().is_empty(), "the TAP was released");
        let rules = world.net.firewall().expect("rules were applied");
        assert!(rules.guests.is_empty(), "{:?}", rules.guests);
        vms::stop(&state, &name)
            .await
            .expect("stopping a stopped VM is a no-op");

        vms::start(&state, &name, &ProgressSink::discard())
            .await
            .expect("start again");
        let second = world.assert_running(&state, "lc-stop");
        assert_ne!(first.pid, second.pid, "a new VMM");
        assert_eq!(second.ip.to_string(), first.ip.to_string(), "same address");
        let again = vms::start(&state, &name, &ProgressSink::discard()).await;
        let error = again.expect_err("starting a running VM is refused");
        assert_eq!(error.code(), ErrorCode::Conflict, "{}", chain(&error));
        vms::stop(&state, &name).await.expect("stop");
        vms::delete(&state, &name, false).await.expect("delete");
        world.assert_gone(&state, "lc-stop");
    });
}

fn kill_with_term_and_with_kill() {
    let world = World::new();
    let state = ready(&world, Fakes::Working);
    let name = vm_name("lc-kill");
    world.block_on(async {
        create(&state, "lc-kill", false, false)
            .await
            .expect("create");
        for signal in [Some(VmSignal::Term), None] {
            let pid = world.assert_running(&state, "lc-kill").pid;
            let killed = vms::kill(&state, &name, signal).await.expect("kill");
            assert_eq!(killed.state, VmState::Stopped, "{signal:?}");
            let vm = world.assert_stopped(&state, "lc-kill");
            let expected = format!("killed with {}", signal.unwrap_or(VmSignal::Kill));
            assert_eq!(vm.last_error.as_deref(), Some(expected.as_str()));
            assert!(!harness::is_live(pid.unwrap_or_default()), "{signal:?}");
            if signal.is_some() {
                vms::start(&state, &name, &ProgressSink::discard())
                    .await
                    .expect("start after kill");
            }
        }
        let error = vms::kill(&state, &name, None)
            .await
            .expect_err("nothing to kill");
        assert_eq!(error.code(), ErrorCode::Conflict, "{}", chain(&error));
        vms::delete(&state, &name, false).await.expect("delete");
        world.assert_gone(&state, "lc-kill");
    });
}

fn restart_replaces_the_vmm() {
    let world = World::new();
    let state = ready(&world, Fakes::Working);
    let name = vm_name("lc-restart");
    world.block_on(async {
        create(&state, "lc-restart", false, false)
            .await
            .expect("create");
        let before = world.assert_running(&state, "lc-restart");
        vms::restart(&state, &name, &ProgressSink::discard())
            .await
            .expect("restart a running VM");
        let after = world.assert_running(&state, "lc-restart");
        assert_ne!(before.pid, after.pid);
        assert!(
            !harness::is_live(before.pid.unwrap_or_default()),
            "old VMM still runs"
        );

        vms::stop(&state, &name).await.expect("stop");
        world.assert_stopped(&state, "lc-restart");
        vms::restart(&state, &name, &ProgressSink::discard())
            .await
            .expect("restart a stopped VM");
        world.assert_running(&state, "lc-restart");
        vms::delete(&state, &name, true).await.expect("delete");
        world.assert_gone(&state, "lc-restart");
    });
}

fn delete_needs_force_while_running() {
    let world = World::new();
    let state = ready(&world, Fakes::Working);
    world.block_on(async {
        create(&state, "lc-del-run", false, false)
            .await
            .expect("create");
        create(&state, "lc-del-new", true, false)
            .await
            .expect("create without start");
        let created = show(&state, "lc-del-new");
        assert_eq!(created.state, VmState::Created);
        assert_eq!(created.tap, None);
        world.assert_network_matches(&state);

        let refused = vms::delete(&state, &vm_name("lc-del-run"), false).await;
        let error = refused.expect_err("a running VM needs --force");
        assert_eq!(error.code(), ErrorCode::Conflict, "{}", chain(&error));
        world.assert_running(&state, "lc-del-run");

        let deleted = vms::delete(&state, &vm_name("lc-del-run"), true)
            .await
            .expect("force delete");
        assert_eq!(deleted.name.to_string(), "lc-del-run");
        world.assert_gone(&state, "lc-del-run");
        vms::delete(&state, &vm_name("lc-del-new"), false)
            .await
            .expect("delete a created VM");
        world.assert_gone(&state, "lc-del-new");
        assert!(vms::list(&state).expect("list").is_empty());
    });
}

fn recover_adopts_then_retires() {
    let world = World::new();
    let first = ready(&world, Fakes::Working);
    let vm = world.block_on(async {
        create(&first, "lc-recover", false, true)
            .await
            .expect("create");
        world.assert_running(&first, "lc-recover")
    });
    drop(first);
    // A TAP some earlier daemon leaked: recovery must delete it.
    let leaked = banger_host::net::names::TapName::new(7);
    let bridge = banger_host::net::names::BridgeName::new(world::BRIDGE).expect("bridge name");
    world.block_on(async {
        use banger_host::privileged::PrivilegedOps;
        world
            .net
            .create_tap(&leaked, 0, &bridge)
            .await
            .expect("leak a TAP");
    });

    world.block_on(async {
        let second = world.restart().await;
        let adopted = world.assert_running(&second, "lc-recover");
        assert_eq!(adopted.pid, vm.pid, "the same VMM was adopted");
        assert_eq!(adopted.tap, vm.tap, "its TAP was kept");
        assert!(
            !world.net.taps().contains_key(&leaked),
            "the leaked TAP is gone"
        );
    });

    // The VMM dies while no daemon runs; its console copier follows by itself.
    let pid = vm.pid.expect("VMM pid");
    harness::kill_and_reap(pid);
    assert!(!harness::is_live(pid), "VMM {pid} survived SIGKILL");

    world.block_on(async {
        let third = world.restart().await;
        let retired = world.assert_stopped(&third, "lc-recover");
        let reason = retired.last_error.unwrap_or_default();
        assert!(
            reason.contains("exited while bangerd was not running"),
            "{reason}"
        );
        vms::delete(&third, &vm_name("lc-recover"), false)
            .await
            .expect("delete");
        world.assert_gone(&third, "lc-recover");
    });
}

/// Every create below fails; afterwards nothing of the VM may exist.
fn assert_failed_create(
    world: &World,
    state: &bangerd::state::AppState,
    name: &str,
    result: Result<banger_api::vms::VmInfo, VmError>,
    code: ErrorCode,
) {
    let error = result.expect_err("the create must fail");
    assert_eq!(error.code(), code, "{}", chain(&error));
    world.assert_gone(state, name);
}

fn create_unknown_image_leaves_nothing() {
    let world = World::new();
    let state = ready(&world, Fakes::Working);
    world.block_on(async {
        let request = serde_json::from_value(serde_json::json!({
            "name": "lc-noimage",
            "image": "no-such-image",
        }))
        .expect("request");
        let result = vms::create(&state, &request, &ProgressSink::discard()).await;
        assert_failed_create(&world, &state, "lc-noimage", result, ErrorCode::NotFound);
        assert!(world.net.taps().is_empty());
        assert_eq!(world.net.count(CallKind::CreateTap), 0);
    });
}

fn create_taken_name_leaves_nothing() {
    let world = World::new();
    let state = ready(&world, Fakes::Working);
    world.block_on(async {
        create(&state, "lc-taken", false, false)
            .await
            .expect("create");
        let original = world.assert_running(&state, "lc-taken");
        let keys = world.known_host_keys("lc-taken");
        let error = create(&state, "lc-taken", false, false)
            .await
            .expect_err("the name is taken");
        assert_eq!(error.code(), ErrorCode::Conflict, "{}", chain(&error));
        let after = world.assert_running(&state, "lc-taken");
        assert_eq!(after.pid, original.pid, "the VM was not touched");
        assert_eq!(after.tap, original.tap);
        assert_eq!(after.created_at, original.created_at);
        assert_eq!(
            world.known_host_keys("lc-taken"),
            keys,
            "its host key stays"
        );
        assert_eq!(vms::list(&state).expect("list").len(), 1);
        assert_eq!(world.net.count(CallKind::CreateTap), 1, "no second TAP");
        vms::delete(&state, &vm_name("lc-taken"), true)
            .await
            .expect("delete");
        world.assert_gone(&state, "lc-taken");
    });
}

fn create_without_addresses_leaves_nothing() {
    let mut world = World::new();
    // A /30 holds two hosts: the bridge and one guest.
    world.config.cidr.prefix = 30;
    let state = ready(&world, Fakes::Working);
    world.block_on(async {
        create(&state, "lc-first", true, false)
            .await
            .expect("the one address");
        let result = create(&state, "lc-second", false, false).await;
        assert_failed_create(&world, &state, "lc-second", result, ErrorCode::Unavailable);
        assert_eq!(vms::list(&state).expect("list").len(), 1);
        assert_eq!(world.net.count(CallKind::CreateTap), 0);
    });
}

fn create_with_failing_vmm_leaves_nothing() {
    let world = World::new();
    let state = ready(&world, Fakes::VmmExits);
    world.block_on(async {
        let result = create(&state, "lc-vmmfail", false, false).await;
        let error = result.as_ref().err().map(chain).unwrap_or_default();
        assert!(
            error.contains("exiting at once"),
            "the VMM's words reach the error: {error}"
        );
        assert_failed_create(&world, &state, "lc-vmmfail", result, ErrorCode::Internal);
        assert_eq!(world.net.count(CallKind::CreateTap), 1, "a TAP was taken");
        assert!(world.net.taps().is_empty(), "and given back");
        assert!(vms::list(&state).expect("list").is_empty());
    });
}

fn create_with_failing_network_leaves_nothing() {
    let world = World::new();
    let state = ready(&world, Fakes::Working);
    world.block_on(async {
        for (kind, name) in [
            (CallKind::CreateTap, "lc-tapfail"),
            (CallKind::ApplyFirewall, "lc-fwfail"),
        ] {
            world.net.fail_next(kind);
            let result = create(&state, name, false, false).await;
            assert_failed_create(&world, &state, name, result, ErrorCode::Internal);
        }
        assert!(world.net.taps().is_empty());
        // The network works again: the next create succeeds.
        create(&state, "lc-netok", false, false)
            .await
            .expect("create");
        world.assert_running(&state, "lc-netok");
        vms::delete(&state, &vm_name("lc-netok"), true)
            .await
            .expect("delete");
        world.assert_gone(&state, "lc-netok");
    });
}

fn create_ssh_timeout_keeps_the_vm() {
    let world = World::new();
    let state = ready(&world, Fakes::SshNeverAnswers);
    world.block_on(async {
        let error = create(&state, "lc-nossh", false, false)
            .await
            .expect_err("SSH never answers");
        assert_eq!(error.code(), ErrorCode::SshTimeout, "{}", chain(&error));
        assert!(matches!(error, VmError::SshTimeout { .. }), "{error:?}");
        // Kept for inspection: exactly a running VM that says why.
        let vm = world.assert_running(&state, "lc-nossh");
        let reason = vm.last_error.clone().unwrap_or_default();
        assert!(reason.starts_with("SSH did not answer"), "{reason}");
        assert!(
            reason.contains("never answers"),
            "the waiter's words: {reason}"
        );
        let refused = vms::delete(&state, &vm_name("lc-nossh"), false).await;
        assert_eq!(refused.expect_err("running").code(), ErrorCode::Conflict);
        vms::delete(&state, &vm_name("lc-nossh"), true)
            .await
            .expect("delete");
        world.assert_gone(&state, "lc-nossh");
    });
}

fn deleted_image_cannot_start() {
    let world = World::new();
    let state = ready(&world, Fakes::Working);
    let name = vm_name("lc-orphan");
    world.block_on(async {
        create(&state, "lc-orphan", false, false)
            .await
            .expect("create");
        vms::stop(&state, &name).await.expect("stop");
        let image = banger_api::ImageName::parse(world::IMAGE).expect("image name");
        let refused = bangerd::images::delete(&state, &image, false);
        assert!(refused.is_err(), "an image in use needs --force");
        let deleted = bangerd::images::delete(&state, &image, true).expect("force delete");
        assert_eq!(deleted.broken_vms.len(), 1, "{:?}", deleted.broken_vms);
        let calls = world.net.calls().len();
        let error = vms::start(&state, &name, &ProgressSink::discard())
            .await
            .expect_err("its image is gone");
        assert_eq!(error.code(), ErrorCode::Conflict, "{}", chain(&error));
        assert!(matches!(error, VmError::ImageGone { .. }), "{error:?}");
        let vm = world.assert_stopped(&state, "lc-orphan");
        assert_eq!(vm.image, None);
        assert_eq!(world.net.calls().len(), calls, "nothing was attempted");
        vms::delete(&state, &name, false).await.expect("delete");
        world.assert_gone(&state, "lc-orphan");
    });
}
