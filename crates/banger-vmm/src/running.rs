//! [`RunningVm`]: the persisted handle of a started VM, and the operations
//! that need nothing but that handle (stop, kill, status, wait, adopt).
//!
//! The daemon stores the handle (it is serde-serialisable) before it reports
//! the VM as running. After a daemon restart it loads the handle and calls
//! [`RunningVm::adopt`]: every process is re-identified by pid + start time +
//! executable, so a recycled pid is never mistaken for the VM. Because stop
//! and kill only need the handle (QMP or Firecracker API socket, pids), an
//! adopted VM is controlled exactly like one started by this process.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::console::ConsoleError;
use crate::firecracker::api::ApiError;
use crate::process::{
    ExitInfo, ExitWatch, ProcessError, ProcessIdentity, Signal, exit_status, wait_exit,
};
use crate::qemu::migrate::MigrateError;
use crate::qemu::qmp::QmpError;
use crate::spec::SpecError;

/// How long the console copier gets to drain the pipe after the VMM exits.
const COPIER_DRAIN: Duration = Duration::from_secs(2);
/// How long a VMM gets to exit by itself once its state is saved.
const PAUSE_EXIT: Duration = Duration::from_secs(10);

/// Which VMM runs a VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendKind {
    /// `qemu-system-x86_64` plus `vhost-device-vsock`.
    Qemu,
    /// `firecracker`.
    Firecracker,
}

/// Everything needed to find and control a running VM again, also from a
/// restarted daemon. Persist it as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunningVm {
    /// VM name.
    pub name: String,
    /// Backend that started it.
    pub backend: BackendKind,
    /// The VMM process.
    pub vmm: ProcessIdentity,
    /// The console copier process.
    pub console_copier: ProcessIdentity,
    /// Helper processes that must stop with the VM (`vhost-device-vsock`).
    pub helpers: Vec<ProcessIdentity>,
    /// Per-VM runtime directory.
    pub run_dir: PathBuf,
    /// QMP socket (QEMU) or API socket (Firecracker).
    pub control_socket: PathBuf,
    /// Hybrid-vsock Unix socket, for [`crate::connect_vsock`].
    pub vsock_uds: PathBuf,
    /// Bounded serial console log (rotated copy: `<path>.1`).
    pub console_log: PathBuf,
}

/// What [`RunningVm::adopt`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Adoption {
    /// The VMM runs and is the recorded process: control it as before.
    Running,
    /// The VMM is gone (helpers left over, if any, were killed).
    Gone,
}

/// How a stop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopOutcome {
    /// The guest shut down within the timeout.
    Graceful(ExitInfo),
    /// The VMM was killed after the timeout.
    Killed(Option<ExitInfo>),
    /// It was not running any more.
    AlreadyGone,
}

/// Errors from starting or controlling a VM.
#[derive(Debug, Error)]
pub enum VmmError {
    /// The spec is invalid.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// A file operation failed.
    #[error("VM {vm}: {path}")]
    Io {
        /// VM name.
        vm: String,
        /// The path that failed.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// Spawning, identifying or signalling a process failed.
    #[error("VM {vm}")]
    Process {
        /// VM name.
        vm: String,
        /// Underlying error.
        source: ProcessError,
    },
    /// Starting the console pipeline failed.
    #[error("VM {vm}")]
    Console {
        /// VM name.
        vm: String,
        /// Underlying error.
        source: ConsoleError,
    },
    /// A program exited while the VM was being started.
    #[error("VM {vm}: {program} exited during start ({exit:?}); last output:\n{output}")]
    EarlyExit {
        /// VM name.
        vm: String,
        /// Which program.
        program: PathBuf,
        /// How it ended.
        exit: ExitInfo,
        /// The end of its output (console log or helper log).
        output: String,
    },
    /// A socket did not appear in time.
    #[error("VM {vm}: {program} did not create {path} within {timeout:?}")]
    SocketTimeout {
        /// VM name.
        vm: String,
        /// Which program.
        program: PathBuf,
        /// The socket.
        path: PathBuf,
        /// The timeout.
        timeout: Duration,
    },
    /// Talking to QEMU's QMP failed.
    #[error("VM {vm}")]
    Qmp {
        /// VM name.
        vm: String,
        /// Underlying error.
        source: QmpError,
    },
    /// A resume found no saved state in the memory directory.
    #[error("VM {vm}: no saved state in {} (qemu.mapped or qemu.state)", dir.display())]
    NoSavedState {
        /// VM name.
        vm: String,
        /// The memory directory.
        dir: std::path::PathBuf,
    },
    /// Saving or loading a QEMU VM's state failed.
    #[error("VM {vm}")]
    Migrate {
        /// VM name.
        vm: String,
        /// Underlying error.
        source: MigrateError,
    },
    /// A Firecracker API call failed.
    #[error("VM {vm}")]
    Firecracker {
        /// VM name.
        vm: String,
        /// Underlying error (boxed: it is large and rare).
        source: Box<ApiError>,
    },
}

/// Last `max` bytes of a file, lossily decoded (for error messages).
pub(crate) fn tail(path: &Path, max: u64) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut file) = fs_err::File::open(path) else {
        return String::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(max)));
    let mut bytes = Vec::new();
    let _ = file.read_to_end(&mut bytes);
    String::from_utf8_lossy(&bytes).into_owned()
}

/// How often [`wait_for_socket`] looks while a socket is expected any
/// moment: vhost-device-vsock and QEMU make theirs within milliseconds, and
/// the VMM's start waits on the first (a 20 ms poll cost a create 10 ms on
/// average, a fifth of banger's overhead).
const SOCKET_POLL_FAST: Duration = Duration::from_millis(1);
/// How long the fast polling lasts before [`SOCKET_POLL_SLOW`].
const SOCKET_FAST_FOR: Duration = Duration::from_millis(200);
/// The poll after that (a loaded host; a program that is slow to start).
const SOCKET_POLL_SLOW: Duration = Duration::from_millis(20);

/// Waits until `path` exists while `owner` keeps running.
pub(crate) async fn wait_for_socket(
    vm: &str,
    owner: &ProcessIdentity,
    path: &Path,
    output: &Path,
    timeout: Duration,
) -> Result<(), VmmError> {
    let started = Instant::now();
    let deadline = started + timeout;
    loop {
        if path.exists() {
            tracing::debug!(vm, path = %path.display(), waited = ?started.elapsed(), "socket ready");
            return Ok(());
        }
        if let Some(exit) = exit_status(owner) {
            // Give the console copier a moment to write the last words.
            tokio::time::sleep(Duration::from_millis(300)).await;
            return Err(VmmError::EarlyExit {
                vm: vm.to_owned(),
                program: owner.exe.clone(),
                exit,
                output: tail(output, 4096),
            });
        }
        if Instant::now() >= deadline {
            return Err(VmmError::SocketTimeout {
                vm: vm.to_owned(),
                program: owner.exe.clone(),
                path: path.to_path_buf(),
                timeout,
            });
        }
        let poll = if started.elapsed() < SOCKET_FAST_FOR {
            SOCKET_POLL_FAST
        } else {
            SOCKET_POLL_SLOW
        };
        tokio::time::sleep(poll).await;
    }
}

/// Creates the run dir (0700) and removes sockets a previous run left.
pub(crate) fn prepare_run_dir(
    spec: &crate::spec::VmSpec,
    sockets: &[&PathBuf],
) -> Result<(), VmmError> {
    use std::os::unix::fs::DirBuilderExt;
    let io = |path: &PathBuf, source| VmmError::Io {
        vm: spec.name.clone(),
        path: path.clone(),
        source,
    };
    #[allow(
        clippy::disallowed_types,
        reason = "fs-err has no DirBuilder; the error is mapped with the path below"
    )]
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&spec.run_dir)
        .map_err(|e| io(&spec.run_dir, e))?;
    for socket in sockets {
        match fs_err::remove_file(socket) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(io(socket, error)),
        }
    }
    Ok(())
}

/// Best-effort cleanup after a failed start.
pub(crate) async fn kill_all(processes: &[&ProcessIdentity]) {
    for process in processes {
        if let Err(error) = crate::process::kill_and_wait(process).await {
            tracing::warn!(pid = process.pid, %error, "cleanup after failed start");
        }
    }
}

impl RunningVm {
    fn process_error(&self, source: ProcessError) -> VmmError {
        VmmError::Process {
            vm: self.name.clone(),
            source,
        }
    }

    /// The serial console log.
    pub fn console_log(&self) -> &Path {
        &self.console_log
    }

    /// The hybrid-vsock socket.
    pub fn vsock_uds(&self) -> &Path {
        &self.vsock_uds
    }

    /// Non-blocking: `None` while the VMM runs, else how it ended (reaping it
    /// when this process started it).
    pub fn status(&self) -> Option<ExitInfo> {
        exit_status(&self.vmm)
    }

    /// Waits up to `timeout` for the VMM to exit (e.g. guest powered off).
    pub async fn wait(&self, timeout: Duration) -> Option<ExitInfo> {
        wait_exit(&self.vmm, timeout).await
    }

    /// Pins the VMM (by pidfd; see [`ExitWatch`]) for waiting on its exit
    /// with no timeout: `watch.exited().await` resolves the moment it exits,
    /// with the real status when this process started it. A VMM whose pid
    /// now belongs to another process counts as exited.
    pub fn watch_exit(&self) -> ExitWatch {
        ExitWatch::new(&self.vmm)
    }

    /// Sends `signal` to the VMM if it is still the recorded process.
    /// Returns false when it was not running.
    pub fn kill(&self, signal: Signal) -> Result<bool, VmmError> {
        self.vmm.signal(signal).map_err(|e| self.process_error(e))
    }

    /// Re-identifies the VM after a daemon restart. When the VMM is gone,
    /// leftover helpers are killed so nothing leaks.
    pub async fn adopt(&self) -> Result<Adoption, VmmError> {
        if self.vmm.is_alive_and_same() {
            return Ok(Adoption::Running);
        }
        self.cleanup().await?;
        Ok(Adoption::Gone)
    }

    /// Asks the guest to shut down (QMP `system_powerdown` / Firecracker
    /// `SendCtrlAltDel`), waits up to `timeout`, then SIGKILLs the VMM.
    /// Afterwards helpers are stopped and sockets removed.
    pub async fn stop(&self, timeout: Duration) -> Result<StopOutcome, VmmError> {
        if let Some(_exit) = self.status() {
            self.cleanup().await?;
            return Ok(StopOutcome::AlreadyGone);
        }
        // A VMM stopped by SIGSTOP (or a debugger) cannot shut its guest
        // down and would only be killed after the timeout: it is continued
        // first, so the guest gets its clean shutdown.
        if self.vmm.is_stopped() {
            tracing::info!(vm = %self.name, pid = self.vmm.pid, "the VMM is stopped; continuing it for a clean shutdown");
            if let Err(error) = self.kill(Signal::CONT) {
                tracing::warn!(vm = %self.name, %error, "cannot continue the stopped VMM");
            }
        }
        let started = Instant::now();
        // A guest that ignores or cannot receive the request is handled by
        // the kill below, so a failed request is logged, not fatal. The
        // request shares the stop timeout: a frozen VMM must not delay the kill.
        let request = async {
            match self.backend {
                BackendKind::Qemu => crate::qemu::qmp::system_powerdown(&self.control_socket)
                    .await
                    .map_err(|source| VmmError::Qmp {
                        vm: self.name.clone(),
                        source,
                    }),
                BackendKind::Firecracker => {
                    crate::firecracker::send_ctrl_alt_del(&self.control_socket)
                        .await
                        .map_err(|source| VmmError::Firecracker {
                            vm: self.name.clone(),
                            source: Box::new(source),
                        })
                }
            }
        };
        match tokio::time::timeout(timeout, request).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::warn!(vm = %self.name, %error, "graceful shutdown request failed");
            }
            Err(_) => {
                tracing::warn!(vm = %self.name, ?timeout, "graceful shutdown request timed out");
            }
        }
        let remaining = timeout.saturating_sub(started.elapsed());
        let outcome = match wait_exit(&self.vmm, remaining).await {
            Some(exit) => StopOutcome::Graceful(exit),
            None => {
                tracing::info!(vm = %self.name, ?timeout, "guest did not shut down; killing the VMM");
                let exit = crate::process::kill_and_wait(&self.vmm)
                    .await
                    .map_err(|e| self.process_error(e))?;
                StopOutcome::Killed(exit)
            }
        };
        self.cleanup().await?;
        Ok(outcome)
    }

    /// Pauses the VM into `memory_dir` (an existing, empty, private
    /// directory): guest memory and device state are written there (QEMU:
    /// [`crate::qemu::migrate::MAPPED_STATE_FILE`] or, before QEMU 9,
    /// [`crate::qemu::migrate::STATE_FILE`], by migration; Firecracker:
    /// [`crate::firecracker::pause::MEMORY_FILE`] and `STATE_FILE` by
    /// snapshot), then the VMM ends and helpers are stopped, so the VM's CPU
    /// and memory go back to the host. Resume with [`crate::Vmm::resume`].
    /// On failure the VM keeps running; files written meanwhile are the
    /// caller's to remove.
    pub async fn pause(&self, memory_dir: &Path) -> Result<(), VmmError> {
        match self.backend {
            BackendKind::Qemu => crate::qemu::migrate::save(&self.control_socket, memory_dir)
                .await
                .map_err(|source| VmmError::Migrate {
                    vm: self.name.clone(),
                    source,
                })?,
            BackendKind::Firecracker => {
                crate::firecracker::pause::save(&self.control_socket, memory_dir)
                    .await
                    .map_err(|source| VmmError::Firecracker {
                        vm: self.name.clone(),
                        source: Box::new(source),
                    })?
            }
        }
        // QEMU quits by itself; Firecracker has no quit, and its state is
        // on disk: it is ended at once.
        let quits = self.backend == BackendKind::Qemu;
        if !quits || wait_exit(&self.vmm, PAUSE_EXIT).await.is_none() {
            crate::process::kill_and_wait(&self.vmm)
                .await
                .map_err(|e| self.process_error(e))?;
        }
        self.cleanup().await
    }

    /// Connects (`up`) or disconnects the NIC (see
    /// [`crate::NetworkAtResume`]); a no-op under Firecracker, whose link is
    /// never down.
    pub async fn set_network_link(&self, up: bool) -> Result<(), VmmError> {
        match self.backend {
            BackendKind::Qemu => crate::qemu::migrate::set_link(&self.control_socket, up)
                .await
                .map_err(|source| VmmError::Migrate {
                    vm: self.name.clone(),
                    source,
                }),
            BackendKind::Firecracker => Ok(()),
        }
    }

    /// After the VMM is gone: kill helpers, let the copier drain (kill it if
    /// it lingers), remove the VM's sockets.
    pub async fn cleanup(&self) -> Result<(), VmmError> {
        for helper in &self.helpers {
            if helper.is_alive_and_same() {
                crate::process::kill_and_wait(helper)
                    .await
                    .map_err(|e| self.process_error(e))?;
            } else {
                let _ = exit_status(helper);
            }
        }
        // The copier exits by itself at end of file once the VMM is gone.
        if wait_exit(&self.console_copier, COPIER_DRAIN)
            .await
            .is_none()
        {
            crate::process::kill_and_wait(&self.console_copier)
                .await
                .map_err(|e| self.process_error(e))?;
        }
        for socket in [&self.control_socket, &self.vsock_uds] {
            match fs_err::remove_file(socket) {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(VmmError::Io {
                        vm: self.name.clone(),
                        path: socket.clone(),
                        source,
                    });
                }
            }
        }
        Ok(())
    }

    /// Every process of this VM (VMM, copier, helpers), for diagnostics.
    pub fn processes(&self) -> impl Iterator<Item = &ProcessIdentity> {
        std::iter::once(&self.vmm)
            .chain(std::iter::once(&self.console_copier))
            .chain(&self.helpers)
    }
}
