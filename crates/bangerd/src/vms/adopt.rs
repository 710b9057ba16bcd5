//! `vm adopt`: re-register an orphaned VM directory, and list orphans.
//!
//! An orphan is a directory `<state dir>/vms/<name>` that no VM row owns
//! (say, after the database was moved away). Its disks are someone's data:
//! banger never builds into it nor removes it. Adopt records a new row for
//! it as it is: the same name, disks and host key, a fresh address and CID.
//! Only a path that is exactly `<state dir>/vms/<name>` for a valid VM name
//! is adopted, never an arbitrary one, and every file is checked (regular,
//! not a symlink or FIFO, ext4 disks) before anything changes; on failure
//! nothing is changed. The row is `created` (the only state a row may be
//! inserted in): the first start boots the adopted disks as they are.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use banger_api::VmName;
use banger_api::vms::{VmAdoptRequest, VmInfo, VmOrphan};
use banger_host::disk::{BootFileError, BootFileKind};

use super::create::created_row;
use super::{ResourceRequest, VmError, check_resources, host_alias, known_hosts, vm_dir};
use crate::state::AppState;

/// Longest host public key line read (an ed25519 line is about 100 bytes).
const MAX_PUBLIC_KEY_BYTES: u64 = 4096;

/// Re-registers the orphaned VM directory `request.dir` as VM `<name>` in
/// state `created`, with its disks untouched.
pub async fn adopt(state: &AppState, request: &VmAdoptRequest) -> Result<VmInfo, VmError> {
    check_resources(
        state,
        ResourceRequest {
            vcpus: request.vcpus,
            memory_mib: request.memory_mib,
            disk_bytes: None,
        },
    )?;
    let name = adoptable_name(&state.paths().state_dir, Path::new(&request.dir))?;
    let lock = state.vm_lock(&name);
    let _guard = lock.lock().await;
    let worker_state = state.clone();
    let request = request.clone();
    tokio::task::spawn_blocking(move || adopt_locked(&worker_state, &name, &request))
        .await
        .map_err(|source| VmError::Task {
            step: "adopt a VM directory",
            source,
        })?
}

/// The VM name of `dir` when it is exactly `<state dir>/vms/<name>`.
fn adoptable_name(state_dir: &Path, dir: &Path) -> Result<VmName, VmError> {
    let vms_dir = state_dir.join("vms");
    let outside = || VmError::AdoptOutsideState {
        dir: dir.to_owned(),
        vms_dir: vms_dir.clone(),
    };
    if dir
        .components()
        .any(|component| matches!(component, Component::ParentDir | Component::CurDir))
    {
        return Err(outside());
    }
    let name = dir
        .file_name()
        .and_then(|name| name.to_str())
        .and_then(|name| VmName::parse(name).ok())
        .ok_or_else(outside)?;
    if vm_dir(state_dir, &name) != dir {
        return Err(outside());
    }
    Ok(name)
}

fn adopt_locked(
    state: &AppState,
    name: &VmName,
    request: &VmAdoptRequest,
) -> Result<VmInfo, VmError> {
    let paths = state.paths();
    let dir = vm_dir(&paths.state_dir, name);
    match fs_err::symlink_metadata(&dir) {
        Ok(metadata) if metadata.is_dir() => {}
        Ok(metadata) => {
            let kind = if metadata.is_symlink() {
                "symbolic link"
            } else if metadata.is_file() {
                "regular file"
            } else {
                "special file"
            };
            return Err(VmError::AdoptNoDirectory { dir, kind });
        }
        Err(_) => {
            return Err(VmError::AdoptNoDirectory {
                dir,
                kind: "missing",
            });
        }
    }
    if state.store().vm_name_taken(name)? {
        return Err(VmError::AdoptNotOrphan {
            name: name.clone(),
            dir,
        });
    }
    let invalid = |file: &'static str| {
        let dir = dir.clone();
        move |source: BootFileError| VmError::AdoptFileInvalid { dir, file, source }
    };
    let work = dir.join("work.ext4");
    banger_host::disk::check_boot_file(&work, BootFileKind::Ext4).map_err(invalid("work disk"))?;
    banger_host::disk::check_boot_file(&dir.join("overlay.ext4"), BootFileKind::Ext4)
        .map_err(invalid("overlay disk"))?;
    banger_host::disk::check_boot_file(&dir.join("ssh_host_ed25519_key"), BootFileKind::NonEmpty)
        .map_err(invalid("SSH host key"))?;
    let public_line = read_public_key(&dir.join("ssh_host_ed25519_key.pub"))
        .map_err(invalid("SSH host public key"))?;
    let (_, work_meta) = banger_host::disk::open_regular(&work).map_err(invalid("work disk"))?;
    let image_name = request
        .image
        .clone()
        .unwrap_or_else(|| state.config().default_image_name.clone());

    let row = {
        let mut store = state.store();
        let image = store
            .image(&image_name)?
            .ok_or_else(|| VmError::ImageNotFound {
                image: image_name.clone(),
            })?;
        // Again under the store lock: a create of this name inserts its row
        // before it makes the directory.
        if store.vm_name_taken(name)? {
            return Err(VmError::AdoptNotOrphan {
                name: name.clone(),
                dir,
            });
        }
        let mut row = created_row(
            &store,
            state.config(),
            name.clone(),
            dir.clone(),
            &image,
            ResourceRequest {
                vcpus: request.vcpus,
                memory_mib: request.memory_mib,
                disk_bytes: Some(work_meta.len()),
            },
            request.nat,
        )?;
        row.id = store.insert_vm(&row)?;
        row
    };
    if let Err(error) = banger_host::ssh::known_hosts::set_host(
        &known_hosts(&paths.state_dir),
        &host_alias(name),
        &public_line,
    ) {
        // Nothing changed: the row goes again; the directory was only read.
        if let Err(store_error) = state.store().delete_vm(row.id) {
            tracing::error!(vm = %name, error = %crate::error::error_chain(&store_error), "cannot remove the row of a failed adopt");
        }
        return Err(VmError::step(
            name,
            "record its host key in known_hosts",
            error,
        ));
    }
    if let Err(error) = state.dns().records.set(row.name.as_str(), row.ip) {
        tracing::warn!(vm = %row.name, %error, "cannot add DNS record");
    }
    tracing::info!(vm = %name, ip = %row.ip, image = %row.image_name, "VM directory adopted");
    Ok(super::info(state, &row))
}

/// The first line of the host public key file, opened like a boot file
/// (no symlink, no FIFO) and read up to [`MAX_PUBLIC_KEY_BYTES`].
fn read_public_key(path: &Path) -> Result<String, BootFileError> {
    let (file, metadata) = banger_host::disk::open_regular(path)?;
    if metadata.len() == 0 {
        return Err(BootFileError::Empty {
            path: path.to_owned(),
        });
    }
    let mut text = String::new();
    file.take(MAX_PUBLIC_KEY_BYTES)
        .read_to_string(&mut text)
        .map_err(|source| BootFileError::Io {
            op: "read",
            path: path.to_owned(),
            source,
        })?;
    Ok(text.lines().next().unwrap_or_default().trim().to_owned())
}

/// Directories under `<state dir>/vms/` that no VM row owns, by name.
pub fn orphans(state: &AppState) -> Result<Vec<VmOrphan>, VmError> {
    let vms_dir = state.paths().state_dir.join("vms");
    let entries = match fs_err::read_dir(&vms_dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(VmError::ListOrphans {
                dir: vms_dir,
                source,
            });
        }
    };
    let owned: std::collections::BTreeSet<String> = state
        .store()
        .vms()?
        .into_iter()
        .map(|row| row.name.to_string())
        .collect();
    let mut orphans = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| VmError::ListOrphans {
            dir: vms_dir.clone(),
            source,
        })?;
        let Ok(file_type) = entry.file_type() else {
            continue;
        };
        if !file_type.is_dir() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        if owned.contains(&name) {
            continue;
        }
        let dir = entry.path();
        orphans.push(VmOrphan {
            adoptable: VmName::parse(&name).is_ok(),
            bytes: apparent_size(&dir),
            dir: dir.display().to_string(),
            name,
        });
    }
    orphans.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(orphans)
}

/// Sum of the lengths of the regular files directly in `dir` (links are
/// not followed).
fn apparent_size(dir: &PathBuf) -> u64 {
    let Ok(entries) = fs_err::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| fs_err::symlink_metadata(entry.path()).ok())
        .filter(std::fs::Metadata::is_file)
        .map(|metadata| metadata.len())
        .sum()
}
