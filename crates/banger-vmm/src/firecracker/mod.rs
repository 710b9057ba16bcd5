//! The Firecracker backend: one `firecracker --api-sock <run_dir>/firecracker.sock`
//! process per VM, configured over its API and then started.
//!
//! [`configuration`] turns a [`VmSpec`] into the ordered list of API calls
//! (a pure function, tested against the spec-validating fake in
//! `banger-testkit`); [`FirecrackerVmm::start`] spawns the process with the
//! console copier, sends the calls, and `InstanceStart`s. Graceful stop is
//! `SendCtrlAltDel` (see [`crate::RunningVm::stop`]).

pub mod api;
pub mod pause;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use api::boot_source::BootSourceConfig;
use api::drives::DriveConfig;
use api::entropy::EntropyConfig;
use api::logger::{LogLevel, LoggerConfig};
use api::machine_config::MachineConfig;
use api::metrics::MetricsConfig;
use api::network_interfaces::NetworkInterfaceConfig;
use api::vsock::VsockConfig;
use api::{ApiError, ApiOperation};

use crate::console::{CopierCommand, spawn_with_console};
use crate::process::ProcessIdentity;
use crate::running::{
    BackendKind, RunningVm, VmmError, kill_all, prepare_run_dir, wait_for_socket,
};
use crate::spec::VmSpec;

/// How long Firecracker gets to create its API socket.
const SOCKET_TIMEOUT: Duration = Duration::from_secs(10);

/// Files Firecracker uses inside the VM's run dir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirecrackerPaths {
    /// API socket.
    pub api_sock: PathBuf,
    /// Hybrid-vsock socket (Firecracker creates it).
    pub vsock_uds: PathBuf,
    /// Firecracker's own log (level Warning).
    pub log: PathBuf,
    /// Metrics file.
    pub metrics: PathBuf,
}

impl FirecrackerPaths {
    /// The standard names inside `run_dir`.
    pub fn in_run_dir(run_dir: &Path) -> Self {
        Self {
            api_sock: run_dir.join("firecracker.sock"),
            vsock_uds: run_dir.join("vsock.sock"),
            log: run_dir.join("firecracker.log"),
            metrics: run_dir.join("firecracker.metrics"),
        }
    }
}

/// Drive ids in attach order: `vda`, `vdb`, ... (as the guest names them).
pub(super) fn drive_id(index: usize) -> String {
    let letter = u8::try_from(index % 26).map_or('a', |i| char::from(b'a' + i));
    if index < 26 {
        format!("vd{letter}")
    } else {
        format!("vd{index}")
    }
}

/// The API calls that configure and start `spec`, in order. The logger goes
/// first so that errors in later calls are logged.
pub fn configuration(spec: &VmSpec, paths: &FirecrackerPaths) -> Vec<ApiOperation> {
    let mut operations = vec![
        ApiOperation::ConfigureLogger(LoggerConfig {
            log_path: paths.log.clone(),
            level: Some(LogLevel::Warning),
            show_level: Some(true),
            show_log_origin: Some(false),
        }),
        ApiOperation::ConfigureMetrics(MetricsConfig {
            metrics_path: paths.metrics.clone(),
        }),
        ApiOperation::PutMachineConfiguration(MachineConfig {
            vcpu_count: spec.vcpus,
            mem_size_mib: spec.memory_mib,
            smt: None,
            track_dirty_pages: None,
        }),
        ApiOperation::ConfigureBootSource(BootSourceConfig {
            kernel_image_path: spec.kernel.clone(),
            initrd_path: Some(spec.initrd.clone()),
            boot_args: Some(spec.cmdline.clone()),
        }),
    ];
    for (index, disk) in spec.disks.iter().enumerate() {
        operations.push(ApiOperation::InsertBlockDevice(DriveConfig {
            drive_id: drive_id(index),
            path_on_host: disk.path.clone(),
            // The banger initramfs mounts every disk itself.
            is_root_device: false,
            is_read_only: disk.read_only,
            cache_type: None,
        }));
    }
    if let Some(net) = &spec.network {
        operations.push(ApiOperation::InsertNetworkDevice(NetworkInterfaceConfig {
            iface_id: "eth0".into(),
            host_dev_name: net.tap_name.clone(),
            guest_mac: Some(net.mac.clone()),
        }));
    }
    operations.push(ApiOperation::SetVsockDevice(VsockConfig {
        guest_cid: spec.vsock_cid,
        uds_path: paths.vsock_uds.clone(),
    }));
    operations.push(ApiOperation::PutEntropyDevice(EntropyConfig::default()));
    operations.push(ApiOperation::StartMicroVm);
    operations
}

/// Sends Ctrl+Alt+Del through the API socket.
pub async fn send_ctrl_alt_del(api_sock: &Path) -> Result<(), ApiError> {
    api::call(api_sock, &ApiOperation::SendCtrlAltDel)
        .await
        .map(|_| ())
}

/// Starts VMs with Firecracker.
#[derive(Debug, Clone)]
pub struct FirecrackerVmm {
    /// The `firecracker` executable.
    pub firecracker_bin: PathBuf,
    /// The console copier program.
    pub copier: CopierCommand,
}

impl FirecrackerVmm {
    /// Starts the VM: spawns Firecracker, configures it and sends
    /// `InstanceStart`. Returns once the instance started; does not wait for
    /// the guest to boot. On failure the process is killed.
    pub async fn start(&self, spec: &VmSpec) -> Result<RunningVm, VmmError> {
        let paths = FirecrackerPaths::in_run_dir(&spec.run_dir);
        self.launch(spec, configuration(spec, &paths)).await
    }

    /// Resumes a VM paused by [`RunningVm::pause`] into `memory_dir`: a
    /// fresh Firecracker loads the snapshot with the spec's TAP and vsock
    /// socket and resumes the vCPUs. On failure the process is killed; the
    /// directory is only read.
    pub async fn resume(&self, spec: &VmSpec, memory_dir: &Path) -> Result<RunningVm, VmmError> {
        let paths = FirecrackerPaths::in_run_dir(&spec.run_dir);
        self.launch(spec, pause::load_operations(spec, &paths, memory_dir))
            .await
    }

    async fn launch(
        &self,
        spec: &VmSpec,
        operations: Vec<ApiOperation>,
    ) -> Result<RunningVm, VmmError> {
        spec.validate()?;
        let paths = FirecrackerPaths::in_run_dir(&spec.run_dir);
        prepare_run_dir(spec, &[&paths.api_sock, &paths.vsock_uds])?;
        // Firecracker opens the log and metrics files without creating them.
        for file in [&paths.log, &paths.metrics] {
            create_private(file).map_err(|source| VmmError::Io {
                vm: spec.name.clone(),
                path: file.clone(),
                source,
            })?;
        }
        let mut command = Command::new(&self.firecracker_bin);
        command.arg("--api-sock").arg(&paths.api_sock);
        let console = spawn_with_console(
            command,
            &self.copier,
            &spec.console_log,
            spec.console_log_max_bytes,
        )
        .map_err(|source| VmmError::Console {
            vm: spec.name.clone(),
            source,
        })?;
        let abort = |error: VmmError| async {
            kill_all(&[&console.vmm, &console.copier]).await;
            error
        };
        if let Err(error) = wait_for_socket(
            &spec.name,
            &console.vmm,
            &paths.api_sock,
            &spec.console_log,
            SOCKET_TIMEOUT,
        )
        .await
        {
            return Err(abort(error).await);
        }
        wait_until_listening(&console.vmm, &paths.api_sock, SOCKET_TIMEOUT).await;
        for operation in operations {
            if let Err(source) = api::call(&paths.api_sock, &operation).await {
                return Err(abort(VmmError::Firecracker {
                    vm: spec.name.clone(),
                    source: Box::new(source),
                })
                .await);
            }
        }
        // Re-read the identity now that the API is up: a wrapper script that
        // execs Firecracker would have shown the shell at spawn time.
        let vmm = console.vmm.current();
        Ok(RunningVm {
            name: spec.name.clone(),
            backend: BackendKind::Firecracker,
            vmm,
            console_copier: console.copier,
            helpers: Vec::new(),
            run_dir: spec.run_dir.clone(),
            control_socket: paths.api_sock,
            vsock_uds: paths.vsock_uds,
            console_log: spec.console_log.clone(),
        })
    }
}

/// Firecracker creates its API socket at bind(2) and listens on it a moment
/// later; a connection in between is refused. Waits up to `timeout` until one
/// is accepted (or the process exits); the first API call reports anything
/// else.
async fn wait_until_listening(vmm: &ProcessIdentity, api_sock: &Path, timeout: Duration) {
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline && crate::process::exit_status(vmm).is_none() {
        match tokio::net::UnixStream::connect(api_sock).await {
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionRefused => {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            _ => return,
        }
    }
}

fn create_private(path: &Path) -> std::io::Result<()> {
    use fs_err::os::unix::fs::OpenOptionsExt;
    fs_err::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configuration_order_and_drive_ids() {
        let spec = crate::spec::tests::sample_spec(Path::new("/vm"));
        let paths = FirecrackerPaths::in_run_dir(&spec.run_dir);
        let ops = configuration(&spec, &paths);
        let summary: Vec<String> = ops
            .iter()
            .map(|op| format!("{} {}", op.method(), op.path()))
            .collect();
        assert_eq!(
            summary,
            [
                "PUT /logger",
                "PUT /metrics",
                "PUT /machine-config",
                "PUT /boot-source",
                "PUT /drives/vda",
                "PUT /drives/vdb",
                "PUT /network-interfaces/eth0",
                "PUT /vsock",
                "PUT /entropy",
                "PUT /actions"
            ]
        );
        let bodies: Vec<serde_json::Value> = ops.iter().filter_map(ApiOperation::body).collect();
        insta::assert_json_snapshot!(bodies);
        assert_eq!(drive_id(0), "vda");
        assert_eq!(drive_id(25), "vdz");
        assert_eq!(drive_id(26), "vd26");
    }
}
