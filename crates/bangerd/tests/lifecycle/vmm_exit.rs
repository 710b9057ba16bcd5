//! A VMM that exits while create or start waits for SSH (kernel panic, VMM
//! error, SIGKILL) ends the wait at once: the call fails with the exit
//! status and the console's last lines, a create leaves nothing, and a start
//! leaves the VM in `error`, without TAP or process, ready to start again.
//!
//! The daemons here wait for SSH with [`KillingSsh`]: armed with a VM's
//! name, it waits until that VM's fake Firecracker printed its boot line on
//! the console, SIGKILLs it (without reaping it: that is the daemon's job)
//! and never answers.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use banger_api::ErrorCode;
use banger_api::vms::VmState;
use banger_config::Paths;
use banger_host::kvm::KvmVerdict;
use banger_host::ssh::wait::SshWaitError;
use banger_vmm::console::CopierCommand;
use banger_vmm::process::{ProcessIdentity, Signal};
use banger_vmm::{Accel, FirecrackerVmm, Vmm};
use bangerd::host::{Host, HostParts, NetworkSource, SshWaitFuture, SshWaiter};
use bangerd::progress::ProgressSink;
use bangerd::state::AppState;
use bangerd::store::Store;
use bangerd::vms::{self, VmError};

use crate::harness::{inside, is_live, processes_mentioning};
use crate::world::{World, chain, create, show, vm_name};

/// Far longer than any case takes: finishing in seconds proves the wait
/// was cut short by the VMM's exit, not by the timeout.
const SSH_TIMEOUT: Duration = Duration::from_secs(120);
/// What "at once" means here (the VMM's exit is polled every 50 ms; the
/// console copier gets up to 2 s to drain).
const PROMPTLY: Duration = Duration::from_secs(15);
/// The line the fake Firecracker writes on its console after `InstanceStart`.
const BOOT_LINE: &str = "fake-firecracker: guest started";

/// Answers SSH at once, unless armed with a VM name: then kills that VM's
/// VMM once its guest "started" and never answers (failing after the timeout,
/// as the real probe does).
struct KillingSsh {
    paths: Paths,
    target: Mutex<Option<String>>,
}

impl KillingSsh {
    fn arm(&self, name: &str) {
        *self.target.lock().unwrap_or_else(|e| e.into_inner()) = Some(name.to_owned());
    }
}

impl SshWaiter for KillingSsh {
    fn wait(&self, ip: Ipv4Addr, timeout: Duration) -> SshWaitFuture<'_> {
        let target = self.target.lock().unwrap_or_else(|e| e.into_inner()).take();
        Box::pin(async move {
            let Some(name) = target else {
                return Ok(Duration::ZERO);
            };
            let name = vm_name(&name);
            let log = vms::console_log(&vms::vm_dir(&self.paths.state_dir, &name));
            let run_dir = vms::run_dir(&self.paths.runtime_dir, &name);
            let deadline = Instant::now() + Duration::from_secs(10);
            while !fs_err::read_to_string(&log).is_ok_and(|text| text.contains(BOOT_LINE)) {
                assert!(Instant::now() < deadline, "{name} never booted");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let vmms: Vec<_> = processes_mentioning(&inside(&run_dir))
                .into_iter()
                .filter(|process| process.cmdline.contains("--api-sock"))
                .collect();
            assert_eq!(vmms.len(), 1, "one VMM of {name}: {vmms:?}");
            let vmm = ProcessIdentity::of(vmms[0].pid).expect("identify the VMM");
            assert!(vmm.signal(Signal::KILL).expect("SIGKILL the VMM"));
            tokio::time::sleep(timeout).await;
            Err(SshWaitError {
                addr: SocketAddrV4::new(ip, 22),
                waited: timeout,
                attempts: 1,
                last_failure: "the lifecycle test killed the VMM".into(),
            })
        })
    }
}

/// A daemon like `World::daemon(Fakes::Working)` but waiting for SSH with
/// [`KillingSsh`], a long timeout and an in-memory database; the image is
/// installed.
fn daemon(world: &World) -> (AppState, Arc<KillingSsh>) {
    let exe = std::env::current_exe().expect("this test binary");
    let vmm = Vmm::Firecracker(FirecrackerVmm {
        firecracker_bin: exe.clone(),
        copier: CopierCommand {
            program: exe,
            args: vec!["console-copier".into()],
        },
    });
    let ssh = Arc::new(KillingSsh {
        paths: world.paths.clone(),
        target: Mutex::new(None),
    });
    let host = Host::with_parts(
        &world.config,
        HostParts {
            network: NetworkSource::Ops(world.net.clone()),
            vmm: Some((vmm, Accel::Kvm)),
            ssh: ssh.clone(),
            ssh_timeout: SSH_TIMEOUT,
            kvm: KvmVerdict {
                accessible: true,
                probe_ran: true,
                can_run_guests: true,
                detail: "faked by the lifecycle test".into(),
            },
            agent: None,
        },
    );
    // One daemon per case and no restart: an in-memory database does.
    let store = Store::open_in_memory().expect("open the database");
    let (shutdown, _) = tokio::sync::watch::channel(false);
    let state = AppState::new(
        world.paths.clone(),
        world.config.clone(),
        store,
        host,
        shutdown,
    );
    world.install_image(&state);
    (state, ssh)
}

/// The error says what happened: the VMM's exit status, the console's last
/// lines, where the whole console is.
fn assert_vmm_exited(name: &str, error: &VmError) {
    let text = chain(error);
    assert!(matches!(error, VmError::VmmExited { .. }), "{text}");
    assert_eq!(error.code(), ErrorCode::Internal, "{text}");
    assert!(text.contains("killed by signal 9"), "exit status: {text}");
    assert!(text.contains(BOOT_LINE), "console tail: {text}");
    assert!(
        text.contains(&format!("banger vm logs {name}")),
        "points at the logs: {text}"
    );
}

pub fn create_vmm_dies_during_ssh_wait_leaves_nothing() {
    let world = World::new();
    let (state, ssh) = daemon(&world);
    world.block_on(async {
        ssh.arm("lc-vmmdies");
        let started = Instant::now();
        let error = create(&state, "lc-vmmdies", false, false)
            .await
            .expect_err("the VMM died");
        let took = started.elapsed();
        assert!(took < PROMPTLY, "the wait ran on for {took:?}");
        assert_vmm_exited("lc-vmmdies", &error);
        world.assert_gone(&state, "lc-vmmdies");
        assert!(world.net.taps().is_empty(), "the TAP was given back");
        assert!(vms::list(&state).expect("list").is_empty());
    });
}

pub fn start_vmm_dies_during_ssh_wait_marks_error() {
    let world = World::new();
    let (state, ssh) = daemon(&world);
    let name = vm_name("lc-startdies");
    world.block_on(async {
        create(&state, "lc-startdies", false, false)
            .await
            .expect("create");
        vms::stop(&state, &name).await.expect("stop");
        world.assert_stopped(&state, "lc-startdies");

        ssh.arm("lc-startdies");
        let started = Instant::now();
        let error = vms::start(&state, &name, &ProgressSink::discard())
            .await
            .expect_err("the VMM died");
        let took = started.elapsed();
        assert!(took < PROMPTLY, "the wait ran on for {took:?}");
        assert_vmm_exited("lc-startdies", &error);

        let vm = show(&state, "lc-startdies");
        assert_eq!(vm.state, VmState::Error, "{vm:?}");
        let reason = vm.last_error.clone().unwrap_or_default();
        assert!(reason.contains("killed by signal 9"), "{reason}");
        assert_eq!(vm.pid, None);
        assert_eq!(vm.tap, None);
        assert!(world.net.taps().is_empty(), "the TAP was given back");
        assert!(
            !world.run_dir("lc-startdies").exists(),
            "the runtime dir is left"
        );
        world.assert_no_processes("lc-startdies");
        world.assert_network_matches(&state);
        for file in ["overlay.ext4", "work.ext4", "console.log"] {
            assert!(
                world.vm_dir("lc-startdies").join(file).is_file(),
                "{file} is kept"
            );
        }

        vms::start(&state, &name, &ProgressSink::discard())
            .await
            .expect("start again");
        let vm = world.assert_running(&state, "lc-startdies");
        assert!(is_live(vm.pid.unwrap_or_default()));
        assert_eq!(vm.last_error, None, "a good start clears the reason");
        vms::delete(&state, &name, true).await.expect("delete");
        world.assert_gone(&state, "lc-startdies");
    });
}
