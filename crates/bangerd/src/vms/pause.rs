//! `vm pause` and `vm resume`: a running VM's memory and device state go to
//! `<vm dir>/memory/` and its VMM ends (state `paused`, TAP released, no
//! runtime dir); a resume starts a VMM that loads them, sets the guest's
//! clock from the host and waits for SSH like a start.
//!
//! Nothing is half-written: the memory is written into
//! `<vm dir>/memory.partial/` (0700, files 0600), renamed to `memory/` only
//! when the VMM has saved everything, and removed on any failure, after
//! which the VM keeps running. Free space for the whole guest memory plus a
//! margin is checked first. Sessions in the guest are not lost by a pause:
//! their processes are in the saved memory.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use banger_api::VmName;
use banger_api::vms::{VmInfo, VmState};

use super::boot::{backend_name, boot_files, fail, release_tap, vmm_exit, vmm_exited};
use super::{VmError, info, row, run_dir, set_state};
use crate::progress::ProgressSink;
use crate::state::AppState;
use crate::step_timer::StepTimer;
use crate::store::{VmRow, VmmHandle};

/// Space kept free beyond the guest's memory when pausing (device state,
/// the filesystem's own needs).
pub const PAUSE_SPACE_MARGIN: u64 = 256 << 20;
/// How long the agent gets to answer the clock request after a resume.
const CLOCK_DEADLINE: Duration = Duration::from_secs(30);

/// `<vm dir>/memory`: a paused VM's saved memory and device state.
pub fn memory_dir(vm_dir: &Path) -> PathBuf {
    vm_dir.join("memory")
}

/// `<vm dir>/memory.partial`: where a pause writes before it succeeds.
pub(super) fn partial_dir(vm_dir: &Path) -> PathBuf {
    vm_dir.join("memory.partial")
}

/// Bytes the regular files directly in `dir` take on disk (0 when it is
/// missing): allocated blocks, not lengths, as QEMU's mapped-ram state file
/// is as long as the guest's memory but holds only the pages in use.
pub fn dir_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = fs_err::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter_map(|entry| entry.metadata().ok())
        .filter(|meta| meta.is_file())
        .map(|meta| meta.blocks() * 512)
        .sum()
}

/// Pauses VMs one after the other (each under its own lock).
pub async fn pause(state: &AppState, name: &VmName) -> Result<VmInfo, VmError> {
    let lock = state.vm_lock(name);
    let _guard = lock.lock().await;
    pause_locked(state, name).await
}

/// [`pause`] for callers holding the VM's lock. Pausing a paused VM changes
/// nothing.
pub async fn pause_locked(state: &AppState, name: &VmName) -> Result<VmInfo, VmError> {
    let mut vm = row(&state.store(), name)?;
    let recorded = super::recorded_vmm(&vm)?.cloned();
    if vm.state == VmState::Paused {
        return Ok(info(state, &vm));
    }
    let Some(running) = recorded.filter(|_| vm.state.can_pause()) else {
        return Err(VmError::WrongState {
            name: name.clone(),
            state: vm.state,
            hint: "only a running VM can be paused",
        });
    };
    check_space(&vm)?;
    let partial = partial_dir(&vm.dir);
    let prepared = {
        let partial = partial.clone();
        tokio::task::spawn_blocking(move || {
            remove_if_present(&partial)?;
            banger_config::paths::ensure_private_dir(&partial).map_err(std::io::Error::other)
        })
        .await
    };
    match prepared {
        Ok(Ok(())) => {}
        Ok(Err(error)) => return Err(VmError::step(name, "prepare its memory directory", error)),
        Err(join) => {
            return Err(VmError::Task {
                step: "prepare the memory directory",
                source: join,
            });
        }
    }
    let started = Instant::now();
    if let Err(error) = running.pause(&partial).await {
        let _ = fs_err::remove_dir_all(&partial);
        // The VMM keeps running when a save fails; if it did not, record
        // that like any exit.
        if running.status().is_some() {
            super::stop::finish_stopped(
                state,
                &mut vm,
                Some(format!(
                    "the VMM exited while pausing: {}",
                    crate::error::error_chain(&error)
                )),
            )
            .await?;
        }
        return Err(VmError::step(name, "save its memory", error));
    }
    let finished = {
        let (partial, dir) = (partial.clone(), vm.dir.clone());
        tokio::task::spawn_blocking(move || publish(&partial, &dir)).await
    };
    let failure = match finished {
        Ok(Ok(())) => None,
        Ok(Err(error)) => Some(VmError::step(name, "keep its saved memory", error)),
        Err(join) => Some(VmError::Task {
            step: "keep the saved memory",
            source: join,
        }),
    };
    tracing::info!(vm = %name, took = ?started.elapsed(), "VM paused");
    release_tap(state, &mut vm).await;
    vm.vmm = VmmHandle::None;
    let _ = fs_err::remove_dir_all(run_dir(&state.paths().runtime_dir, name));
    if let Some(error) = failure {
        // The VMM is gone and its memory could not be kept: the VM stopped.
        let _ = fs_err::remove_dir_all(&partial);
        super::stop::finish_stopped(state, &mut vm, Some(crate::error::error_chain(&error)))
            .await?;
        return Err(error);
    }
    set_state(state, &mut vm, VmState::Paused, None)?;
    if let Err(error) = super::firewall::apply(state).await {
        tracing::warn!(vm = %name, error = %crate::error::error_chain(&error), "cannot update firewall rules after a pause");
    }
    Ok(info(state, &vm))
}

/// Refuses a pause that would not fit: the state file can be as large as
/// the guest's memory.
fn check_space(vm: &VmRow) -> Result<(), VmError> {
    check_space_for(&vm.name, &vm.dir, vm.memory_mib)
}

/// [`check_space`] of a VM named `name` with `memory_mib` in `dir`.
fn check_space_for(name: &VmName, dir: &Path, memory_mib: u32) -> Result<(), VmError> {
    let needed = u64::from(memory_mib) * (1 << 20) + PAUSE_SPACE_MARGIN;
    let stat = rustix::fs::statvfs(dir)
        .map_err(|error| VmError::step(name, "measure free space", std::io::Error::from(error)))?;
    let available = stat.f_bavail.saturating_mul(stat.f_frsize);
    if available < needed {
        return Err(VmError::NoSpaceToPause {
            name: name.clone(),
            dir: dir.to_owned(),
            needed,
            available,
        });
    }
    Ok(())
}

pub(super) fn remove_if_present(dir: &Path) -> std::io::Result<()> {
    match fs_err::remove_dir_all(dir) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}

/// Makes the saved files owner-only (the VMM created them with its umask)
/// and renames the directory into place.
pub(super) fn publish(partial: &Path, vm_dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for entry in fs_err::read_dir(partial)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            fs_err::set_permissions(entry.path(), std::fs::Permissions::from_mode(0o600))?;
        }
    }
    let memory = memory_dir(vm_dir);
    remove_if_present(&memory)?;
    fs_err::rename(partial, &memory)
}

/// Resumes a paused VM (taking its lock) and waits for SSH.
pub async fn resume(
    state: &AppState,
    name: &VmName,
    progress: &ProgressSink,
) -> Result<VmInfo, VmError> {
    let lock = state.vm_lock(name);
    let _guard = lock.lock().await;
    resume_locked(state, name, progress).await
}

/// Who the resumed guest is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResumeAs {
    /// The VM that saved the memory.
    Itself,
    /// Another VM (a fork): the agent gives the guest this VM's identity
    /// before SSH is awaited.
    NewIdentity,
}

/// [`resume`] for callers holding the VM's lock. A running VM is left as
/// it is.
pub async fn resume_locked(
    state: &AppState,
    name: &VmName,
    progress: &ProgressSink,
) -> Result<VmInfo, VmError> {
    resume_as_locked(state, name, progress, ResumeAs::Itself).await
}

/// [`resume_locked`] of the guest as `who`.
pub async fn resume_as_locked(
    state: &AppState,
    name: &VmName,
    progress: &ProgressSink,
    who: ResumeAs,
) -> Result<VmInfo, VmError> {
    let mut timer = StepTimer::start("resume", name.as_str());
    let mut vm = row(&state.store(), name)?;
    super::recorded_vmm(&vm)?;
    if vm.state == VmState::Running {
        return Ok(info(state, &vm));
    }
    if !vm.state.can_resume() {
        return Err(VmError::WrongState {
            name: name.clone(),
            state: vm.state,
            hint: "only a paused VM can be resumed (`banger vm start` starts a stopped one)",
        });
    }
    let memory = memory_dir(&vm.dir);
    if !memory.is_dir() {
        return Err(VmError::MemoryMissing {
            name: name.clone(),
            dir: memory,
        });
    }
    let host = state.host();
    let unavailable = |source| VmError::HostUnavailable {
        name: name.to_string(),
        source,
    };
    let network = host.network().await.map_err(unavailable)?;
    let (vmm, accel) = host.vmm(state.config()).map_err(unavailable)?;
    let paused_by = vm.backend;
    if paused_by != Some(backend_name(vmm.kind())) {
        return Err(VmError::BackendChanged {
            name: name.clone(),
            paused_by: paused_by.map_or_else(|| "an unknown backend".to_owned(), |b| b.to_string()),
            now: backend_name(vmm.kind()).to_string(),
        });
    }
    let boot = boot_files(state, &vm, vmm.kind())?;

    set_state(state, &mut vm, VmState::Starting, None)?;
    timer.step("checks");
    let spec =
        super::boot::prepare_launch(state, &mut vm, network, boot, vmm.kind(), accel, &mut timer)
            .await?;
    progress.stage(
        "resume",
        format!("resuming VM {name} from its saved memory"),
    );
    let started = Instant::now();
    let network = match who {
        ResumeAs::Itself => banger_vmm::NetworkAtResume::Connected,
        ResumeAs::NewIdentity => banger_vmm::NetworkAtResume::Disconnected,
    };
    // Before the VMM runs (unlike a cold start, see boot::launch): a
    // resumed guest is up at once and may send on its network right away.
    if let Err(error) = super::firewall::apply(state).await {
        let error = VmError::step(name, "apply its firewall rules", error);
        return fail(state, &mut vm, error).await;
    }
    let running = match vmm.resume(&spec, &memory, network).await {
        Ok(running) => running,
        Err(error) => {
            return fail(state, &mut vm, VmError::step(name, "resume its VMM", error)).await;
        }
    };
    timer.step("vmm");
    vm.vmm = VmmHandle::Recorded(Box::new(running.clone()));
    if let Err(error) = set_state(state, &mut vm, VmState::Running, None) {
        let _ = running.stop(Duration::from_secs(5)).await;
        vm.vmm = VmmHandle::None;
        return fail(state, &mut vm, error).await;
    }
    super::monitor::watch(state, name, &running);
    // The guest runs on its own memory now (QEMU read the file; a
    // Firecracker mapping keeps its pages after the unlink).
    if let Err(error) = fs_err::remove_dir_all(&memory) {
        tracing::warn!(vm = %name, %error, "cannot remove the saved memory after a resume");
    }
    set_guest_clock(name, running.vsock_uds()).await;
    if who == ResumeAs::NewIdentity {
        progress.stage(
            "identity",
            format!("giving the guest its own identity as {name} ({})", vm.ip),
        );
        let identified = match super::fork::reidentify(state, &vm, running.vsock_uds()).await {
            Ok(()) => running
                .set_network_link(true)
                .await
                .map_err(|error| VmError::step(name, "connect its network", error)),
            Err(error) => Err(error),
        };
        if let Err(error) = identified {
            let _ = running.stop(Duration::from_secs(5)).await;
            vm.vmm = VmmHandle::None;
            return fail(state, &mut vm, error).await;
        }
    }
    timer.step("guest");
    tracing::info!(vm = %name, took = ?started.elapsed(), "VM resumed");
    progress.stage("ssh", format!("waiting for SSH on {}", vm.ip));
    let waited = tokio::select! {
        biased;
        answer = host.wait_for_ssh(vm.ip) => Ok(answer),
        exit = vmm_exit(&running) => Err(exit),
    };
    timer.step("ssh");
    match waited {
        Err(exit) => vmm_exited(state, &mut vm, &running, exit).await,
        Ok(Ok(took)) => {
            progress.stage(
                "ready",
                format!(
                    "VM {name} answers on SSH {:.1} s after the resume",
                    took.as_secs_f64()
                ),
            );
            Ok(info(state, &vm))
        }
        Ok(Err(error)) => {
            vm.last_error = Some(format!(
                "SSH did not answer: {}",
                crate::error::error_chain(&error)
            ));
            state.store().update_vm(&vm)?;
            Err(VmError::SshTimeout {
                name: name.clone(),
                waited_secs: host.ssh_timeout.as_secs(),
            })
        }
    }
}

/// How long one clock call may take right after a resume before it is
/// tried again.
const CLOCK_ATTEMPT: Duration = Duration::from_secs(5);

/// Calls the guest agent with `call` (given `attempt` as its timeout) until it
/// answers or `deadline` passes. Right after a resume the agent is out of
/// reach for a moment: its vsock device is being plugged back in, and a
/// connection made before the guest's driver is ready can hang until it
/// times out; so connect errors, time-outs and broken connections are tried
/// again. Any other answer (a reply, a refusal) ends it.
pub(super) async fn retry_agent<T, F, Fut>(
    deadline: Duration,
    attempt: Duration,
    mut call: F,
) -> Result<T, banger_agent_client::AgentError>
where
    F: FnMut(Duration) -> Fut,
    Fut: std::future::Future<Output = Result<T, banger_agent_client::AgentError>>,
{
    use banger_agent_client::AgentError;
    let until = Instant::now() + deadline;
    loop {
        match call(attempt).await {
            Err(AgentError::Connect(_) | AgentError::Timeout { .. } | AgentError::Io { .. })
                if Instant::now() < until =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            outcome => return outcome,
        }
    }
}

/// Sets the guest's clock from the host's as soon as its agent answers
/// (its clocks stopped while it was paused). A guest without an agent, or
/// one that refuses, is logged, not fatal.
async fn set_guest_clock(name: &VmName, uds: &Path) {
    match retry_agent(CLOCK_DEADLINE, CLOCK_ATTEMPT, |timeout| {
        banger_agent_client::set_clock(uds, timeout)
    })
    .await
    {
        Ok(()) => tracing::info!(vm = %name, "guest clock set from the host"),
        Err(error) => {
            tracing::warn!(vm = %name, error = %crate::error::error_chain(&error), "cannot set the guest clock after a resume");
        }
    }
}

/// `vm stop` of a paused VM: its saved memory is discarded (what ran in it
/// is lost, the disks are kept) and it is recorded stopped, saying so.
pub async fn discard_locked(state: &AppState, vm: &mut VmRow) -> Result<VmInfo, VmError> {
    let memory = memory_dir(&vm.dir);
    let bytes = dir_bytes(&memory);
    remove_if_present(&memory)
        .map_err(|error| VmError::step(&vm.name, "discard its saved memory", error))?;
    let _ = remove_if_present(&partial_dir(&vm.dir));
    tracing::info!(vm = %vm.name, bytes, "saved memory of a paused VM discarded");
    super::stop::finish_stopped(
        state,
        vm,
        Some(format!(
            "stopped while paused: its saved memory ({bytes} bytes) was discarded; the disks are kept"
        )),
    )
    .await?;
    Ok(info(state, vm))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pause that does not fit on a 16 MiB tmpfs is refused before
    /// anything is written, naming the VM, the bytes needed and free.
    #[test]
    fn a_pause_that_does_not_fit_is_refused_before_writing() {
        let Some(tmpfs) = banger_testkit::tmpfs::SmallTmpfs::mount("16m") else {
            return;
        };
        let vm = VmName::parse("tiny").expect("name");
        let refused = check_space_for(&vm, tmpfs.path(), 64);
        let entries = fs_err::read_dir(tmpfs.path()).expect("list").count();
        let message = refused.as_ref().map_err(ToString::to_string).err();
        match refused {
            Err(VmError::NoSpaceToPause {
                needed, available, ..
            }) => {
                assert!(message.is_some_and(|m| m.contains("tiny")));
                assert_eq!(needed, (64 << 20) + PAUSE_SPACE_MARGIN);
                assert!(available <= 16 << 20, "{available}");
            }
            other => panic!("expected NoSpaceToPause, got {other:?}"),
        }
        assert_eq!(entries, 0);
        assert!(check_space_for(&vm, Path::new("/"), 1).is_ok());
    }
}
