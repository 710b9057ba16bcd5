//! The QEMU backend: `qemu-system-x86_64` (q35, KVM or TCG) plus one
//! `vhost-device-vsock` per VM for hybrid vsock.
//!
//! Start order: the vsock helper first (QEMU connects to its vhost-user socket
//! at startup and fails if it is missing), then the console copier and QEMU
//! (see [`crate::console`]), then wait for QMP. Graceful stop is QMP
//! `system_powerdown` (see [`crate::RunningVm::stop`]).

pub mod args;
pub mod migrate;
pub mod qmp;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::console::{CopierCommand, spawn_with_console};
use crate::process::spawn_detached;
use crate::running::{
    BackendKind, RunningVm, VmmError, kill_all, prepare_run_dir, wait_for_socket,
};
use crate::spec::VmSpec;
use args::{QemuPaths, qemu_args, qemu_args_incoming, vhost_vsock_args};

/// How long QEMU and the vsock helper get to create their sockets.
const SOCKET_TIMEOUT: Duration = Duration::from_secs(15);

/// Starts VMs with QEMU.
#[derive(Debug, Clone)]
pub struct QemuVmm {
    /// `qemu-system-x86_64`.
    pub qemu_bin: PathBuf,
    /// `vhost-device-vsock`.
    pub vhost_vsock_bin: PathBuf,
    /// The console copier program.
    pub copier: CopierCommand,
}

impl QemuVmm {
    /// Starts the VM and returns once QEMU runs (QMP is up). It does not wait
    /// for the guest to boot. On failure, everything started is killed.
    pub async fn start(&self, spec: &VmSpec) -> Result<RunningVm, VmmError> {
        self.launch(spec, None).await
    }

    /// Resumes a VM paused by [`RunningVm::pause`] into `memory_dir`: the
    /// same devices as `spec` (it must be the spec the VM was started with,
    /// but for the TAP), the state loaded from the directory, a fresh vsock
    /// helper and device, then the guest continues. On failure everything
    /// started is killed; the directory is only read.
    pub async fn resume(
        &self,
        spec: &VmSpec,
        memory_dir: &Path,
        network: crate::NetworkAtResume,
    ) -> Result<RunningVm, VmmError> {
        let state = migrate::saved_state(memory_dir).ok_or_else(|| VmmError::NoSavedState {
            vm: spec.name.clone(),
            dir: memory_dir.to_path_buf(),
        })?;
        let incoming = match &state {
            migrate::SavedState::Stream(path) => args::Incoming::Stream(path),
            migrate::SavedState::Mapped(_) => args::Incoming::Deferred,
        };
        let running = self.launch(spec, Some(incoming)).await?;
        tracing::debug!(vm = %spec.name, "QEMU is up; loading the saved state");
        if let Err(source) = migrate::load(&running.control_socket, &state, network).await {
            let exited = running.status();
            kill_all(&running.processes().collect::<Vec<_>>()).await;
            let _ = running.cleanup().await;
            if let Some(exit) = exited {
                return Err(VmmError::EarlyExit {
                    vm: spec.name.clone(),
                    program: running.vmm.exe.clone(),
                    exit,
                    output: crate::running::tail(&spec.console_log, 4096),
                });
            }
            return Err(VmmError::Migrate {
                vm: spec.name.clone(),
                source,
            });
        }
        Ok(running)
    }

    async fn launch(
        &self,
        spec: &VmSpec,
        incoming: Option<args::Incoming<'_>>,
    ) -> Result<RunningVm, VmmError> {
        spec.validate()?;
        let paths = QemuPaths::in_run_dir(&spec.run_dir);
        prepare_run_dir(spec, &[&paths.qmp, &paths.vhost_user, &paths.vsock_uds])?;
        let process = |source| VmmError::Process {
            vm: spec.name.clone(),
            source,
        };

        let log = fs_err::File::create(&paths.vhost_log).map_err(|source| VmmError::Io {
            vm: spec.name.clone(),
            path: paths.vhost_log.clone(),
            source,
        })?;
        let log_err = log.try_clone().map_err(|source| VmmError::Io {
            vm: spec.name.clone(),
            path: paths.vhost_log.clone(),
            source,
        })?;
        let mut vhost = Command::new(&self.vhost_vsock_bin);
        vhost
            .args(vhost_vsock_args(spec, &paths))
            .stdin(Stdio::null())
            .stdout(log.into_file())
            .stderr(log_err.into_file());
        let helper = spawn_detached(vhost).map_err(process)?;
        if let Err(error) = wait_for_socket(
            &spec.name,
            &helper,
            &paths.vhost_user,
            &paths.vhost_log,
            SOCKET_TIMEOUT,
        )
        .await
        {
            kill_all(&[&helper]).await;
            return Err(error);
        }

        let mut qemu = Command::new(&self.qemu_bin);
        match incoming {
            None => qemu.args(qemu_args(spec, &paths)),
            Some(state_file) => qemu.args(qemu_args_incoming(spec, &paths, state_file)),
        };
        let console = match spawn_with_console(
            qemu,
            &self.copier,
            &spec.console_log,
            spec.console_log_max_bytes,
        ) {
            Ok(console) => console,
            Err(source) => {
                kill_all(&[&helper]).await;
                return Err(VmmError::Console {
                    vm: spec.name.clone(),
                    source,
                });
            }
        };
        if let Err(error) = wait_for_socket(
            &spec.name,
            &console.vmm,
            &paths.qmp,
            &spec.console_log,
            SOCKET_TIMEOUT,
        )
        .await
        {
            kill_all(&[&console.vmm, &helper, &console.copier]).await;
            return Err(error);
        }
        // Both made their sockets, so each runs its real program now (a
        // wrapper script would have shown at spawn time).
        Ok(RunningVm {
            name: spec.name.clone(),
            backend: BackendKind::Qemu,
            vmm: console.vmm.current(),
            console_copier: console.copier,
            helpers: vec![helper.current()],
            run_dir: spec.run_dir.clone(),
            control_socket: paths.qmp,
            vsock_uds: paths.vsock_uds,
            console_log: spec.console_log.clone(),
        })
    }
}
