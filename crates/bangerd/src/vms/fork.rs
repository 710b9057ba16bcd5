//! `vm fork SRC --name NEW [--count N]`: new VMs from a running (or paused)
//! VM's memory and disks.
//!
//! The source is captured once, as a snapshot is (paused for the copy and
//! resumed right after, so it keeps running), into `<src dir>/fork.partial/`.
//! Each new VM then gets a row of its own (name, address, MAC, vsock CID,
//! TAP at resume) like a create, a directory with copies of the disks
//! (reflinks where possible) and links to the saved memory, and a new SSH
//! host key; it is resumed from that memory, and before SSH is awaited the
//! guest agent gives the guest its identity (address, MAC, hostname, host
//! key with sshd restarted, machine id, reseeded RNG: see
//! `banger_agent_proto::identity`). A fork that fails is removed like a
//! failed create; forks finished before it are kept.

use std::path::Path;
use std::time::{Duration, Instant};

use banger_api::VmName;
use banger_api::snapshots::VmForkRequest;
use banger_api::vms::{VmInfo, VmState};

use super::create::{created_row, install_host_key, make_vm_dir, prepare_on_worker, undo_create};
use super::pause::{self, ResumeAs};
use super::snapshot::{self, SnapshotError};
use super::{ResourceRequest, VmError, check_resources, row, set_state, vm_dir};
use crate::progress::ProgressSink;
use crate::state::AppState;
use crate::store::VmRow;

/// How long the agent gets to be reachable and apply a new identity.
const IDENTITY_DEADLINE: Duration = Duration::from_secs(60);
/// How long one try may take (sshd is told to restart in it) before it is
/// made again.
const IDENTITY_ATTEMPT: Duration = Duration::from_secs(20);
/// How long one health request may take before a new connection is tried.
const PROBE_ATTEMPT: Duration = Duration::from_secs(3);

/// Forks VM `source` into the VMs `request` names.
pub async fn fork(
    state: &AppState,
    source: &VmName,
    request: &VmForkRequest,
    progress: &ProgressSink,
) -> Result<Vec<VmInfo>, SnapshotError> {
    let names = request.names()?;
    {
        let store = state.store();
        for name in &names {
            state
                .paths()
                .check_vm_socket_paths(name.as_str())
                .map_err(|source| VmError::SocketPathTooLong {
                    name: name.clone(),
                    source,
                })?;
            if store.vm_name_taken(name)? {
                return Err(VmError::NameTaken { name: name.clone() }.into());
            }
            let dir = vm_dir(&state.paths().state_dir, name);
            if dir.exists() {
                return Err(VmError::OrphanDirectory {
                    name: name.clone(),
                    dir,
                }
                .into());
            }
        }
    }
    let unavailable = |error| VmError::HostUnavailable {
        name: source.to_string(),
        source: error,
    };
    state.host().network().await.map_err(unavailable)?;
    state.host().vmm(state.config()).map_err(unavailable)?;

    let lock = state.vm_lock(source);
    let guard = lock.lock().await;
    let src = row(&state.store(), source)?;
    if !matches!(src.state, VmState::Running | VmState::Paused) {
        return Err(VmError::WrongState {
            name: source.clone(),
            state: src.state,
            hint: "a fork starts from a running or paused VM's memory; start it first",
        }
        .into());
    }
    let image = state
        .store()
        .image(&src.image_name)?
        .ok_or_else(|| VmError::ImageNotFound {
            image: src.image_name.clone(),
        })?;
    let resources = ResourceRequest {
        vcpus: Some(src.vcpus),
        memory_mib: Some(src.memory_mib),
        disk_bytes: Some(src.disk_bytes),
    };
    check_resources(state, resources)?;
    let disks: u64 = snapshot::DISK_FILES
        .iter()
        .map(|disk| snapshot::allocated_bytes(&src.dir.join(disk)))
        .sum();
    let copies = u64::try_from(names.len()).unwrap_or(u64::MAX);
    snapshot::check_space(
        source,
        "copying its disks for the forks",
        &src.dir,
        disks.saturating_mul(copies),
    )?;
    let staging = src.dir.join("fork.partial");
    let started = Instant::now();
    let captured = snapshot::capture_locked(state, source, &staging, progress).await?;
    drop(guard);
    tracing::info!(vm = %source, took = ?started.elapsed(), "VM captured for a fork");

    let plan = ForkPlan {
        src,
        image,
        resources,
        staging,
        captured,
    };
    let mut made = Vec::new();
    let mut failure = None;
    for name in &names {
        match fork_one(state, name, &plan, progress).await {
            Ok(info) => made.push(info),
            Err(error) => {
                failure = Some(error);
                break;
            }
        }
    }
    let _ = pause::remove_if_present(&plan.staging);
    match failure {
        Some(error) => Err(error),
        None => Ok(made),
    }
}

/// What every fork of one capture shares.
struct ForkPlan {
    /// The source's row (as captured).
    src: VmRow,
    /// Its image.
    image: crate::store::ImageRow,
    /// Its vCPUs, memory and disk size.
    resources: ResourceRequest,
    /// The captured disks and memory.
    staging: std::path::PathBuf,
    /// What the capture saved.
    captured: snapshot::Captured,
}

/// Makes fork `name` from the plan's capture and resumes it as itself.
async fn fork_one(
    state: &AppState,
    name: &VmName,
    plan: &ForkPlan,
    progress: &ProgressSink,
) -> Result<VmInfo, SnapshotError> {
    let ForkPlan {
        src,
        image,
        resources,
        staging,
        captured,
    } = plan;
    let images = state.images_lock().lock().await;
    let mut row = {
        let mut store = state.store();
        if store.vm_name_taken(name)? {
            return Err(VmError::NameTaken { name: name.clone() }.into());
        }
        let dir = vm_dir(&state.paths().state_dir, name);
        let mut row = created_row(
            &store,
            state.config(),
            name.clone(),
            dir,
            image,
            *resources,
            src.nat,
        )?;
        row.id = store.insert_vm(&row)?;
        row
    };
    drop(images);
    if let Err(error) = state.dns().records.set(row.name.as_str(), row.ip) {
        tracing::warn!(vm = %name, %error, "cannot add DNS record");
    }
    let lock = state.vm_lock(name);
    let _guard = lock.lock().await;
    progress.stage(
        "fork",
        format!("making VM {name} ({}) from {}", row.ip, src.name),
    );
    let (made_dir, prepared) = {
        let (state, row, staging) = (state.clone(), row.clone(), staging.clone());
        prepare_on_worker(
            move |made_dir| prepare_fork_files(&state, &row, &staging, made_dir),
            |join| SnapshotError::Task {
                step: "prepare the fork's files",
                source: join,
            },
        )
        .await
    };
    if let Err(error) = prepared {
        undo_create(state, &row, made_dir).await;
        return Err(error);
    }
    row.backend = captured.backend;
    if let Err(error) = set_state(state, &mut row, VmState::Paused, None) {
        undo_create(state, &row, true).await;
        return Err(error.into());
    }
    match pause::resume_as_locked(state, name, progress, ResumeAs::NewIdentity).await {
        Ok(info) => {
            tracing::info!(vm = %name, source = %src.name, "VM forked");
            Ok(info)
        }
        // Like a create: a fork whose SSH never answered stays, so its
        // console can be read.
        Err(error @ VmError::SshTimeout { .. }) => Err(error.into()),
        Err(error) => {
            tracing::warn!(vm = %name, "fork failed; removing it");
            undo_create(state, &row, true).await;
            Err(error.into())
        }
    }
}

/// The fork's directory: disk copies, links to the saved memory, a new
/// host key.
fn prepare_fork_files(
    state: &AppState,
    row: &VmRow,
    staging: &Path,
    made_dir: &mut bool,
) -> Result<(), SnapshotError> {
    make_vm_dir(state, row, made_dir)?;
    for disk in snapshot::DISK_FILES {
        banger_host::disk::clone::clone_file(&staging.join(disk), &row.dir.join(disk))
            .map_err(|error| SnapshotError::io(&row.name, "copy the source's disks", error))?;
    }
    snapshot::link_memory(&staging.join("memory"), &pause::memory_dir(&row.dir))
        .map_err(|error| SnapshotError::io(&row.name, "link the source's memory", error))?;
    install_host_key(state, row)?;
    Ok(())
}

/// Sends the guest of `vm` (just resumed from another VM's memory) its own
/// identity, retrying while the agent is not reachable yet.
pub(super) async fn reidentify(state: &AppState, vm: &VmRow, uds: &Path) -> Result<(), VmError> {
    let identity = identity(state, vm)?;
    // First reach the agent with short tries: a connection made while the
    // guest's vsock device is still coming back can hang, and only a new
    // one gets through.
    pause::retry_agent(IDENTITY_DEADLINE, PROBE_ATTEMPT, |timeout| {
        banger_agent_client::health(uds, timeout)
    })
    .await
    .map_err(|error| VmError::step(&vm.name, "reach its guest agent", error))?;
    // Applying the same identity twice is harmless, so a try whose reply
    // was lost is simply made again.
    pause::retry_agent(IDENTITY_DEADLINE, IDENTITY_ATTEMPT, |timeout| {
        banger_agent_client::reidentify(uds, identity.clone(), timeout)
    })
    .await
    .map_err(|error| VmError::step(&vm.name, "give the guest its own identity", error))?;
    tracing::info!(vm = %vm.name, ip = %vm.ip, "guest took its own identity");
    Ok(())
}

/// The identity of `vm`: its row's address and MAC, its name, its host
/// key, a new machine id and fresh entropy.
fn identity(state: &AppState, vm: &VmRow) -> Result<banger_agent_client::proto::Identity, VmError> {
    let read = |file: &str| {
        fs_err::read_to_string(vm.dir.join(file))
            .map_err(|error| VmError::step(&vm.name, "read its SSH host key", error))
    };
    let random = |bytes: usize| -> Result<String, VmError> {
        use std::io::Read;
        let mut buffer = vec![0_u8; bytes];
        fs_err::File::open("/dev/urandom")
            .and_then(|mut file| file.read_exact(&mut buffer))
            .map_err(|error| VmError::step(&vm.name, "draw random bytes", error))?;
        Ok(buffer.iter().map(|byte| format!("{byte:02x}")).collect())
    };
    let config = state.config();
    Ok(banger_agent_client::proto::Identity {
        iface: "eth0".to_owned(),
        mac: vm.mac.to_ascii_lowercase(),
        address: vm.ip,
        prefix_len: config.cidr.prefix,
        gateway: config.bridge_ip,
        hostname: vm.name.to_string(),
        ssh_host_key: read("ssh_host_ed25519_key")?,
        ssh_host_key_pub: read("ssh_host_ed25519_key.pub")?.trim_end().to_owned(),
        machine_id: random(16)?,
        entropy: random(banger_agent_client::proto::identity::ENTROPY_BYTES)?,
    })
}
