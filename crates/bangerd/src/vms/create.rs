//! `vm create`: allocate a name, address and CID, record the VM, prepare its
//! disks and host key, then (unless `no_start`) boot it.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use banger_api::events::OperationKind;
use banger_api::vms::{VmCreateRequest, VmInfo, VmState};
use banger_api::{ImageName, VmName};
use banger_host::disk::BootFileKind;

use super::{
    DEFAULT_DISK_BYTES, DEFAULT_MEMORY_MIB, DEFAULT_VCPUS, OVERLAY_BYTES, ResourceRequest, VmError,
    check_resources, host_alias, known_hosts, resource_request, run_dir, vm_dir,
};
use crate::progress::ProgressSink;
use crate::state::AppState;
use crate::step_timer::StepTimer;
use crate::store::{ImageRow, VmRow, VmmHandle};

/// Creates a VM and, unless asked not to, starts it and waits for SSH.
/// Watchers see it on the event bus as a `vm_create` operation: its
/// progress and how it ended.
pub async fn create(
    state: &AppState,
    request: &VmCreateRequest,
    progress: &ProgressSink,
) -> Result<VmInfo, VmError> {
    let progress = progress.announced(
        state.events(),
        OperationKind::VmCreate,
        request.name.as_ref().map(ToString::to_string),
    );
    let result = create_steps(state, request, &progress).await;
    progress.finish(&result, VmError::code);
    result
}

/// The steps of [`create`].
async fn create_steps(
    state: &AppState,
    request: &VmCreateRequest,
    progress: &ProgressSink,
) -> Result<VmInfo, VmError> {
    check_resources(state, resource_request(request))?;
    let requested_name = request.name.clone();
    let mut timer = StepTimer::start(
        "create",
        requested_name
            .as_ref()
            .map_or_else(|| "(new)".to_owned(), ToString::to_string),
    );
    if let Some(name) = &requested_name {
        // Its VMM sockets must fit in sun_path; refuse before making anything.
        state
            .paths()
            .check_vm_socket_paths(name.as_str())
            .map_err(|source| VmError::SocketPathTooLong {
                name: name.clone(),
                source,
            })?;
    }
    if !request.no_start {
        // Fail before making anything when this host cannot start VMs.
        let host = state.host();
        let name = requested_name
            .as_ref()
            .map_or_else(|| "(new)".to_owned(), ToString::to_string);
        host.network()
            .await
            .map_err(|source| VmError::HostUnavailable {
                name: name.clone(),
                source,
            })?;
        host.vmm(state.config())
            .map_err(|source| VmError::HostUnavailable { name, source })?;
    }
    timer.step("checks");
    let image = resolve_image(state, request.image.as_ref(), progress).await?;
    timer.step("image");
    // Before anything is made or read: a rootfs or seed swapped for a FIFO,
    // link or device since register is refused at once (the seed clone
    // below would otherwise hang on a FIFO).
    super::boot::check_boot_file(&image.name, "rootfs", &image.rootfs, BootFileKind::Ext4)?;
    if let Some(seed) = &image.work_seed {
        super::boot::check_boot_file(&image.name, "work seed", seed, BootFileKind::Ext4)?;
    }
    let seed_bytes = image.work_seed.as_deref().map_or(0, |seed| {
        fs_err::metadata(seed).map(|m| m.len()).unwrap_or(0)
    });
    let disk_bytes = request
        .disk_bytes
        .unwrap_or(DEFAULT_DISK_BYTES.max(seed_bytes));
    if disk_bytes < seed_bytes {
        return Err(VmError::DiskSmallerThanSeed {
            disk_bytes,
            image: image.name.clone(),
            seed_bytes,
        });
    }
    if disk_bytes % (1 << 20) != 0 {
        return Err(VmError::DiskUnaligned {
            bytes: disk_bytes,
            unit: 1 << 20,
        });
    }

    let config = state.config();
    let paths = state.paths();
    // A register of this image waits for the row, or the row for it; the
    // image must still be the one checked above.
    let images = state.images_lock().lock().await;
    let row = {
        let mut store = state.store();
        if store.image(&image.name)?.as_ref() != Some(&image) {
            return Err(VmError::ImageChanged {
                image: image.name.clone(),
            });
        }
        let name = match requested_name {
            Some(name) => {
                if store.vm_name_taken(&name)? {
                    return Err(VmError::NameTaken { name });
                }
                // A directory no row owns holds someone's disks: never
                // build into it, and never remove it on failure.
                let dir = vm_dir(&paths.state_dir, &name);
                if dir.exists() {
                    return Err(VmError::OrphanDirectory { name, dir });
                }
                name
            }
            None => generate_free_name(&store, &paths.state_dir)?,
        };
        let dir = vm_dir(&paths.state_dir, &name);
        let mut row = created_row(
            &store,
            config,
            name,
            dir,
            &image,
            ResourceRequest {
                vcpus: request.vcpus,
                memory_mib: request.memory_mib,
                disk_bytes: Some(disk_bytes),
            },
            request.nat,
        )?;
        row.id = store.insert_vm(&row)?;
        if let Err(error) = state.dns().records.set(row.name.as_str(), row.ip) {
            tracing::warn!(vm = %row.name, %error, "cannot add DNS record");
        }
        row
    };
    drop(images);
    crate::fault::point("create.after_row");
    let name = row.name.clone();
    timer.rename(name.as_str());
    timer.step("record");
    progress.name_known(name.as_str());
    let lock = state.vm_lock(&name);
    let _guard = lock.lock().await;
    progress.stage(
        "disks",
        format!(
            "preparing disks for VM {name} ({} on {})",
            row.ip, image.name
        ),
    );
    let (made_dir, prepared) = {
        let (state, row) = (state.clone(), row.clone());
        prepare_on_worker(
            move |made_dir| prepare_identity(&state, &row, made_dir),
            |join| VmError::step(&name, "prepare its files", join),
        )
        .await
    };
    if let Err(error) = prepared {
        undo_create(state, &row, made_dir).await;
        return Err(error);
    }
    timer.step("identity");
    // The disk copies (a few MB) run on a worker thread while the start
    // gets the TAP and writes the initrd, which needs only the host key;
    // the start waits for them before the VMM runs (`PendingDisks`).
    let mut disks = {
        let (state, row, image) = (state.clone(), row.clone(), image.clone());
        let name = name.clone();
        Some(super::boot::PendingDisks(tokio::task::spawn_blocking(
            move || {
                prepare_disks(&state, &row, &image)?;
                crate::fault::point("create.after_disks");
                tracing::info!(vm = %name, ip = %row.ip, image = %image.name, "VM created");
                Ok(())
            },
        )))
    };
    drop(timer);
    if request.no_start {
        let ready = super::boot::wait_for_disks(&name, &mut disks).await;
        if let Err(error) = ready {
            undo_create(state, &row, true).await;
            return Err(error);
        }
        remove_creating_marker(&row);
        return Ok(super::info(state, &row));
    }
    let started = super::boot::start_locked_with_disks(state, &name, progress, &mut disks).await;
    // Never undo under a copy still running (a start that failed before
    // it waited for the disks).
    let disks_ready = super::boot::wait_for_disks(&name, &mut disks).await;
    match started.and_then(|info| disks_ready.map(|()| info)) {
        // A VM whose SSH never answered stays, so its console can be read.
        Err(error) if !matches!(error, VmError::SshTimeout { .. }) => {
            tracing::warn!(vm = %name, "first start failed; removing the new VM");
            undo_create(state, &row, true).await;
            Err(error)
        }
        result => {
            remove_creating_marker(&row);
            result
        }
    }
}

/// The file in a VM's directory that says "a create made this directory
/// and has not finished": written right after the directory, removed when
/// the create ends with the VM kept. A daemon that finds it at start knows
/// the disks were never booted to a prompt and hold nothing of anyone's,
/// so the half-made VM is removed (`super::interrupted`).
pub(super) const CREATING_MARKER: &str = ".banger-creating";

/// Removes the [`CREATING_MARKER`] of a VM whose create is over; a marker
/// left behind would make the next daemon start remove a finished VM, so a
/// failure is logged loudly.
pub(super) fn remove_creating_marker(row: &VmRow) {
    let marker = row.dir.join(CREATING_MARKER);
    match fs_err::remove_file(&marker) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => {
            tracing::error!(vm = %row.name, %error, "cannot remove the create-in-progress marker");
        }
    }
}

/// The row of a new VM in state `created`, with the lowest free address and
/// vsock CID; shared by create and adopt. `resources.disk_bytes` is the
/// work disk's size (0 when absent).
pub(super) fn created_row(
    store: &crate::store::Store,
    config: &banger_config::Config,
    name: VmName,
    dir: std::path::PathBuf,
    image: &ImageRow,
    resources: ResourceRequest,
    nat: bool,
) -> Result<VmRow, VmError> {
    let existing = store.vms()?;
    let used_ips: BTreeSet<Ipv4Addr> = existing.iter().map(|vm| vm.ip).collect();
    let ip = banger_host::net::addressing::allocate_ip(&config.cidr, config.bridge_ip, used_ips)
        .map_err(VmError::AddressPoolExhausted)?;
    let used_cids: BTreeSet<u32> = existing.iter().map(|vm| vm.vsock_cid).collect();
    let vsock_cid = (3..).find(|cid| !used_cids.contains(cid)).unwrap_or(3);
    let now = crate::store::unix_now();
    Ok(VmRow {
        id: 0,
        dir,
        name,
        state: VmState::Created,
        image_id: Some(image.id),
        image_name: image.name.clone(),
        vcpus: resources.vcpus.unwrap_or(DEFAULT_VCPUS),
        memory_mib: resources.memory_mib.unwrap_or(DEFAULT_MEMORY_MIB),
        disk_bytes: resources.disk_bytes.unwrap_or(0),
        ip,
        mac: banger_host::net::addressing::mac_for_ip(ip).to_string(),
        vsock_cid,
        tap: None,
        backend: None,
        vmm: VmmHandle::None,
        last_error: None,
        nat,
        created_at: now,
        updated_at: now,
    })
}

/// The image to use: the requested one, else `default_image_name`; when no
/// image exists at all, the default image is built first.
async fn resolve_image(
    state: &AppState,
    requested: Option<&ImageName>,
    progress: &ProgressSink,
) -> Result<ImageRow, VmError> {
    let name = match requested {
        Some(name) => name.clone(),
        None => state.config().default_image_name.clone(),
    };
    let (found, any) = {
        let store = state.store();
        (store.image(&name)?, !store.images()?.is_empty())
    };
    if let Some(image) = found {
        return Ok(image);
    }
    if requested.is_some() || any {
        return Err(VmError::ImageNotFound { image: name });
    }
    progress.stage(
        "image",
        format!(
            "no image exists yet: building the default image {name} and pulling the default kernel first; this happens once and usually takes 3 to 6 minutes"
        ),
    );
    let build = crate::images::default_image_request(&name);
    let worker_state = state.clone();
    let worker_progress = progress.clone();
    tokio::task::spawn_blocking(move || {
        crate::images::build(&worker_state, &build, &worker_progress)
    })
    .await
    .map_err(|source| VmError::Task {
        step: "build the default image",
        source,
    })??;
    crate::images::row(&state.store(), &name).map_err(VmError::from)
}

/// A generated name that neither a row nor a leftover directory has.
fn generate_free_name(store: &crate::store::Store, state_dir: &Path) -> Result<VmName, VmError> {
    let mut rng = fastrand::Rng::new();
    loop {
        let name = store.generate_vm_name(&mut rng)?;
        if !vm_dir(state_dir, &name).exists() {
            return Ok(name);
        }
        tracing::info!(vm = %name, "skipping a generated name whose directory exists");
    }
}

/// Runs `prepare` (which makes a VM's directory, setting its flag once the
/// directory is its own) on a blocking thread; returns the flag and the
/// outcome. A worker that died counts as not having made the directory:
/// whether it did is unknown, so whatever is there is kept.
pub(super) async fn prepare_on_worker<E: Send + 'static>(
    prepare: impl FnOnce(&mut bool) -> Result<(), E> + Send + 'static,
    died: impl FnOnce(tokio::task::JoinError) -> E,
) -> (bool, Result<(), E>) {
    let worker = tokio::task::spawn_blocking(move || {
        let mut made_dir = false;
        let result = prepare(&mut made_dir);
        (made_dir, result)
    })
    .await;
    match worker {
        Ok(outcome) => outcome,
        Err(join) => (false, Err(died(join))),
    }
}

/// Creates the VM directory with its create-in-progress marker, host key
/// and known_hosts entry. Sets `made_dir` once the directory is this
/// create's own, so a failure removes it only then.
fn prepare_identity(state: &AppState, row: &VmRow, made_dir: &mut bool) -> Result<(), VmError> {
    make_vm_dir(state, row, made_dir)?;
    write_private(&row.dir.join(CREATING_MARKER), b"")
        .map_err(|error| VmError::step(&row.name, "mark its create as in progress", error))?;
    install_host_key(state, row)
}

/// Makes the VM's overlay and work disks in its directory.
fn prepare_disks(state: &AppState, row: &VmRow, image: &ImageRow) -> Result<(), VmError> {
    let name = &row.name;
    let paths = state.paths();
    let overlay = row.dir.join("overlay.ext4");
    banger_host::disk::overlay::create_overlay_disk(
        &paths.cache_dir.join("overlay-templates"),
        &overlay,
        OVERLAY_BYTES,
    )
    .map_err(|error| VmError::step(name, "create its overlay disk", error))?;
    let work = row.dir.join("work.ext4");
    match &image.work_seed {
        Some(seed) => {
            // Again just before it is read: the window since create's first
            // check stays a few milliseconds.
            super::boot::check_boot_file(&image.name, "work seed", seed, BootFileKind::Ext4)?;
            banger_host::disk::seed_cache::clone_work_seed_cached(
                &paths.cache_dir.join(crate::images::GROWN_SEEDS_DIR),
                seed,
                &work,
                row.disk_bytes,
            )
            .map_err(|error| VmError::step(name, "clone the work seed", error))?;
        }
        None => {
            let options = banger_image::modules_disk::Ext4Options {
                populate_from: None,
                label: Some("banger-work"),
                journal: true,
            };
            banger_image::modules_disk::mkfs_ext4(&work, row.disk_bytes, &options)
                .map_err(|error| VmError::step(name, "create an empty work disk", error))?;
        }
    }
    Ok(())
}

/// Creates the VM's own directory (0700). Sets `made_dir` once it is this
/// call's own; one that exists already is an orphan, refused.
pub(super) fn make_vm_dir(
    state: &AppState,
    row: &VmRow,
    made_dir: &mut bool,
) -> Result<(), VmError> {
    let name = &row.name;
    let parent = row.dir.parent().unwrap_or(&state.paths().state_dir);
    banger_config::paths::ensure_private_dir(parent)
        .map_err(|error| VmError::step(name, "create the VMs directory", error))?;
    // create_dir, not create_dir_all: a directory that appeared since the
    // check belongs to someone else and is refused, not reused.
    match fs_err::create_dir(&row.dir) {
        Ok(()) => *made_dir = true,
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(VmError::OrphanDirectory {
                name: name.clone(),
                dir: row.dir.clone(),
            });
        }
        Err(error) => return Err(VmError::step(name, "create its directory", error)),
    }
    fs_err::set_permissions(&row.dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|error| VmError::step(name, "create its directory", error))
}

/// Gives the VM a new SSH host key (in its directory) and records it in
/// known_hosts.
pub(super) fn install_host_key(state: &AppState, row: &VmRow) -> Result<(), VmError> {
    let name = &row.name;
    let host_key = banger_host::ssh::keys::generate_host_key()
        .map_err(|error| VmError::step(name, "generate its SSH host key", error))?;
    write_private(
        &row.dir.join("ssh_host_ed25519_key"),
        host_key.private_openssh.as_bytes(),
    )
    .map_err(|error| VmError::step(name, "store its SSH host key", error))?;
    write_private(
        &row.dir.join("ssh_host_ed25519_key.pub"),
        host_key.public_line.as_bytes(),
    )
    .map_err(|error| VmError::step(name, "store its SSH host key", error))?;
    banger_host::ssh::known_hosts::set_host(
        &known_hosts(&state.paths().state_dir),
        &host_alias(name),
        &host_key.public_line,
    )
    .map_err(|error| VmError::step(name, "record its host key in known_hosts", error))?;
    Ok(())
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use fs_err::os::unix::fs::OpenOptionsExt;
    use std::io::Write;
    let mut file = fs_err::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)
}

/// Removes everything a failed create made: its directory (only when
/// `made_dir`: it is this create's own), runtime dir, known_hosts entry,
/// DNS record, row and firewall rules.
pub(super) async fn undo_create(state: &AppState, row: &VmRow, made_dir: bool) {
    if made_dir {
        let _ = fs_err::remove_dir_all(&row.dir);
    }
    let _ = fs_err::remove_dir_all(run_dir(&state.paths().runtime_dir, &row.name));
    state.dns().records.remove(row.name.as_str());
    let _ = banger_host::ssh::known_hosts::remove_host(
        &known_hosts(&state.paths().state_dir),
        &host_alias(&row.name),
    );
    if let Err(error) = state.store().delete_vm(row.id) {
        tracing::error!(vm = %row.name, error = %crate::error::error_chain(&error), "cannot remove the row of a failed create");
    }
    if state.host().network_if_ready().is_some() {
        if let Err(error) = super::firewall::apply(state).await {
            tracing::warn!(vm = %row.name, error = %crate::error::error_chain(&error), "cannot update firewall rules after a failed create");
        }
    }
}
