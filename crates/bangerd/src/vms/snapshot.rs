//! `vm snapshot create/list/delete/restore`: a VM's disks, and its memory
//! when it runs or is paused, kept at one instant under
//! `<vm dir>/snapshots/<name>/` (owner-only, deleted with the VM).
//!
//! A running VM is paused for the copy (its memory goes to `memory/` as a
//! pause writes it, the disks are cloned while no vCPU runs) and resumed
//! right after, so memory and disks agree. Disk copies are reflinks where
//! the filesystem has them, else sparse copies; the memory files are hard
//! links of the pause's files (the resume only unlinks its own names).
//! Everything is written to `snapshots/.<name>.partial/` first and renamed
//! into place at the end, so a failed or interrupted snapshot leaves no
//! half snapshot behind (a leftover partial directory is removed by the
//! next snapshot of that name).

use std::path::{Path, PathBuf};

use banger_api::snapshots::{SnapshotCreateRequest, SnapshotDeleted, SnapshotInfo};
use banger_api::vms::{VmBackend, VmInfo, VmState};
use banger_api::{ErrorCode, SnapshotName, VmName};
use serde::{Deserialize, Serialize};

use super::pause::{self, ResumeAs};
use super::{VmError, info, row, set_state};
use crate::progress::ProgressSink;
use crate::state::AppState;

/// The disks a snapshot copies, by file name in the VM directory.
pub const DISK_FILES: [&str; 2] = ["overlay.ext4", "work.ext4"];
/// The record of a snapshot inside its directory.
const META_FILE: &str = "snapshot.json";
/// Space kept free beyond what a snapshot writes.
const SPACE_MARGIN: u64 = 256 << 20;

/// Failures of snapshots and forks; each names the VM.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// A VM operation failed (not found, wrong state, pause or resume).
    #[error(transparent)]
    Vm(#[from] VmError),
    /// No snapshot of that name.
    #[error("VM {vm} has no snapshot {name}; see `banger vm snapshot list {vm}`")]
    NotFound {
        /// The VM.
        vm: VmName,
        /// The snapshot asked for.
        name: SnapshotName,
    },
    /// The name is taken.
    #[error("VM {vm} already has a snapshot {name}; pick another name or delete it first")]
    Exists {
        /// The VM.
        vm: VmName,
        /// The snapshot.
        name: SnapshotName,
    },
    /// Too little free space; nothing was written and the VM is unchanged.
    #[error(
        "VM {vm}: {what} needs up to {needed} bytes in {} but only {available} are free; nothing was changed",
        dir.display()
    )]
    NoSpace {
        /// The VM.
        vm: VmName,
        /// What was to be written.
        what: &'static str,
        /// Where.
        dir: PathBuf,
        /// Bytes needed, margin included.
        needed: u64,
        /// Bytes free.
        available: u64,
    },
    /// The snapshot's memory was saved by another backend than the
    /// daemon's.
    #[error(
        "snapshot {name} of VM {vm} holds memory saved by {saved_by} and cannot be restored by {now}; set vmm = {saved_by} (or BANGER_VMM) to restore it"
    )]
    BackendMismatch {
        /// The VM.
        vm: VmName,
        /// The snapshot.
        name: SnapshotName,
        /// Who saved it.
        saved_by: VmBackend,
        /// The daemon's backend.
        now: VmBackend,
    },
    /// A snapshot's record cannot be read.
    #[error("snapshot {} of VM {vm} is unreadable; remove it with `banger vm snapshot delete`", dir.display())]
    Unreadable {
        /// The VM.
        vm: VmName,
        /// Its directory.
        dir: PathBuf,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A file step failed.
    #[error("VM {vm}: cannot {step}")]
    Io {
        /// The VM.
        vm: VmName,
        /// What was being done.
        step: &'static str,
        /// The cause (it names the path).
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A fork's count or names are invalid.
    #[error(transparent)]
    ForkNames(#[from] banger_api::snapshots::ForkNamesError),
    /// A worker task died.
    #[error("cannot {step}: the worker task did not finish")]
    Task {
        /// What it was doing.
        step: &'static str,
        /// Why.
        #[source]
        source: tokio::task::JoinError,
    },
}

impl SnapshotError {
    /// The API error code.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Vm(error) => error.code(),
            Self::NotFound { .. } => ErrorCode::NotFound,
            Self::Exists { .. } | Self::BackendMismatch { .. } | Self::Unreadable { .. } => {
                ErrorCode::Conflict
            }
            Self::ForkNames(_) => ErrorCode::BadRequest,
            Self::NoSpace { .. } => ErrorCode::Unavailable,
            Self::Io { .. } | Self::Task { .. } => ErrorCode::Internal,
        }
    }

    pub(super) fn io(
        vm: &VmName,
        step: &'static str,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::Io {
            vm: vm.clone(),
            step,
            source: Box::new(source),
        }
    }
}

impl From<crate::store::StoreError> for SnapshotError {
    fn from(error: crate::store::StoreError) -> Self {
        Self::Vm(VmError::Store(error))
    }
}

/// What `snapshot.json` records.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Meta {
    vm_state: VmState,
    memory: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    backend: Option<VmBackend>,
    created_at: i64,
}

/// What a capture saved.
#[derive(Debug, Clone, Copy)]
pub(super) struct Captured {
    /// The VM's state when captured.
    pub vm_state: VmState,
    /// Whether memory was saved (in `<dest>/memory/`).
    pub memory: bool,
    /// The backend that saved it.
    pub backend: Option<VmBackend>,
}

/// `<vm dir>/snapshots`.
pub fn snapshots_dir(vm_dir: &Path) -> PathBuf {
    vm_dir.join("snapshots")
}

fn snapshot_dir(vm_dir: &Path, name: &SnapshotName) -> PathBuf {
    snapshots_dir(vm_dir).join(name.as_str())
}

fn partial_snapshot_dir(vm_dir: &Path, name: &SnapshotName) -> PathBuf {
    snapshots_dir(vm_dir).join(format!(".{name}.partial"))
}

/// Bytes allocated on the host to the files under `path` (reflinked
/// extents counted in full).
pub fn allocated_bytes(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = fs_err::symlink_metadata(path) else {
        return 0;
    };
    if meta.is_dir() {
        fs_err::read_dir(path)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|entry| allocated_bytes(&entry.path()))
                    .sum()
            })
            .unwrap_or(0)
    } else {
        meta.blocks() * 512
    }
}

/// Free bytes for an unprivileged writer under `dir`.
fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    let stat = rustix::fs::statvfs(dir).map_err(std::io::Error::from)?;
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
}

/// Refuses when `needed` (plus a margin) does not fit under `dir`.
pub(super) fn check_space(
    vm: &VmName,
    what: &'static str,
    dir: &Path,
    needed: u64,
) -> Result<(), SnapshotError> {
    let needed = needed + SPACE_MARGIN;
    let available =
        free_bytes(dir).map_err(|error| SnapshotError::io(vm, "measure free space", error))?;
    if available < needed {
        return Err(SnapshotError::NoSpace {
            vm: vm.clone(),
            what,
            dir: dir.to_owned(),
            needed,
            available,
        });
    }
    Ok(())
}

/// Saves VM `name` (its lock held by the caller) into the new directory
/// `dest`: disks always, memory when it runs or is paused. A running VM is
/// paused for the copy and resumed after it, whatever the copy's outcome;
/// on failure `dest` is removed.
pub(super) async fn capture_locked(
    state: &AppState,
    name: &VmName,
    dest: &Path,
    progress: &ProgressSink,
) -> Result<Captured, SnapshotError> {
    let vm = row(&state.store(), name)?;
    super::recorded_vmm(&vm)?;
    let running = match vm.state {
        VmState::Running => true,
        VmState::Paused | VmState::Created | VmState::Stopped => false,
        other => {
            return Err(VmError::WrongState {
                name: name.clone(),
                state: other,
                hint: "a snapshot needs a running, paused or stopped VM; wait for the current operation to finish",
            }
            .into());
        }
    };
    let disks: u64 = DISK_FILES
        .iter()
        .map(|disk| allocated_bytes(&vm.dir.join(disk)))
        .sum();
    let memory = if running {
        u64::from(vm.memory_mib) << 20
    } else {
        0
    };
    check_space(name, "the snapshot", &vm.dir, disks + memory)?;
    if running {
        progress.stage(
            "pause",
            format!("pausing VM {name} to save its memory and disks at one instant"),
        );
        pause::pause_locked(state, name).await?;
    }
    let saved = {
        let (vm_dir, dest) = (vm.dir.clone(), dest.to_owned());
        let with_memory = running || vm.state == VmState::Paused;
        tokio::task::spawn_blocking(move || copy_vm_files(&vm_dir, &dest, with_memory)).await
    };
    let after = row(&state.store(), name)?;
    let captured = Captured {
        vm_state: vm.state,
        memory: running || vm.state == VmState::Paused,
        backend: after.backend,
    };
    if running {
        progress.stage("resume", format!("resuming VM {name}"));
        let resumed = pause::resume_locked(state, name, progress).await;
        if let Err(error) = resumed {
            let _ = pause::remove_if_present(dest);
            return Err(error.into());
        }
    }
    match saved {
        Ok(Ok(())) => Ok(captured),
        Ok(Err(error)) => {
            let _ = pause::remove_if_present(dest);
            Err(SnapshotError::io(name, "copy its disks and memory", error))
        }
        Err(join) => {
            let _ = pause::remove_if_present(dest);
            Err(SnapshotError::Task {
                step: "copy the disks and memory",
                source: join,
            })
        }
    }
}

/// Makes `dest` (0700) and copies the VM's disks into it, and with
/// `with_memory` hard links of its saved memory into `dest/memory/`.
fn copy_vm_files(vm_dir: &Path, dest: &Path, with_memory: bool) -> std::io::Result<()> {
    pause::remove_if_present(dest)?;
    if let Some(parent) = dest.parent() {
        banger_config::paths::ensure_private_dir(parent).map_err(std::io::Error::other)?;
    }
    banger_config::paths::ensure_private_dir(dest).map_err(std::io::Error::other)?;
    for disk in DISK_FILES {
        banger_host::disk::clone::clone_file(&vm_dir.join(disk), &dest.join(disk))
            .map_err(std::io::Error::other)?;
    }
    if with_memory {
        link_memory(&pause::memory_dir(vm_dir), &dest.join("memory"))?;
    }
    Ok(())
}

/// Hard links every file of the memory directory `from` into the new
/// directory `to` (0700).
pub(super) fn link_memory(from: &Path, to: &Path) -> std::io::Result<()> {
    banger_config::paths::ensure_private_dir(to).map_err(std::io::Error::other)?;
    for entry in fs_err::read_dir(from)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            fs_err::hard_link(entry.path(), to.join(entry.file_name()))?;
        }
    }
    Ok(())
}

/// A generated snapshot name: `s-` and the UTC time to the second, e.g.
/// `s-20261130-141502`.
fn generated_name() -> Option<SnapshotName> {
    SnapshotName::parse(&format!("s-{}", utc_stamp(crate::store::unix_now()))).ok()
}

/// `YYYYMMDD-HHMMSS` of a Unix time, in UTC (proleptic Gregorian; the
/// days-to-civil conversion of Howard Hinnant's date algorithms).
fn utc_stamp(unix_secs: i64) -> String {
    let days = unix_secs.div_euclid(86_400);
    let secs = unix_secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}-{:02}{:02}{:02}",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Takes a snapshot of VM `name`.
pub async fn create(
    state: &AppState,
    name: &VmName,
    request: &SnapshotCreateRequest,
    progress: &ProgressSink,
) -> Result<SnapshotInfo, SnapshotError> {
    let lock = state.vm_lock(name);
    let _guard = lock.lock().await;
    let vm = row(&state.store(), name)?;
    let Some(snapshot) = request.name.clone().or_else(generated_name) else {
        return Err(SnapshotError::io(
            name,
            "name the snapshot",
            std::io::Error::other("the clock gives no usable time; pass --name"),
        ));
    };
    let dir = snapshot_dir(&vm.dir, &snapshot);
    if dir.exists() {
        return Err(SnapshotError::Exists {
            vm: name.clone(),
            name: snapshot,
        });
    }
    let partial = partial_snapshot_dir(&vm.dir, &snapshot);
    let captured = capture_locked(state, name, &partial, progress).await?;
    let meta = Meta {
        vm_state: captured.vm_state,
        memory: captured.memory,
        backend: captured.backend.filter(|_| captured.memory),
        created_at: crate::store::unix_now(),
    };
    let published = (|| -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let text = serde_json::to_vec_pretty(&meta)?;
        fs_err::write(partial.join(META_FILE), text)?;
        fs_err::rename(&partial, &dir)?;
        Ok(())
    })();
    if let Err(source) = published {
        let _ = pause::remove_if_present(&partial);
        return Err(SnapshotError::Io {
            vm: name.clone(),
            step: "record the snapshot",
            source,
        });
    }
    tracing::info!(vm = %name, snapshot = %snapshot, memory = meta.memory, "snapshot taken");
    Ok(snapshot_info(name, &snapshot, &dir, &meta))
}

fn snapshot_info(vm: &VmName, name: &SnapshotName, dir: &Path, meta: &Meta) -> SnapshotInfo {
    SnapshotInfo {
        vm: vm.clone(),
        name: name.clone(),
        vm_state: meta.vm_state,
        memory: meta.memory,
        backend: meta.backend,
        bytes: allocated_bytes(dir),
        created_at: meta.created_at,
    }
}

fn read_meta(vm: &VmName, dir: &Path) -> Result<Meta, SnapshotError> {
    let unreadable = |source: Box<dyn std::error::Error + Send + Sync>| SnapshotError::Unreadable {
        vm: vm.clone(),
        dir: dir.to_owned(),
        source,
    };
    let text = fs_err::read(dir.join(META_FILE)).map_err(|error| unreadable(Box::new(error)))?;
    serde_json::from_slice(&text).map_err(|error| unreadable(Box::new(error)))
}

/// The snapshots of VM `name`, oldest first.
pub fn list(state: &AppState, name: &VmName) -> Result<Vec<SnapshotInfo>, SnapshotError> {
    let vm = row(&state.store(), name)?;
    let root = snapshots_dir(&vm.dir);
    let entries = match fs_err::read_dir(&root) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(SnapshotError::io(name, "list its snapshots", error)),
    };
    let mut snapshots = Vec::new();
    for entry in entries.flatten() {
        let Some(snapshot) = entry
            .file_name()
            .to_str()
            .and_then(|text| SnapshotName::parse(text).ok())
        else {
            continue;
        };
        let dir = entry.path();
        match read_meta(name, &dir) {
            Ok(meta) => snapshots.push(snapshot_info(name, &snapshot, &dir, &meta)),
            Err(error) => {
                tracing::warn!(vm = %name, snapshot = %snapshot, error = %crate::error::error_chain(&error), "skipping an unreadable snapshot");
            }
        }
    }
    snapshots.sort_by(|a, b| (a.created_at, &a.name).cmp(&(b.created_at, &b.name)));
    Ok(snapshots)
}

/// Deletes snapshot `snapshot` of VM `name`.
pub async fn delete(
    state: &AppState,
    name: &VmName,
    snapshot: &SnapshotName,
) -> Result<SnapshotDeleted, SnapshotError> {
    let lock = state.vm_lock(name);
    let _guard = lock.lock().await;
    let vm = row(&state.store(), name)?;
    let dir = snapshot_dir(&vm.dir, snapshot);
    if !dir.is_dir() {
        return Err(SnapshotError::NotFound {
            vm: name.clone(),
            name: snapshot.clone(),
        });
    }
    let bytes = allocated_bytes(&dir);
    fs_err::remove_dir_all(&dir)
        .map_err(|error| SnapshotError::io(name, "delete the snapshot", error))?;
    tracing::info!(vm = %name, snapshot = %snapshot, bytes, "snapshot deleted");
    Ok(SnapshotDeleted {
        vm: name.clone(),
        name: snapshot.clone(),
        bytes,
    })
}

/// Puts VM `name` back to snapshot `snapshot`: its disks are replaced by
/// the snapshot's, and a snapshot with memory resumes where it was taken
/// (else the VM is left stopped). The VM must not be running.
pub async fn restore(
    state: &AppState,
    name: &VmName,
    snapshot: &SnapshotName,
    progress: &ProgressSink,
) -> Result<VmInfo, SnapshotError> {
    let lock = state.vm_lock(name);
    let _guard = lock.lock().await;
    let mut vm = row(&state.store(), name)?;
    super::recorded_vmm(&vm)?;
    let dir = snapshot_dir(&vm.dir, snapshot);
    if !dir.is_dir() {
        return Err(SnapshotError::NotFound {
            vm: name.clone(),
            name: snapshot.clone(),
        });
    }
    let meta = read_meta(name, &dir)?;
    if !(vm.state.is_at_rest() || vm.state == VmState::Paused) {
        return Err(VmError::WrongState {
            name: name.clone(),
            state: vm.state,
            hint: "stop it first (`banger vm stop NAME`): a restore replaces its disks and memory",
        }
        .into());
    }
    if meta.memory {
        let (vmm, _) =
            state
                .host()
                .vmm(state.config())
                .map_err(|source| VmError::HostUnavailable {
                    name: name.to_string(),
                    source,
                })?;
        let now = super::boot::backend_name(vmm.kind());
        if let Some(saved_by) = meta.backend.filter(|saved_by| *saved_by != now) {
            return Err(SnapshotError::BackendMismatch {
                vm: name.clone(),
                name: snapshot.clone(),
                saved_by,
                now,
            });
        }
    }
    let disks: u64 = DISK_FILES
        .iter()
        .map(|disk| allocated_bytes(&dir.join(disk)))
        .sum();
    check_space(name, "the restore", &vm.dir, disks)?;
    progress.stage(
        "restore",
        format!("restoring VM {name} to snapshot {snapshot}"),
    );
    let copied = {
        let (vm_dir, dir, memory) = (vm.dir.clone(), dir.clone(), meta.memory);
        tokio::task::spawn_blocking(move || restore_files(&dir, &vm_dir, memory)).await
    };
    match copied {
        Ok(Ok(())) => {}
        Ok(Err(error)) => return Err(SnapshotError::io(name, "restore its files", error)),
        Err(join) => {
            return Err(SnapshotError::Task {
                step: "restore the files",
                source: join,
            });
        }
    }
    tracing::info!(vm = %name, snapshot = %snapshot, memory = meta.memory, "snapshot restored");
    if meta.memory {
        vm.backend = meta.backend.or(vm.backend);
        set_state(state, &mut vm, VmState::Paused, None)?;
        return Ok(pause::resume_as_locked(state, name, progress, ResumeAs::Itself).await?);
    }
    if vm.state == VmState::Paused {
        // Its own saved memory belonged to the disks just replaced.
        super::stop::finish_stopped(
            state,
            &mut vm,
            Some(format!(
                "restored to snapshot {snapshot} (disks only); its saved memory was discarded"
            )),
        )
        .await?;
    }
    Ok(info(state, &vm))
}

/// Replaces the VM's disks with the snapshot's (each copied beside the
/// original, then renamed over it) and, with `memory`, its saved memory
/// with links to the snapshot's.
fn restore_files(snapshot: &Path, vm_dir: &Path, memory: bool) -> std::io::Result<()> {
    let mut staged = Vec::new();
    for disk in DISK_FILES {
        let target = vm_dir.join(disk);
        let temporary = vm_dir.join(format!("{disk}.restoring"));
        let _ = fs_err::remove_file(&temporary);
        if let Err(error) = banger_host::disk::clone::clone_file(&snapshot.join(disk), &temporary) {
            for (temporary, _) in &staged {
                let _ = fs_err::remove_file(temporary);
            }
            return Err(std::io::Error::other(error));
        }
        staged.push((temporary, target));
    }
    let saved = pause::memory_dir(vm_dir);
    pause::remove_if_present(&saved)?;
    for (temporary, target) in staged {
        fs_err::rename(&temporary, &target)?;
    }
    if memory {
        let partial = pause::partial_dir(vm_dir);
        pause::remove_if_present(&partial)?;
        link_memory(&snapshot.join("memory"), &partial)?;
        fs_err::rename(&partial, &saved)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_names_are_utc_stamps() {
        assert_eq!(utc_stamp(0), "19700101-000000");
        assert_eq!(utc_stamp(1_796_048_102), "20261130-141502");
        assert_eq!(utc_stamp(951_782_400), "20000229-000000");
        assert!(generated_name().is_some());
    }

    /// A 4 MiB tmpfs cannot take a snapshot: the refusal names the bytes
    /// needed and free, and nothing is written there.
    #[test]
    fn a_snapshot_that_does_not_fit_is_refused_before_writing() {
        let Some(tmpfs) = banger_testkit::tmpfs::SmallTmpfs::mount("4m") else {
            return;
        };
        let vm = VmName::parse("tiny").expect("name");
        let refused = check_space(&vm, "the snapshot", tmpfs.path(), 64 << 20);
        let entries = fs_err::read_dir(tmpfs.path()).expect("list").count();
        match refused {
            Err(SnapshotError::NoSpace {
                needed, available, ..
            }) => {
                assert!(needed > available, "{needed} {available}");
            }
            other => panic!("expected NoSpace, got {other:?}"),
        }
        assert_eq!(entries, 0);
        assert!(check_space(&vm, "the snapshot", Path::new("/"), 0).is_ok());
    }
}
