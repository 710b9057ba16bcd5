//! Pause and resume for Firecracker through its snapshot API: `PATCH /vm`
//! Paused, then `PUT /snapshot/create` (Full) writes the memory and the
//! microVM state into a directory; a fresh Firecracker resumes it with
//! `PUT /snapshot/load`, given the VM's current TAP (`network_overrides`)
//! and vsock socket (`vsock_override`), since both may differ from the
//! ones recorded in the snapshot. The load leaves the vCPUs paused; each
//! drive is then pointed at the spec's file with `PATCH /drives/{id}` (a
//! fork's disks are copies beside the source's, which the snapshot names)
//! and `PATCH /vm` Resumed starts them.

use std::path::Path;

use super::FirecrackerPaths;
use super::api::drives::PartialDrive;
use super::api::logger::{LogLevel, LoggerConfig};
use super::api::metrics::MetricsConfig;
use super::api::snapshot::{
    MemoryBackend, MemoryBackendType, NetworkOverride, SnapshotCreateParams, SnapshotLoadParams,
    SnapshotType, VmConfig, VmRunState, VsockOverride,
};
use super::api::{self, ApiError, ApiOperation};
use crate::spec::VmSpec;

/// Guest memory inside the directory a pause writes.
pub const MEMORY_FILE: &str = "firecracker.mem";
/// The microVM state inside that directory.
pub const STATE_FILE: &str = "firecracker.vmstate";

/// The calls that save a running VM into `dir`.
pub fn save_operations(dir: &Path) -> [ApiOperation; 2] {
    [
        ApiOperation::PatchVm(VmConfig {
            state: VmRunState::Paused,
        }),
        ApiOperation::CreateSnapshot(SnapshotCreateParams {
            mem_file_path: dir.join(MEMORY_FILE),
            snapshot_path: dir.join(STATE_FILE),
            snapshot_type: Some(SnapshotType::Full),
        }),
    ]
}

/// Pauses the VM behind `api_sock` and writes its snapshot into `dir`. On
/// failure the VM is resumed, so it keeps running.
pub async fn save(api_sock: &Path, dir: &Path) -> Result<(), ApiError> {
    let [pause, create] = save_operations(dir);
    api::call(api_sock, &pause).await?;
    if let Err(error) = api::call(api_sock, &create).await {
        let resume = ApiOperation::PatchVm(VmConfig {
            state: VmRunState::Resumed,
        });
        if let Err(resume_error) = api::call(api_sock, &resume).await {
            tracing::warn!(socket = %api_sock.display(), error = %resume_error, "cannot resume the VM after a failed snapshot");
        }
        return Err(error);
    }
    Ok(())
}

/// The calls a fresh Firecracker gets to resume the VM saved in `dir`:
/// logger and metrics (allowed before a load), the load (paused), the
/// drives pointed at the spec's disks, then the resume.
pub fn load_operations(spec: &VmSpec, paths: &FirecrackerPaths, dir: &Path) -> Vec<ApiOperation> {
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
        ApiOperation::LoadSnapshot(SnapshotLoadParams {
            snapshot_path: dir.join(STATE_FILE),
            mem_backend: MemoryBackend {
                backend_type: MemoryBackendType::File,
                backend_path: dir.join(MEMORY_FILE),
            },
            resume_vm: Some(false),
            network_overrides: spec
                .network
                .iter()
                .map(|net| NetworkOverride {
                    iface_id: "eth0".into(),
                    host_dev_name: net.tap_name.clone(),
                })
                .collect(),
            vsock_override: Some(VsockOverride {
                uds_path: paths.vsock_uds.clone(),
            }),
            clock_realtime: None,
        }),
    ];
    for (index, disk) in spec.disks.iter().enumerate() {
        operations.push(ApiOperation::PatchBlockDevice(PartialDrive {
            drive_id: super::drive_id(index),
            path_on_host: Some(disk.path.clone()),
        }));
    }
    operations.push(ApiOperation::PatchVm(VmConfig {
        state: VmRunState::Resumed,
    }));
    operations
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_and_load_bodies() {
        let spec = crate::spec::tests::sample_spec(Path::new("/vm"));
        let paths = FirecrackerPaths::in_run_dir(&spec.run_dir);
        let dir = Path::new("/state/memory");
        let saved: Vec<serde_json::Value> = save_operations(dir)
            .iter()
            .map(|op| serde_json::json!([op.method().as_str(), op.path(), op.body()]))
            .collect();
        let loaded: Vec<serde_json::Value> = load_operations(&spec, &paths, dir)
            .iter()
            .map(|op| serde_json::json!([op.method().as_str(), op.path(), op.body()]))
            .collect();
        insta::assert_json_snapshot!((saved, loaded));
    }
}
