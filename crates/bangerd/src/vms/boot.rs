//! `vm start`: TAP, per-VM initrd, VMM, then wait until SSH answers, or
//! until the VMM exits, whichever comes first.

use std::path::{Path, PathBuf};
use std::time::Duration;

use banger_api::VmName;
use banger_api::vms::{VmBackend, VmInfo, VmState};
use banger_host::disk::BootFileKind;
use banger_image::guest_config::{GuestConfig, NetworkConfig, SshHostKey};
use banger_vmm::{BackendKind, DiskSpec, ExitInfo, NetSpec, RunningVm, VmSpec};

use super::{
    CONSOLE_LOG_MAX_BYTES, VmError, console_log, describe_exit, info, row, run_dir, set_state,
};
use crate::progress::ProgressSink;
use crate::state::AppState;
use crate::step_timer::StepTimer;
use crate::store::{VmRow, VmmHandle};

/// Starts a VM (taking its lock) and waits for SSH.
pub async fn start(
    state: &AppState,
    name: &VmName,
    progress: &ProgressSink,
) -> Result<VmInfo, VmError> {
    let lock = state.vm_lock(name);
    let _guard = lock.lock().await;
    start_locked(state, name, progress).await
}

/// [`start`] for callers holding the VM's lock.
pub async fn start_locked(
    state: &AppState,
    name: &VmName,
    progress: &ProgressSink,
) -> Result<VmInfo, VmError> {
    start_locked_with_disks(state, name, progress, &mut None).await
}

/// A new VM's disks, still being made on a worker thread (see
/// `create`): the first start waits for them before its VMM runs.
#[derive(Debug)]
pub(super) struct PendingDisks(pub(super) tokio::task::JoinHandle<Result<(), VmError>>);

/// Waits for `pending` disks, if any (once: the slot is emptied).
pub(super) async fn wait_for_disks(
    name: &VmName,
    pending: &mut Option<PendingDisks>,
) -> Result<(), VmError> {
    match pending.take() {
        None => Ok(()),
        Some(PendingDisks(task)) => match task.await {
            Ok(result) => result,
            Err(join) => Err(VmError::step(name, "prepare its disks", join)),
        },
    }
}

/// [`start_locked`] of a new VM whose disks may still be `pending`.
pub(super) async fn start_locked_with_disks(
    state: &AppState,
    name: &VmName,
    progress: &ProgressSink,
    pending: &mut Option<PendingDisks>,
) -> Result<VmInfo, VmError> {
    let mut timer = StepTimer::start("start", name.as_str());
    let mut vm = row(&state.store(), name)?;
    // A VMM that may still run must never get a twin on the same disks.
    super::recorded_vmm(&vm)?;
    if vm.state == VmState::Paused {
        return super::pause::resume_locked(state, name, progress).await;
    }
    if !vm.state.can_start() {
        return Err(VmError::WrongState {
            name: name.clone(),
            state: vm.state,
            hint: "there is nothing to start (`banger vm restart` restarts it)",
        });
    }
    let host = state.host();
    let unavailable = |source| VmError::HostUnavailable {
        name: name.to_string(),
        source,
    };
    let network = host.network().await.map_err(unavailable)?;
    let (vmm, accel) = host.vmm(state.config()).map_err(unavailable)?;
    let boot = boot_files(state, &vm, vmm.kind())?;

    set_state(state, &mut vm, VmState::Starting, None)?;
    progress.stage(
        "network",
        format!("attaching VM {name} to bridge {}", network.bridge),
    );
    timer.step("checks");
    let spec = prepare_launch(state, &mut vm, network, boot, vmm.kind(), accel, &mut timer).await?;
    if let Err(error) = wait_for_disks(name, pending).await {
        return fail(state, &mut vm, error).await;
    }
    timer.step("disks");
    progress.stage(
        "boot",
        format!(
            "starting {} ({} vCPU, {} MiB)",
            backend_name(vmm.kind()),
            vm.vcpus,
            vm.memory_mib
        ),
    );
    let running = launch(state, &mut vm, vmm.start(&spec)).await?;
    timer.step("vmm");
    crate::fault::point("boot.after_vmm_spawn");
    vm.backend = Some(backend_name(running.backend));
    vm.vmm = VmmHandle::Recorded(Box::new(running.clone()));
    if let Err(error) = set_state(state, &mut vm, VmState::Running, None) {
        // An unrecorded VMM would run on unseen: stop it before failing.
        let _ = running.stop(Duration::from_secs(5)).await;
        let _ = running.cleanup().await;
        vm.vmm = VmmHandle::None;
        return fail(state, &mut vm, error).await;
    }
    tracing::info!(vm = %name, pid = running.vmm.pid, backend = ?running.backend, "VMM started");
    // From now on its exit is noticed, whatever this call does next (it may
    // end with the VM left running, e.g. when SSH does not answer). While
    // this call holds the lock the watcher records nothing: the wait below
    // sees the exit too and records it itself.
    super::monitor::watch(state, name, &running);
    timer.step("record");
    crate::fault::point("boot.before_ssh");

    progress.stage(
        "ssh",
        format!(
            "waiting for SSH on {} (a first boot takes a while under emulation)",
            vm.ip
        ),
    );
    // A VMM that dies meanwhile (kernel panic, VMM error, kill) ends the
    // wait at once instead of leaving a dead VM `running` until the timeout.
    let waited = tokio::select! {
        biased;
        answer = host.wait_for_ssh(vm.ip) => Ok(answer),
        exit = vmm_exit(&running) => Err(exit),
    };
    timer.step("ssh");
    let answer = match waited {
        Ok(answer) => answer,
        Err(exit) => return vmm_exited(state, &mut vm, &running, exit).await,
    };
    match answer {
        Ok(took) => {
            progress.stage(
                "ready",
                format!("VM {name} answers on SSH after {:.1} s", took.as_secs_f64()),
            );
            Ok(info(state, &vm))
        }
        Err(error) => {
            let message = format!("SSH did not answer: {}", crate::error::error_chain(&error));
            vm.last_error = Some(message);
            state.store().update_vm(&vm)?;
            Err(VmError::SshTimeout {
                name: name.clone(),
                waited_secs: host.ssh_timeout.as_secs(),
            })
        }
    }
}

/// How many console lines a start whose VMM died reports.
const CONSOLE_TAIL_LINES: usize = 20;
/// How much of the end of each console file is read for them.
const CONSOLE_TAIL_BYTES: u64 = 16 << 10;

/// Resolves once the VMM has exited (awaiting its pidfd, not polling), with
/// how: it is our child, so the status is real even when the watcher reaped
/// it first.
pub(super) async fn vmm_exit(running: &RunningVm) -> ExitInfo {
    running.watch_exit().exited().await
}

/// Records a start whose VMM exited before SSH answered: helpers stopped,
/// then (see [`fail`]) TAP released, runtime dir removed, firewall rebuilt,
/// the VM in `error` with the exit status and the console's last lines.
pub(super) async fn vmm_exited(
    state: &AppState,
    vm: &mut VmRow,
    running: &RunningVm,
    exit: ExitInfo,
) -> Result<VmInfo, VmError> {
    tracing::warn!(vm = %vm.name, exit = %describe_exit(Some(exit)), "VMM exited while waiting for SSH");
    // Also lets the console copier write the last words before they are read.
    if let Err(error) = running.cleanup().await {
        tracing::warn!(vm = %vm.name, error = %crate::error::error_chain(&error), "cleanup after the VMM exited failed");
    }
    let log = console_log(&vm.dir);
    let console_tail = tokio::task::spawn_blocking(move || console_tail(&log, CONSOLE_TAIL_LINES))
        .await
        .unwrap_or_default();
    let error = VmError::VmmExited {
        name: vm.name.clone(),
        exit: Some(exit),
        console_tail,
    };
    fail(state, vm, error).await
}

/// The last `lines` lines of a console log (its rotated copy first), read
/// bounded and decoded lossily, with control characters escaped so guest
/// output cannot forge lines or send terminal sequences.
fn console_tail(log: &Path, lines: usize) -> String {
    let mut bytes = read_end(&banger_vmm::console::rotated_path(log), CONSOLE_TAIL_BYTES);
    bytes.extend(read_end(log, CONSOLE_TAIL_BYTES));
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text
        .split('\n')
        .map(|line| line.trim_end_matches('\r'))
        .collect();
    let all = match all.split_last() {
        Some((&"", rest)) => rest,
        _ => &all[..],
    };
    let tail: Vec<String> = all[all.len().saturating_sub(lines)..]
        .iter()
        .map(|line| {
            let mut text = String::with_capacity(line.len());
            for c in line.chars() {
                if c.is_control() && c != '\t' {
                    text.extend(c.escape_default());
                } else {
                    text.push(c);
                }
            }
            text
        })
        .collect();
    if tail.iter().all(|line| line.trim().is_empty()) {
        return "(the console log is empty)".to_owned();
    }
    tail.join("\n")
}

/// Up to the last `max` bytes of a regular file; nothing for anything else
/// (a FIFO or device in its place must not hang the daemon) or on errors.
fn read_end(path: &Path, max: u64) -> Vec<u8> {
    use fs_err::os::unix::fs::OpenOptionsExt;
    use std::io::{Read, Seek, SeekFrom};
    let open = fs_err::OpenOptions::new()
        .read(true)
        .custom_flags(no_follow_no_block())
        .open(path);
    let Ok(mut file) = open else {
        return Vec::new();
    };
    let len = match file.metadata() {
        Ok(meta) if meta.is_file() => meta.len(),
        _ => return Vec::new(),
    };
    let mut bytes = Vec::new();
    if file.seek(SeekFrom::Start(len.saturating_sub(max))).is_err() {
        return Vec::new();
    }
    let _ = file.take(max).read_to_end(&mut bytes);
    bytes
}

/// `O_NOFOLLOW | O_NONBLOCK | O_NOCTTY` for `custom_flags`.
fn no_follow_no_block() -> i32 {
    use rustix::fs::OFlags;
    i32::try_from((OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY).bits()).unwrap_or(0)
}

pub(super) fn backend_name(kind: BackendKind) -> VmBackend {
    match kind {
        BackendKind::Qemu => VmBackend::Qemu,
        BackendKind::Firecracker => VmBackend::Firecracker,
    }
}

/// Records a failed start: releases the TAP, marks the VM as errored.
pub(super) async fn fail(
    state: &AppState,
    vm: &mut VmRow,
    error: VmError,
) -> Result<VmInfo, VmError> {
    Err(failed(state, vm, error).await)
}

/// What [`fail`] does, returning the error to report (the state write's
/// own error when recording `error` failed).
async fn failed(state: &AppState, vm: &mut VmRow, error: VmError) -> VmError {
    release_tap(state, vm).await;
    vm.vmm = VmmHandle::None;
    let message = crate::error::error_chain(&error);
    tracing::warn!(vm = %vm.name, error = %message, "start failed");
    if let Err(recording) = set_state(state, vm, VmState::Error, Some(message)) {
        return recording;
    }
    // The runtime dir holds the initrd with the VM's private host key.
    let _ = fs_err::remove_dir_all(run_dir(&state.paths().runtime_dir, &vm.name));
    if state.host().network_if_ready().is_some() {
        if let Err(error) = super::firewall::apply(state).await {
            tracing::warn!(vm = %vm.name, error = %crate::error::error_chain(&error), "cannot update firewall rules after a failed start");
        }
    }
    error
}

/// Runs `start` (the VMM's cold start) while the firewall rules are brought
/// up to date with the VM in them, and returns the running VMM once both
/// are done. If either fails, the VMM is stopped and the attempt ends
/// through [`fail`]. (A resume applies the rules first: see `pause`.)
///
/// Why at the same time: the rules are one `nft` transaction, 10-20 ms of
/// a start that otherwise takes 30. Until it lands, the VM's TAP has no
/// rules of its own, which withholds and never grants: its NAT accept is
/// not there yet, and every running guest's address is already kept from
/// other TAPs by that guest's rules (docs/networking.md). And a guest
/// cannot send a packet within milliseconds of its VMM's start anyway.
async fn launch(
    state: &AppState,
    vm: &mut VmRow,
    start: impl Future<Output = Result<RunningVm, banger_vmm::VmmError>>,
) -> Result<RunningVm, VmError> {
    let (firewall, started) = tokio::join!(super::firewall::apply(state), start);
    let name = vm.name.clone();
    match (started, firewall) {
        (Ok(running), Ok(())) => Ok(running),
        (Err(error), _) => {
            let error = VmError::step(&name, "start its VMM", error);
            Err(failed(state, vm, error).await)
        }
        (Ok(running), Err(error)) => {
            let _ = running.stop(Duration::from_secs(5)).await;
            let _ = running.cleanup().await;
            let error = VmError::step(&name, "apply its firewall rules", error);
            Err(failed(state, vm, error).await)
        }
    }
}

/// What a start and a resume do before their VMM runs: the VM (already
/// `starting`) gets a TAP from the pool, recorded on its row, DNS is ready
/// on the bridge, and its spec is built. A failed step ends the attempt
/// through [`fail`] and is returned. The firewall rules follow in
/// [`launch`].
pub(super) async fn prepare_launch(
    state: &AppState,
    vm: &mut VmRow,
    network: &crate::host::Network,
    boot: BootFiles,
    kind: BackendKind,
    accel: banger_vmm::Accel,
    timer: &mut StepTimer,
) -> Result<VmSpec, VmError> {
    let name = vm.name.clone();
    let tap = match network.pool.take().await {
        Ok(tap) => tap,
        Err(error) => {
            return Err(failed(state, vm, VmError::step(&name, "get a TAP device", error)).await);
        }
    };
    vm.tap = Some(tap.as_str().to_owned());
    state.store().update_vm(vm)?;
    crate::fault::point("boot.after_tap");
    crate::dns::bridge_ready(state).await;
    timer.step("tap");
    let run_dir = run_dir(&state.paths().runtime_dir, &name);
    let spec = {
        let (state, vm, tap_name) = (state.clone(), vm.clone(), tap.as_str().to_owned());
        tokio::task::spawn_blocking(move || {
            build_spec(&state, &vm, boot, &run_dir, kind, accel, tap_name)
        })
        .await
    };
    timer.step("boot_files");
    match spec {
        Ok(Ok(spec)) => Ok(spec),
        Ok(Err(error)) => Err(failed(state, vm, error).await),
        Err(join) => {
            let error = VmError::step(&name, "prepare its boot files", join);
            Err(failed(state, vm, error).await)
        }
    }
}

/// Gives the VM's TAP back (deleting it) and forgets it.
pub async fn release_tap(state: &AppState, vm: &mut VmRow) {
    let Some(tap) = vm.tap.take() else { return };
    if let (Some(network), Some(name)) = (
        state.host().network_if_ready(),
        banger_host::net::names::TapName::parse(&tap),
    ) {
        if let Err(error) = network.pool.release(&name).await {
            tracing::warn!(vm = %vm.name, tap, error = %crate::error::error_chain(&error), "cannot delete TAP");
        }
    }
}

/// The files a VM boots from.
#[derive(Debug, Clone)]
pub(super) struct BootFiles {
    kernel: PathBuf,
    initramfs: PathBuf,
    rootfs: PathBuf,
    modules_disk: Option<PathBuf>,
}

pub(super) fn boot_files(
    state: &AppState,
    vm: &VmRow,
    backend: BackendKind,
) -> Result<BootFiles, VmError> {
    let store = state.store();
    let gone = || VmError::ImageGone {
        name: vm.name.clone(),
        image: vm.image_name.clone(),
    };
    let image_id = vm.image_id.ok_or_else(gone)?;
    let image = store
        .images()?
        .into_iter()
        .find(|image| image.id == image_id)
        .ok_or_else(gone)?;
    let kernel = store.kernel_by_id(image.kernel_id)?.ok_or_else(gone)?;
    let kernel_file = match backend {
        BackendKind::Firecracker => kernel.vmlinux.clone(),
        BackendKind::Qemu => kernel.bzimage.clone().or_else(|| kernel.vmlinux.clone()),
    }
    .ok_or_else(|| VmError::KernelUnbootable {
        kernel: kernel.name.to_string(),
        backend: backend_name(backend),
    })?;
    let boot = BootFiles {
        kernel: kernel_file,
        initramfs: image.initrd.clone().unwrap_or(kernel.initramfs.clone()),
        rootfs: image.rootfs.clone(),
        modules_disk: kernel.modules_disk.clone(),
    };
    // Checked again at every start: the files may have changed since they
    // were registered, and nothing may read them (the initrd writer, the
    // VMM) before they are known to be plain files of the right kind.
    check_boot_file(&image.name, "kernel", &boot.kernel, BootFileKind::Kernel)?;
    check_boot_file(
        &image.name,
        "initrd",
        &boot.initramfs,
        BootFileKind::NonEmpty,
    )?;
    check_boot_file(&image.name, "rootfs", &boot.rootfs, BootFileKind::Ext4)?;
    if let Some(modules_disk) = &boot.modules_disk {
        check_boot_file(
            &image.name,
            "modules disk",
            modules_disk,
            BootFileKind::Ext4,
        )?;
    }
    Ok(boot)
}

/// [`banger_host::disk::check_boot_file`] as a [`VmError::BootFileInvalid`]
/// naming the image and the file's role.
pub(super) fn check_boot_file(
    image: &banger_api::ImageName,
    role: &'static str,
    path: &Path,
    kind: BootFileKind,
) -> Result<(), VmError> {
    banger_host::disk::check_boot_file(path, kind).map_err(|source| VmError::BootFileInvalid {
        image: image.clone(),
        role,
        source,
    })
}

fn read_text(vm: &VmName, path: &std::path::Path) -> Result<String, VmError> {
    fs_err::read_to_string(path).map_err(|error| VmError::step(vm, "read its SSH host key", error))
}

fn build_spec(
    state: &AppState,
    vm: &VmRow,
    boot: BootFiles,
    run_dir: &std::path::Path,
    backend: BackendKind,
    accel: banger_vmm::Accel,
    tap_name: String,
) -> Result<VmSpec, VmError> {
    let name = &vm.name;
    let config = state.config();
    banger_config::paths::ensure_private_dir(run_dir)
        .map_err(|error| VmError::step(name, "create its runtime dir", error))?;
    let user_key = banger_host::ssh::keys::ensure_user_key(&config.ssh_key_path)
        .map_err(|error| VmError::step(name, "load the SSH user key", error))?;
    // Fixed paths in the owner's home only (docs/vms.md, "Agent credentials").
    let auth_files = match &state.paths().home_dir {
        Some(home) => {
            let (files, problems) = banger_image::auth_files::read_from_home(home);
            for problem in problems {
                tracing::warn!(vm = %name, error = %crate::error::error_chain(&problem), "credential file not copied");
            }
            files
        }
        None => Vec::new(),
    };
    let guest = GuestConfig {
        hostname: name.to_string(),
        network: Some(NetworkConfig {
            address: vm.ip,
            prefix_len: config.cidr.prefix,
            gateway: Some(config.bridge_ip),
            // banger's DNS on the bridge answers `.vm`; the configured
            // servers answer the rest.
            dns: std::iter::once(std::net::IpAddr::V4(config.bridge_ip))
                .chain(config.default_dns.iter().copied())
                .collect(),
            mac: Some(vm.mac.clone()),
            iface: None,
            mtu: None,
        }),
        authorized_keys: vec![user_key.public_key_line.clone()],
        ssh_host_keys: vec![SshHostKey {
            key_type: "ed25519".to_owned(),
            private_key: read_text(name, &vm.dir.join("ssh_host_ed25519_key"))?,
            public_key: read_text(name, &vm.dir.join("ssh_host_ed25519_key.pub"))?,
        }],
        // In the cached base with the initramfs (banger_image::initrd_base).
        agent: None,
        auth_files,
    };
    let initrd = run_dir.join("initrd.img");
    banger_image::initrd_base::write_vm_initrd_cached(
        &state.paths().cache_dir.join("initrd-bases"),
        &boot.initramfs,
        state.host().agent.as_deref(),
        &guest,
        &initrd,
    )
    .map_err(|error| VmError::step(name, "write its initrd", error))?;
    let mut cmdline = banger_image::artifacts::DEFAULT_CMDLINE.to_owned();
    if backend == BackendKind::Firecracker {
        cmdline.push_str(" reboot=k");
    }
    let mut disks = vec![
        DiskSpec {
            path: boot.rootfs,
            read_only: true,
        },
        DiskSpec {
            path: vm.dir.join("overlay.ext4"),
            read_only: false,
        },
        DiskSpec {
            path: vm.dir.join("work.ext4"),
            read_only: false,
        },
    ];
    match boot.modules_disk {
        Some(path) => disks.push(DiskSpec {
            path,
            read_only: true,
        }),
        None => cmdline.push_str(" banger.modules=none"),
    }
    Ok(VmSpec {
        name: name.to_string(),
        vcpus: vm.vcpus,
        memory_mib: vm.memory_mib,
        kernel: boot.kernel,
        initrd,
        cmdline,
        disks,
        network: Some(NetSpec {
            tap_name,
            mac: vm.mac.clone(),
        }),
        vsock_cid: vm.vsock_cid,
        run_dir: run_dir.to_owned(),
        console_log: console_log(&vm.dir),
        console_log_max_bytes: CONSOLE_LOG_MAX_BYTES,
        accel,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_tail_keeps_the_last_lines_rotated_copy_first_and_escapes_controls() {
        let temp = tempfile::tempdir().expect("tempdir");
        let log = temp.path().join("console.log");
        fs_err::write(
            banger_vmm::console::rotated_path(&log),
            "old 1\r\nold 2\r\n",
        )
        .expect("rotated");
        fs_err::write(
            &log,
            b"new 1\nKernel panic \x1b[31m- not syncing\nnew \xff 3\n",
        )
        .expect("log");
        let tail = console_tail(&log, 4);
        assert_eq!(
            tail,
            "old 2\nnew 1\nKernel panic \\u{1b}[31m- not syncing\nnew \u{fffd} 3"
        );
        assert_eq!(console_tail(&log, 1), "new \u{fffd} 3");
    }

    #[test]
    fn console_tail_reads_a_bounded_end_and_says_when_there_is_nothing() {
        let temp = tempfile::tempdir().expect("tempdir");
        let log = temp.path().join("console.log");
        assert_eq!(console_tail(&log, 20), "(the console log is empty)");
        let mut text = "x".repeat(usize::try_from(CONSOLE_TAIL_BYTES).expect("size") * 4);
        text.push_str("\nlast\n");
        fs_err::write(&log, &text).expect("log");
        let tail = console_tail(&log, 20);
        assert!(tail.ends_with("\nlast"), "{tail}");
        assert!(tail.len() <= usize::try_from(CONSOLE_TAIL_BYTES).expect("size") + 8);
    }

    #[test]
    fn console_tail_does_not_open_a_fifo_or_follow_a_link() {
        let temp = tempfile::tempdir().expect("tempdir");
        let log = temp.path().join("console.log");
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            &log,
            rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR,
        )
        .expect("mkfifo");
        assert_eq!(console_tail(&log, 20), "(the console log is empty)");
        let secret = temp.path().join("secret");
        fs_err::write(&secret, "not the console\n").expect("secret");
        let linked = temp.path().join("linked.log");
        fs_err::os::unix::fs::symlink(&secret, &linked).expect("symlink");
        assert_eq!(console_tail(&linked, 20), "(the console log is empty)");
    }
}
