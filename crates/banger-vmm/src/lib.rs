//! banger's VMM layer: start, stop and find again the processes that run a VM.
//!
//! - [`spec`]: [`VmSpec`], the backend-neutral description of a VM.
//! - [`qemu`] and [`firecracker`]: the two backends; [`Vmm`] picks one at run
//!   time (enum dispatch, see `docs/vmm.md`).
//! - [`running`]: [`RunningVm`], the serialisable handle the daemon persists;
//!   stop/kill/status/adopt work from the handle alone.
//! - [`process`]: detached spawning and [`ProcessIdentity`] (pid + start time
//!   + exe) so a recycled pid is never taken for a VM.
//! - [`console`]: the bounded serial console log and its copier process.
//! - [`vsock`]: the hybrid-vsock client shared by both backends.

// Tests may unwrap: a panic with the value is the clearest failure report.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod console;
pub mod firecracker;
pub mod process;
pub mod qemu;
pub mod running;
pub mod spec;
pub mod vsock;

use std::path::Path;

pub use console::{CopierCommand, copier_main, run_console_copier};
pub use firecracker::FirecrackerVmm;
pub use process::{ExitInfo, ExitWatch, ProcessIdentity, Signal};
pub use qemu::QemuVmm;
pub use running::{Adoption, BackendKind, RunningVm, StopOutcome, VmmError};
pub use spec::{Accel, DiskSpec, NetSpec, VmSpec};
pub use vsock::{VsockError, connect_vsock};

/// The resumed guest's network link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkAtResume {
    /// Connected, as when it was saved.
    Connected,
    /// Disconnected until [`RunningVm::set_network_link`]: a guest resumed
    /// as another VM (a fork) must not send a frame with the source's MAC
    /// and address before it has its own, or the bridge would send the
    /// source's traffic to it. QEMU only; Firecracker has no link control,
    /// so its guest is connected at once.
    Disconnected,
}

/// A configured backend. Enum dispatch rather than a trait object: the set of
/// backends is closed, `start` is async, and everything after `start` works
/// from the [`RunningVm`] handle, which records its own [`BackendKind`].
#[derive(Debug, Clone)]
pub enum Vmm {
    /// QEMU (works everywhere; TCG when KVM cannot run guests).
    Qemu(QemuVmm),
    /// Firecracker (KVM hosts).
    Firecracker(FirecrackerVmm),
}

impl Vmm {
    /// Which backend this is.
    pub fn kind(&self) -> BackendKind {
        match self {
            Self::Qemu(_) => BackendKind::Qemu,
            Self::Firecracker(_) => BackendKind::Firecracker,
        }
    }

    /// Validates `spec`, starts the VM and returns once the VMM runs. It does
    /// not wait for the guest (use [`connect_vsock`] or SSH for that). The
    /// processes run in their own sessions and survive the caller's death.
    pub async fn start(&self, spec: &VmSpec) -> Result<RunningVm, VmmError> {
        match self {
            Self::Qemu(qemu) => qemu.start(spec).await,
            Self::Firecracker(firecracker) => firecracker.start(spec).await,
        }
    }

    /// Resumes a VM that [`RunningVm::pause`] saved into `memory_dir`, with
    /// the backend that saved it; `spec` is the VM's spec as for
    /// [`Self::start`] (its TAP may be another). Returns once the guest runs
    /// again; its vsock connections are gone (reconnect). The directory is
    /// only read: remove it once the VM is known to run.
    pub async fn resume(
        &self,
        spec: &VmSpec,
        memory_dir: &Path,
        network: NetworkAtResume,
    ) -> Result<RunningVm, VmmError> {
        match self {
            Self::Qemu(qemu) => qemu.resume(spec, memory_dir, network).await,
            // No link control: see NetworkAtResume.
            Self::Firecracker(firecracker) => firecracker.resume(spec, memory_dir).await,
        }
    }
}
