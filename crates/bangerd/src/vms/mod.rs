//! VM lifecycle: create, start, stop, kill, restart, set, delete, adopt
//! (of an orphaned VM directory), and the recovery of running VMs after a
//! daemon restart.
//!
//! Each VM is a row in the store plus `<state dir>/vms/<name>/` (overlay
//! disk, work disk, host key, console log) and, while running, a TAP and
//! `<runtime dir>/vms/<name>/` (sockets, initrd). The state (see
//! `banger_api::vms::VmState`) is written before every step, and every
//! operation on one VM holds that VM's lock, so two operations on the same
//! VM never interleave while different VMs proceed in parallel.

mod adopt;
pub mod agent;
mod boot;
mod create;
mod delete;
pub mod firewall;
mod fork;
mod interrupted;
mod monitor;
mod pause;
pub mod snapshot;
mod stop;

use std::path::{Path, PathBuf};

use banger_api::vms::{SshInfo, VmBackend, VmDiskUsage, VmInfo, VmSetRequest, VmState};

use banger_api::{ErrorCode, ImageName, VmName};

use crate::state::AppState;
use crate::store::{Store, StoreError, VmRow, VmmHandle};
use banger_vmm::RunningVm;

pub use adopt::{adopt, orphans};
pub use boot::start;
pub use create::create;
pub use delete::delete;
pub use fork::fork;
pub use interrupted::finish_interrupted;
pub use monitor::{HEALTH_TICK, UNHEALTHY, monitor_loop, recover, release_spare_taps};
pub use pause::{memory_dir, pause, resume};
pub use stop::{kill, stop};

/// Default vCPUs of a new VM.
pub const DEFAULT_VCPUS: u8 = 2;
/// Default memory of a new VM.
pub const DEFAULT_MEMORY_MIB: u32 = 2048;
/// Least memory a VM may have: a Debian guest with sshd needs about this.
pub const MIN_MEMORY_MIB: u32 = 256;
/// Default work disk size.
pub const DEFAULT_DISK_BYTES: u64 = 8 << 30;
/// Size of each VM's overlay (upper) disk, sparse.
pub const OVERLAY_BYTES: u64 = 16 << 30;
/// Cap of the serial console log (the rotated copy may add as much again).
pub const CONSOLE_LOG_MAX_BYTES: u64 = 2 << 20;

/// Failures of VM operations; each names the VM.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// No VM of that name.
    #[error("VM {name} does not exist; see `banger vm list`")]
    NotFound {
        /// The name.
        name: VmName,
    },
    /// The image was re-registered while the VM was being created.
    #[error("image {image} changed while the VM was being created; nothing was made, try again")]
    ImageChanged {
        /// The image.
        image: ImageName,
    },
    /// The name is taken.
    #[error("a VM named {name} already exists; pick another name or delete it first")]
    NameTaken {
        /// The name.
        name: VmName,
    },
    /// The vCPU count is outside what this host allows.
    #[error("--vcpu {vcpus} is out of range; use 1 to {max}")]
    VcpusOutOfRange {
        /// Requested.
        vcpus: u8,
        /// Most allowed.
        max: usize,
    },
    /// Too little memory for a guest.
    #[error("--memory {memory_mib} MiB is too little; a VM needs at least {MIN_MEMORY_MIB} MiB")]
    MemoryTooSmall {
        /// Requested.
        memory_mib: u32,
    },
    /// More memory than the host has.
    #[error(
        "--memory {memory_mib} MiB is more than this host's memory ({host_mib} MiB); use at most {host_mib} MiB"
    )]
    MemoryTooLarge {
        /// Requested.
        memory_mib: u32,
        /// The host's total memory (`MemTotal` of /proc/meminfo).
        host_mib: u64,
    },
    /// The host's memory size cannot be read, so a memory request cannot
    /// be checked against it.
    #[error("cannot tell this host's memory size from {}: {problem}", path.display())]
    HostMemoryUnknown {
        /// The file read (`/proc/meminfo`).
        path: PathBuf,
        /// What went wrong.
        problem: HostMemoryProblem,
    },
    /// A work disk larger than the configured maximum.
    #[error(
        "--disk-size {disk_bytes} bytes ({}) is more than the largest work disk allowed, {max_bytes} bytes ({}); raise `max_disk_size` in config.toml to allow more",
        banger_config::config::format_size(*.disk_bytes),
        banger_config::config::format_size(*.max_bytes)
    )]
    DiskTooLarge {
        /// Requested size.
        disk_bytes: u64,
        /// The configured maximum (`max_disk_size`).
        max_bytes: u64,
    },
    /// A work disk smaller than the smallest banger makes.
    #[error(
        "--disk-size {disk_bytes} bytes is less than the smallest work disk, {min_bytes} bytes; ask for at least 1M"
    )]
    DiskTooSmall {
        /// Requested size.
        disk_bytes: u64,
        /// The smallest work disk ([`MIN_DISK_BYTES`]).
        min_bytes: u64,
    },
    /// The VM's sockets under `<runtime dir>/vms/<name>/` would not fit in a
    /// Unix socket address (the message names the path, its length, the
    /// limit and the fix: a shorter runtime dir or name).
    #[error("VM {name} cannot be created here: {source}")]
    SocketPathTooLong {
        /// The VM.
        name: VmName,
        /// The path, its length and the limit.
        #[source]
        source: banger_config::PathsError,
    },
    /// The work disk would be smaller than the image's work seed.
    #[error(
        "--disk-size {disk_bytes} bytes is smaller than image {image}'s work seed ({seed_bytes} bytes); the work disk only grows"
    )]
    DiskSmallerThanSeed {
        /// Requested size.
        disk_bytes: u64,
        /// The image.
        image: ImageName,
        /// Its work seed's size.
        seed_bytes: u64,
    },
    /// A work disk may only grow.
    #[error("the work disk only grows: VM {name} has {current} bytes, {requested} requested")]
    DiskShrink {
        /// The VM.
        name: VmName,
        /// Current size.
        current: u64,
        /// Requested size.
        requested: u64,
    },
    /// A disk size is not a multiple of the unit disks are made in.
    #[error("disk size {bytes} bytes must be a multiple of {unit} bytes")]
    DiskUnaligned {
        /// Requested size.
        bytes: u64,
        /// The unit.
        unit: u64,
    },
    /// A directory for the VM exists but no VM row owns it (say, the
    /// database was moved away): it holds someone's disks, so it is kept.
    #[error(
        "VM directory {} exists but no VM in banger's database owns it; it is kept untouched: re-register it with `banger vm adopt {}`, or move it away (or pick another name) to create VM {name}",
        dir.display(),
        dir.display()
    )]
    OrphanDirectory {
        /// The name asked for.
        name: VmName,
        /// The directory.
        dir: PathBuf,
    },
    /// `vm adopt` was given a path that is not `<state dir>/vms/<name>` for
    /// a valid VM name; arbitrary paths are never adopted.
    #[error(
        "{dir:?} is not a VM directory of banger: only `{}/<name>` (a valid VM name) can be adopted; move the directory there first",
        vms_dir.display()
    )]
    AdoptOutsideState {
        /// The path given.
        dir: PathBuf,
        /// `<state dir>/vms`.
        vms_dir: PathBuf,
    },
    /// `vm adopt` was given a directory that does not exist (or is not a
    /// directory: a symlink is refused too).
    #[error("{} is not a directory ({kind}); nothing to adopt", dir.display())]
    AdoptNoDirectory {
        /// The path given.
        dir: PathBuf,
        /// What is there: `missing`, `symbolic link`, `regular file`, ...
        kind: &'static str,
    },
    /// `vm adopt` was given a directory a VM row already owns.
    #[error("VM {name} already owns {}; nothing to adopt (see `banger vm show {name}`)", dir.display())]
    AdoptNotOrphan {
        /// The VM.
        name: VmName,
        /// Its directory.
        dir: PathBuf,
    },
    /// A file `vm adopt` needs in the directory is missing or not a regular
    /// file of the right kind; nothing was changed.
    #[error("cannot adopt {}: its {file} is not usable", dir.display())]
    AdoptFileInvalid {
        /// The directory.
        dir: PathBuf,
        /// `work disk`, `overlay disk`, `SSH host key`, `SSH host public key`.
        file: &'static str,
        /// What is wrong with which file.
        #[source]
        source: banger_host::disk::BootFileError,
    },
    /// The directory of VM directories cannot be listed.
    #[error("cannot list {}", dir.display())]
    ListOrphans {
        /// `<state dir>/vms`.
        dir: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The requested image does not exist.
    #[error(
        "image {image} does not exist; see `banger image list`, or build it with `banger image build --name {image}`"
    )]
    ImageNotFound {
        /// The image.
        image: ImageName,
    },
    /// The VM's image or kernel was deleted (with `--force`) after it was made.
    #[error(
        "VM {name} cannot start: its image {image} was deleted; delete the VM (`banger vm delete {name}`)"
    )]
    ImageGone {
        /// The VM.
        name: VmName,
        /// The image it was made from.
        image: ImageName,
    },
    /// A file the VM boots from (rootfs, work seed, kernel, initrd, modules
    /// disk) is no longer what was registered: a symlink, FIFO, device,
    /// missing, or not in its format. Checked at every create and start.
    #[error(
        "the {role} of image {image} is not the file that was registered (restore it, or register the image again)"
    )]
    BootFileInvalid {
        /// The image the VM uses.
        image: ImageName,
        /// `rootfs`, `work seed`, `kernel`, `initrd`, `modules disk`.
        role: &'static str,
        /// What is wrong with which file.
        #[source]
        source: banger_host::disk::BootFileError,
    },
    /// The kernel has no file the chosen backend can boot.
    #[error("kernel {kernel} has no image the {backend} backend can boot")]
    KernelUnbootable {
        /// The kernel.
        kernel: String,
        /// The backend.
        backend: VmBackend,
    },
    /// No guest address is left in the configured range.
    #[error("cannot give the new VM an address")]
    AddressPoolExhausted(#[source] banger_host::net::addressing::AddressingError),
    /// The VM's state does not allow the operation.
    #[error("VM {name} is {state}; {hint}")]
    WrongState {
        /// The VM.
        name: VmName,
        /// Its state.
        state: VmState,
        /// What to do instead.
        hint: &'static str,
    },
    /// The host cannot run VMs right now.
    #[error("cannot start VM {name}")]
    HostUnavailable {
        /// The VM (or `(new)` before a name is chosen).
        name: String,
        /// Why, with the fix.
        #[source]
        source: crate::host::HostError,
    },
    /// A step of an operation failed.
    #[error("VM {name}: cannot {step}")]
    Step {
        /// The VM.
        name: VmName,
        /// What was being done.
        step: &'static str,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A worker task panicked or was cancelled (the daemon is stopping).
    #[error("cannot {step}: the worker task did not finish")]
    Task {
        /// What the task was doing.
        step: &'static str,
        /// Why.
        #[source]
        source: tokio::task::JoinError,
    },
    /// The daemon's record of the VM's VMM is unreadable; the VMM may
    /// still run, so nothing is started or signalled on a guess.
    #[error(
        "bangerd's record of VM {name}'s VMM cannot be read ({error}); its VMM may still be running: stop any QEMU or Firecracker process of this VM by hand, then run `banger vm stop {name}` to clear the record"
    )]
    CorruptHandle {
        /// The VM.
        name: VmName,
        /// Why the record does not parse.
        error: String,
    },
    /// SSH did not answer in time; the VM keeps running for inspection.
    #[error(
        "VM {name} started but SSH did not answer within {waited_secs} s; it is kept running for inspection: see `banger vm logs {name}` and `banger vm show {name}`"
    )]
    SshTimeout {
        /// The VM.
        name: VmName,
        /// Seconds waited.
        waited_secs: u64,
    },
    /// The VMM exited while the start waited for SSH (a guest kernel panic,
    /// a VMM error, a kill); the VM is in `error`, and a create removed it.
    #[error(
        "VM {name}: its VMM exited ({}) before SSH answered; the guest crashed or the VMM failed. `banger vm logs {name}` shows the whole console while the VM exists (a failed create removes it). Last console lines:\n{console_tail}",
        describe_exit(*.exit)
    )]
    VmmExited {
        /// The VM.
        name: VmName,
        /// How the VMM ended (`None`: it could not be told).
        exit: Option<banger_vmm::ExitInfo>,
        /// The last lines of the console log, control characters escaped.
        console_tail: String,
    },
    /// Too little free space for a pause to save the guest's memory; the
    /// VM keeps running.
    #[error(
        "VM {name} cannot be paused: its memory needs up to {needed} bytes in {} but only {available} are free; it keeps running",
        dir.display()
    )]
    NoSpaceToPause {
        /// The VM.
        name: VmName,
        /// Its directory.
        dir: PathBuf,
        /// Guest memory plus a margin.
        needed: u64,
        /// Free space there.
        available: u64,
    },
    /// A paused VM's saved memory is gone.
    #[error(
        "VM {name} is paused but its saved memory {} is missing; `banger vm stop {name}` discards the pause, then `banger vm start {name}` boots it",
        dir.display()
    )]
    MemoryMissing {
        /// The VM.
        name: VmName,
        /// The memory directory.
        dir: PathBuf,
    },
    /// The VM was paused under another backend than the daemon uses now.
    #[error(
        "VM {name} was paused under {paused_by} and cannot be resumed by {now}; set vmm = {paused_by} (or BANGER_VMM) to resume it, or `banger vm stop {name}` to discard the pause"
    )]
    BackendChanged {
        /// The VM.
        name: VmName,
        /// The backend that saved it.
        paused_by: String,
        /// The backend in use now.
        now: String,
    },
    /// An image operation failed (e.g. building the default image).
    #[error(transparent)]
    Image(#[from] crate::images::ImageError),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl VmError {
    fn step(
        name: &VmName,
        step: &'static str,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::Step {
            name: name.clone(),
            step,
            source: Box::new(source),
        }
    }

    /// The API error code: what a client may branch on.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::NotFound { .. } | Self::ImageNotFound { .. } | Self::AdoptNoDirectory { .. } => {
                ErrorCode::NotFound
            }
            Self::NameTaken { .. }
            | Self::ImageChanged { .. }
            | Self::AdoptNotOrphan { .. }
            | Self::WrongState { .. }
            | Self::ImageGone { .. }
            | Self::OrphanDirectory { .. }
            // Not bad_request: the request is fine, the registered image
            // it names is damaged on disk (state conflicts with the record).
            | Self::BootFileInvalid { .. }
            | Self::MemoryMissing { .. }
            | Self::BackendChanged { .. }
            | Self::CorruptHandle { .. } => ErrorCode::Conflict,
            Self::VcpusOutOfRange { .. }
            | Self::MemoryTooSmall { .. }
            | Self::MemoryTooLarge { .. }
            | Self::DiskTooLarge { .. }
            | Self::DiskTooSmall { .. }
            | Self::SocketPathTooLong { .. }
            | Self::DiskSmallerThanSeed { .. }
            | Self::DiskShrink { .. }
            | Self::DiskUnaligned { .. }
            | Self::KernelUnbootable { .. }
            | Self::AdoptOutsideState { .. }
            | Self::AdoptFileInvalid { .. } => ErrorCode::BadRequest,
            Self::AddressPoolExhausted(_)
            | Self::NoSpaceToPause { .. }
            | Self::HostUnavailable { .. }
            | Self::HostMemoryUnknown { .. } => ErrorCode::Unavailable,
            Self::SshTimeout { .. } => ErrorCode::SshTimeout,
            Self::Image(error) => error.code(),
            // Not `unavailable`: nothing about the host is missing, and a retry
            // meets the same crash; like a VMM that fails to start, it is a
            // failure of the work, and the message carries the guest's words.
            Self::Step { .. }
            | Self::Task { .. }
            | Self::Store(_)
            | Self::VmmExited { .. }
            | Self::ListOrphans { .. } => ErrorCode::Internal,
        }
    }
}

/// Human text for how a VMM ended.
fn describe_exit(exit: Option<banger_vmm::ExitInfo>) -> String {
    match exit {
        Some(banger_vmm::ExitInfo::Code { code }) => format!("exit code {code}"),
        Some(banger_vmm::ExitInfo::Signal { signal }) => format!("killed by signal {signal}"),
        Some(banger_vmm::ExitInfo::Unknown) | None => "exit status unknown".to_owned(),
    }
}

/// `<state dir>/vms/<name>`.
pub fn vm_dir(state_dir: &Path, name: &VmName) -> PathBuf {
    state_dir.join("vms").join(name.as_str())
}

/// `<runtime dir>/vms/<name>`.
pub fn run_dir(runtime_dir: &Path, name: &VmName) -> PathBuf {
    runtime_dir.join("vms").join(name.as_str())
}

/// The console log of a VM.
pub fn console_log(dir: &Path) -> PathBuf {
    dir.join("console.log")
}

/// banger's known_hosts file.
pub fn known_hosts(state_dir: &Path) -> PathBuf {
    state_dir.join("ssh").join("known_hosts")
}

/// The alias a VM's host key is recorded under.
pub fn host_alias(name: &VmName) -> String {
    format!("{name}.vm")
}

/// The API view of a row.
pub fn info(state: &AppState, row: &VmRow) -> VmInfo {
    let pid = row
        .vmm
        .recorded()
        .filter(|_| row.state.can_stop())
        .map(|running| running.vmm.pid);
    VmInfo {
        name: row.name.clone(),
        state: row.state,
        image: row.image_id.map(|_| row.image_name.clone()),
        vcpus: row.vcpus,
        memory_mib: row.memory_mib,
        disk_bytes: row.disk_bytes,
        ip: row.ip,
        mac: row.mac.clone(),
        vsock_cid: row.vsock_cid,
        tap: row.tap.clone(),
        backend: row.backend,
        pid,
        dir: row.dir.display().to_string(),
        console_log: console_log(&row.dir).display().to_string(),
        last_error: row.last_error.clone(),
        nat: row.nat,
        saved_memory_bytes: (row.state == VmState::Paused)
            .then(|| pause::dir_bytes(&memory_dir(&row.dir))),
        disks: disk_usage(&row.dir),
        ssh: SshInfo {
            user: "root".to_owned(),
            ip: row.ip,
            host_alias: host_alias(&row.name),
            identity: state.config().ssh_key_path.display().to_string(),
            known_hosts: known_hosts(&state.paths().state_dir).display().to_string(),
        },
        created_at: row.created_at,
        updated_at: row.updated_at,
    }
}

/// The VM's own disks in `dir` (overlay, then work disk) with their host
/// usage; a missing file (a create that stopped early) is left out.
pub fn disk_usage(dir: &Path) -> Vec<VmDiskUsage> {
    [("overlay", "overlay.ext4"), ("work", "work.ext4")]
        .into_iter()
        .filter_map(|(name, file)| {
            let path = dir.join(file);
            let usage = banger_host::disk::file_usage(&path).ok()?;
            Some(VmDiskUsage {
                name: name.to_owned(),
                path: path.display().to_string(),
                size_bytes: usage.apparent_bytes,
                allocated_bytes: usage.allocated_bytes,
            })
        })
        .collect()
}

/// The VM called `name`.
pub fn row(store: &Store, name: &VmName) -> Result<VmRow, VmError> {
    store
        .vm(name)?
        .ok_or_else(|| VmError::NotFound { name: name.clone() })
}

/// All VMs.
pub fn list(state: &AppState) -> Result<Vec<VmInfo>, VmError> {
    let rows = state.store().vms()?;
    Ok(rows.iter().map(|row| info(state, row)).collect())
}

/// One VM.
pub fn show(state: &AppState, name: &VmName) -> Result<VmInfo, VmError> {
    let row = row(&state.store(), name)?;
    Ok(info(state, &row))
}

/// Records `row` in `new_state` with `error` as its last error, together
/// with its other fields: the step before acting. The store checks the move
/// against the state machine (`VmState::valid_transition`); staying in the
/// same state only updates the fields and the reason.
pub fn set_state(
    state: &AppState,
    row: &mut VmRow,
    new_state: VmState,
    error: Option<String>,
) -> Result<(), VmError> {
    row.last_error = error;
    let mut store = state.store();
    if row.state == new_state {
        store.update_vm(row)?;
    } else {
        store.set_vm_state(row, new_state)?;
    }
    Ok(())
}

/// The VM's recorded VMM, if any; an unreadable record is an error that
/// names the VM, never "not running".
pub fn recorded_vmm(vm: &VmRow) -> Result<Option<&RunningVm>, VmError> {
    match &vm.vmm {
        VmmHandle::None => Ok(None),
        VmmHandle::Recorded(running) => Ok(Some(running)),
        VmmHandle::Corrupt { error, .. } => Err(VmError::CorruptHandle {
            name: vm.name.clone(),
            error: error.clone(),
        }),
    }
}

/// Why `/proc/meminfo` gave no memory size.
#[derive(Debug, thiserror::Error)]
pub enum HostMemoryProblem {
    /// The file cannot be read.
    #[error("{0}")]
    Read(#[from] std::io::Error),
    /// No parsable `MemTotal: <n> kB` line.
    #[error("no `MemTotal: <n> kB` line")]
    NoMemTotal,
}

/// Where the host's memory size is read from.
const MEMINFO: &str = "/proc/meminfo";

/// The host's total memory in MiB, read from `/proc/meminfo` once (a
/// failed read is tried again next time).
pub fn host_memory_mib() -> Result<u64, VmError> {
    static HOST_MEMORY_MIB: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    if let Some(mib) = HOST_MEMORY_MIB.get() {
        return Ok(*mib);
    }
    let unknown = |problem| VmError::HostMemoryUnknown {
        path: PathBuf::from(MEMINFO),
        problem,
    };
    let text =
        fs_err::read_to_string(MEMINFO).map_err(|error| unknown(HostMemoryProblem::Read(error)))?;
    let kib = parse_mem_total(&text).ok_or_else(|| unknown(HostMemoryProblem::NoMemTotal))?;
    Ok(*HOST_MEMORY_MIB.get_or_init(|| kib / 1024))
}

/// `MemTotal` in KiB from the text of `/proc/meminfo`.
fn parse_mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))?;
    let mut fields = line.split_whitespace();
    let kib = fields.next()?.parse().ok()?;
    (fields.next() == Some("kB")).then_some(kib)
}

/// The resources a `vm create` or `vm set` asks for; `None` keeps the
/// default (create) or the current value (set).
#[derive(Debug, Clone, Copy, Default)]
pub struct ResourceRequest {
    /// vCPUs.
    pub vcpus: Option<u8>,
    /// Memory in MiB.
    pub memory_mib: Option<u32>,
    /// Work disk size in bytes.
    pub disk_bytes: Option<u64>,
}

/// Most vCPUs a VM may have on a host with `cores` cores.
fn max_vcpus(cores: usize) -> usize {
    cores.max(32)
}

/// The smallest work disk: a create or `vm set` asking for less is refused
/// before anything is made (a create would otherwise first resolve, and
/// perhaps build, its image).
pub const MIN_DISK_BYTES: u64 = 1 << 20;

/// Checks requested resources against their bounds, before anything is
/// made: 1 to [`max_vcpus`] vCPUs, [`MIN_MEMORY_MIB`] to the host's memory
/// (`host_memory_mib` is asked only when memory is requested) and a disk of
/// at most `max_disk_bytes`. Every value past a bound is a `bad_request`
/// naming the value and the limit.
pub fn check_bounds(
    request: ResourceRequest,
    cores: usize,
    max_disk_bytes: u64,
    host_memory_mib: impl FnOnce() -> Result<u64, VmError>,
) -> Result<(), VmError> {
    if let Some(vcpus) = request.vcpus {
        let max = max_vcpus(cores);
        if vcpus == 0 || usize::from(vcpus) > max {
            return Err(VmError::VcpusOutOfRange { vcpus, max });
        }
    }
    if let Some(memory) = request.memory_mib {
        if memory < MIN_MEMORY_MIB {
            return Err(VmError::MemoryTooSmall { memory_mib: memory });
        }
        let host_mib = host_memory_mib()?;
        if u64::from(memory) > host_mib {
            return Err(VmError::MemoryTooLarge {
                memory_mib: memory,
                host_mib,
            });
        }
    }
    if let Some(disk_bytes) = request.disk_bytes {
        if disk_bytes < MIN_DISK_BYTES {
            return Err(VmError::DiskTooSmall {
                disk_bytes,
                min_bytes: MIN_DISK_BYTES,
            });
        }
        if disk_bytes > max_disk_bytes {
            return Err(VmError::DiskTooLarge {
                disk_bytes,
                max_bytes: max_disk_bytes,
            });
        }
    }
    Ok(())
}

/// The resources a create request asks for.
pub fn resource_request(request: &banger_api::vms::VmCreateRequest) -> ResourceRequest {
    ResourceRequest {
        vcpus: request.vcpus,
        memory_mib: request.memory_mib,
        disk_bytes: request.disk_bytes,
    }
}

/// Validates requested resources against this host and the config
/// (`max_disk_size`); shared by create and set.
pub fn check_resources(state: &AppState, request: ResourceRequest) -> Result<(), VmError> {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    check_bounds(
        request,
        cores,
        state.config().max_disk_size,
        host_memory_mib,
    )
}

/// Changes a VM: vCPUs, memory and work disk size (grow only) of a stopped
/// VM, and NAT in any state (applied at once to a running VM).
pub async fn set(
    state: &AppState,
    name: &VmName,
    request: &VmSetRequest,
) -> Result<VmInfo, VmError> {
    check_resources(
        state,
        ResourceRequest {
            vcpus: request.vcpus,
            memory_mib: request.memory_mib,
            disk_bytes: request.disk_bytes,
        },
    )?;
    let lock = state.vm_lock(name);
    let _guard = lock.lock().await;
    let mut vm = row(&state.store(), name)?;
    let resources_change =
        request.vcpus.is_some() || request.memory_mib.is_some() || request.disk_bytes.is_some();
    if resources_change && !vm.state.is_at_rest() {
        return Err(VmError::WrongState {
            name: name.clone(),
            state: vm.state,
            hint: "stop it first (`banger vm stop`); only --nat/--no-nat change a running VM",
        });
    }
    if let Some(bytes) = request.disk_bytes {
        if bytes < vm.disk_bytes {
            return Err(VmError::DiskShrink {
                name: name.clone(),
                current: vm.disk_bytes,
                requested: bytes,
            });
        }
        if bytes % 4096 != 0 {
            return Err(VmError::DiskUnaligned { bytes, unit: 4096 });
        }
        if bytes > vm.disk_bytes {
            let work = vm.dir.join("work.ext4");
            let grow_name = name.clone();
            tokio::task::spawn_blocking(move || banger_host::disk::clone::grow_ext4(&work, bytes))
                .await
                .map_err(|join| VmError::step(&grow_name, "grow the work disk", join))?
                .map_err(|error| VmError::step(name, "grow the work disk", error))?;
            vm.disk_bytes = bytes;
        }
    }
    if let Some(vcpus) = request.vcpus {
        vm.vcpus = vcpus;
    }
    if let Some(memory) = request.memory_mib {
        vm.memory_mib = memory;
    }
    let nat_changed = request.nat.is_some_and(|nat| nat != vm.nat);
    if let Some(nat) = request.nat {
        vm.nat = nat;
    }
    state.store().update_vm(&vm)?;
    if nat_changed && vm.state.can_stop() {
        firewall::apply(state)
            .await
            .map_err(|error| VmError::step(name, "apply its NAT rules", error))?;
    }
    Ok(info(state, &vm))
}

/// Restarts a VM: stop (if running), then start.
pub async fn restart(
    state: &AppState,
    name: &VmName,
    progress: &crate::progress::ProgressSink,
) -> Result<VmInfo, VmError> {
    let current = row(&state.store(), name)?;
    if current.state.can_stop() {
        stop(state, name).await?;
    }
    start(state, name, progress).await
}

pub use crate::state::VmLock;

#[cfg(test)]
mod tests;
