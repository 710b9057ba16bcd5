//! `vm start`: TAP, per-VM initrd, VMM, then wait until SSH answers.

use std::path::PathBuf;
use std::time::Duration;

use banger_api::VmName;
use banger_api::vms::{VmBackend, VmInfo, VmState};
use banger_image::guest_config::{GuestConfig, NetworkConfig, SshHostKey};
use banger_vmm::{BackendKind, DiskSpec, NetSpec, VmSpec};

use super::{CONSOLE_LOG_MAX_BYTES, VmError, console_log, info, row, run_dir, set_state};
use crate::progress::ProgressSink;
use crate::state::AppState;
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
    let mut vm = row(&state.store(), name)?;
    // A VMM that may still run must never get a twin on the same disks.
    super::recorded_vmm(&vm)?;
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
    let tap = match network.pool.take().await {
        Ok(tap) => tap,
        Err(error) => {
            return fail(
                state,
                &mut vm,
                VmError::step(name, "get a TAP device", error),
            )
            .await;
        }
    };
    vm.tap = Some(tap.as_str().to_owned());
    state.store().update_vm(&vm)?;
    crate::dns::bridge_ready(state).await;
    if let Err(error) = super::firewall::apply(state).await {
        return fail(
            state,
            &mut vm,
            VmError::step(name, "apply its firewall rules", error),
        )
        .await;
    }

    let run_dir = run_dir(&state.paths().runtime_dir, name);
    let spec = {
        let state = state.clone();
        let vm = vm.clone();
        let run_dir = run_dir.clone();
        let kind = vmm.kind();
        let tap_name = tap.as_str().to_owned();
        tokio::task::spawn_blocking(move || {
            build_spec(&state, &vm, boot, &run_dir, kind, accel, tap_name)
        })
        .await
    };
    let spec = match spec {
        Ok(Ok(spec)) => spec,
        Ok(Err(error)) => return fail(state, &mut vm, error).await,
        Err(join) => {
            return fail(
                state,
                &mut vm,
                VmError::step(name, "prepare its boot files", join),
            )
            .await;
        }
    };
    progress.stage(
        "boot",
        format!(
            "starting {} ({} vCPU, {} MiB)",
            backend_name(vmm.kind()),
            vm.vcpus,
            vm.memory_mib
        ),
    );
    let running = match vmm.start(&spec).await {
        Ok(running) => running,
        Err(error) => {
            return fail(state, &mut vm, VmError::step(name, "start its VMM", error)).await;
        }
    };
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

    progress.stage(
        "ssh",
        format!(
            "waiting for SSH on {} (a first boot takes a while under emulation)",
            vm.ip
        ),
    );
    match host.wait_for_ssh(vm.ip).await {
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

fn backend_name(kind: BackendKind) -> VmBackend {
    match kind {
        BackendKind::Qemu => VmBackend::Qemu,
        BackendKind::Firecracker => VmBackend::Firecracker,
    }
}

/// Records a failed start: releases the TAP, marks the VM as errored.
async fn fail(state: &AppState, vm: &mut VmRow, error: VmError) -> Result<VmInfo, VmError> {
    release_tap(state, vm).await;
    vm.vmm = VmmHandle::None;
    let message = crate::error::error_chain(&error);
    tracing::warn!(vm = %vm.name, error = %message, "start failed");
    set_state(state, vm, VmState::Error, Some(message))?;
    // The runtime dir holds the initrd with the VM's private host key.
    let _ = fs_err::remove_dir_all(run_dir(&state.paths().runtime_dir, &vm.name));
    if state.host().network_if_ready().is_some() {
        if let Err(error) = super::firewall::apply(state).await {
            tracing::warn!(vm = %vm.name, error = %crate::error::error_chain(&error), "cannot update firewall rules after a failed start");
        }
    }
    Err(error)
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
struct BootFiles {
    kernel: PathBuf,
    initramfs: PathBuf,
    rootfs: PathBuf,
    modules_disk: Option<PathBuf>,
}

fn boot_files(state: &AppState, vm: &VmRow, backend: BackendKind) -> Result<BootFiles, VmError> {
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
    Ok(BootFiles {
        kernel: kernel_file,
        initramfs: image.initrd.clone().unwrap_or(kernel.initramfs.clone()),
        rootfs: image.rootfs.clone(),
        modules_disk: kernel.modules_disk.clone(),
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
    let agent = match &state.host().agent {
        Some(path) => Some(
            fs_err::read(path)
                .map_err(|error| VmError::step(name, "read the guest agent", error))?,
        ),
        None => None,
    };
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
        agent,
        auth_files,
    };
    let initrd = run_dir.join("initrd.img");
    banger_image::guest_config::write_vm_initrd(&boot.initramfs, &guest, &initrd)
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
