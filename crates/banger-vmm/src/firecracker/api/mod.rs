//! Client for Firecracker's HTTP API on its Unix socket.
//!
//! Modelled on Firecracker's own code: one [`ApiOperation`] variant per API
//! operation, one module per API resource holding its request type
//! (`XConfig`, `#[serde(deny_unknown_fields)]`, field names exactly as in
//! `firecracker.yaml`). Each call opens a fresh connection: configuration is a
//! handful of requests, and a fresh connection cannot be left in a bad state
//! by an earlier failed call.

pub mod actions;
pub mod boot_source;
pub mod drives;
pub mod entropy;
pub mod logger;
pub mod machine_config;
pub mod metrics;
pub mod network_interfaces;
pub mod snapshot;
pub mod vsock;

use std::path::{Path, PathBuf};
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use thiserror::Error;
use tokio::net::UnixStream;

use actions::{ActionConfig, ActionType};
use boot_source::BootSourceConfig;
use drives::{DriveConfig, PartialDrive};
use entropy::EntropyConfig;
use logger::LoggerConfig;
use machine_config::MachineConfig;
use metrics::MetricsConfig;
use network_interfaces::NetworkInterfaceConfig;
use snapshot::{SnapshotCreateParams, SnapshotLoadParams, VmConfig};
use vsock::VsockConfig;

/// Largest response body read (errors and instance info are tiny).
const MAX_RESPONSE: usize = 64 * 1024;
/// Deadline for one API call.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Deadline for writing or loading a snapshot (guest memory at disk speed).
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(600);

/// One Firecracker API operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiOperation {
    /// `GET /`: instance information.
    DescribeInstance,
    /// `PUT /logger`.
    ConfigureLogger(LoggerConfig),
    /// `PUT /metrics`.
    ConfigureMetrics(MetricsConfig),
    /// `PUT /machine-config`.
    PutMachineConfiguration(MachineConfig),
    /// `PUT /boot-source`.
    ConfigureBootSource(BootSourceConfig),
    /// `PUT /drives/{drive_id}`.
    InsertBlockDevice(DriveConfig),
    /// `PATCH /drives/{drive_id}`.
    PatchBlockDevice(PartialDrive),
    /// `PUT /network-interfaces/{iface_id}`.
    InsertNetworkDevice(NetworkInterfaceConfig),
    /// `PUT /vsock`.
    SetVsockDevice(VsockConfig),
    /// `PUT /entropy`.
    PutEntropyDevice(EntropyConfig),
    /// `PUT /actions` with `InstanceStart`.
    StartMicroVm,
    /// `PUT /actions` with `SendCtrlAltDel`.
    SendCtrlAltDel,
    /// `PUT /actions` with `FlushMetrics`.
    FlushMetrics,
    /// `PATCH /vm`: pause or resume the vCPUs.
    PatchVm(VmConfig),
    /// `PUT /snapshot/create`.
    CreateSnapshot(SnapshotCreateParams),
    /// `PUT /snapshot/load`.
    LoadSnapshot(SnapshotLoadParams),
}

/// A failed API call.
#[derive(Debug, Error)]
pub enum ApiError {
    /// Connecting to the API socket failed.
    #[error("Firecracker API {socket}: connect")]
    Connect {
        /// The API socket.
        socket: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// HTTP-level failure.
    #[error("Firecracker API {socket}: {method} {path}: {message}")]
    Http {
        /// The API socket.
        socket: PathBuf,
        /// HTTP method.
        method: Method,
        /// Request path.
        path: String,
        /// What failed.
        message: String,
    },
    /// Firecracker refused the request.
    #[error("Firecracker API {socket}: {method} {path} -> {status}: {fault_message}")]
    Rejected {
        /// The API socket.
        socket: PathBuf,
        /// HTTP method.
        method: Method,
        /// Request path.
        path: String,
        /// Response status.
        status: StatusCode,
        /// Firecracker's `fault_message` (or the raw body).
        fault_message: String,
    },
    /// No answer in time.
    #[error("Firecracker API {socket}: {method} {path}: no answer within {timeout:?}")]
    Timeout {
        /// How long it was given.
        timeout: Duration,
        /// The API socket.
        socket: PathBuf,
        /// HTTP method.
        method: Method,
        /// Request path.
        path: String,
    },
}

impl ApiOperation {
    /// HTTP method.
    pub fn method(&self) -> Method {
        match self {
            Self::DescribeInstance => Method::GET,
            Self::PatchVm(_) | Self::PatchBlockDevice(_) => Method::PATCH,
            _ => Method::PUT,
        }
    }

    /// Request path (ids from the body go into the URL).
    pub fn path(&self) -> String {
        match self {
            Self::DescribeInstance => "/".into(),
            Self::ConfigureLogger(_) => "/logger".into(),
            Self::ConfigureMetrics(_) => "/metrics".into(),
            Self::PutMachineConfiguration(_) => "/machine-config".into(),
            Self::ConfigureBootSource(_) => "/boot-source".into(),
            Self::InsertBlockDevice(drive) => format!("/drives/{}", drive.drive_id),
            Self::PatchBlockDevice(drive) => format!("/drives/{}", drive.drive_id),
            Self::InsertNetworkDevice(iface) => format!("/network-interfaces/{}", iface.iface_id),
            Self::SetVsockDevice(_) => "/vsock".into(),
            Self::PutEntropyDevice(_) => "/entropy".into(),
            Self::StartMicroVm | Self::SendCtrlAltDel | Self::FlushMetrics => "/actions".into(),
            Self::PatchVm(_) => "/vm".into(),
            Self::CreateSnapshot(_) => "/snapshot/create".into(),
            Self::LoadSnapshot(_) => "/snapshot/load".into(),
        }
    }

    /// How long the call may take.
    pub fn timeout(&self) -> Duration {
        match self {
            Self::CreateSnapshot(_) | Self::LoadSnapshot(_) => SNAPSHOT_TIMEOUT,
            _ => CALL_TIMEOUT,
        }
    }

    /// JSON body, if the operation has one.
    pub fn body(&self) -> Option<serde_json::Value> {
        let action = |action_type| serde_json::to_value(ActionConfig { action_type });
        let value = match self {
            Self::DescribeInstance => return None,
            Self::ConfigureLogger(c) => serde_json::to_value(c),
            Self::ConfigureMetrics(c) => serde_json::to_value(c),
            Self::PutMachineConfiguration(c) => serde_json::to_value(c),
            Self::ConfigureBootSource(c) => serde_json::to_value(c),
            Self::InsertBlockDevice(c) => serde_json::to_value(c),
            Self::PatchBlockDevice(c) => serde_json::to_value(c),
            Self::InsertNetworkDevice(c) => serde_json::to_value(c),
            Self::SetVsockDevice(c) => serde_json::to_value(c),
            Self::PutEntropyDevice(c) => serde_json::to_value(c),
            Self::StartMicroVm => action(ActionType::InstanceStart),
            Self::SendCtrlAltDel => action(ActionType::SendCtrlAltDel),
            Self::FlushMetrics => action(ActionType::FlushMetrics),
            Self::PatchVm(c) => serde_json::to_value(c),
            Self::CreateSnapshot(c) => serde_json::to_value(c),
            Self::LoadSnapshot(c) => serde_json::to_value(c),
        };
        // These types serialise infallibly (plain structs, string paths);
        // Null would be rejected by the server rather than silently sent.
        Some(value.unwrap_or(serde_json::Value::Null))
    }
}

/// Sends `operation` to the Firecracker API at `socket`; returns the
/// response body (empty for 204).
pub async fn call(socket: &Path, operation: &ApiOperation) -> Result<Bytes, ApiError> {
    let method = operation.method();
    let path = operation.path();
    let timeout = operation.timeout();
    match tokio::time::timeout(timeout, send(socket, operation, &method, &path)).await {
        Ok(result) => result,
        Err(_) => Err(ApiError::Timeout {
            timeout,
            socket: socket.to_path_buf(),
            method,
            path,
        }),
    }
}

async fn send(
    socket: &Path,
    operation: &ApiOperation,
    method: &Method,
    path: &str,
) -> Result<Bytes, ApiError> {
    let http = |message: String| ApiError::Http {
        socket: socket.to_path_buf(),
        method: method.clone(),
        path: path.to_owned(),
        message,
    };
    let stream = UnixStream::connect(socket)
        .await
        .map_err(|source| ApiError::Connect {
            socket: socket.to_path_buf(),
            source,
        })?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| http(e.to_string()))?;
    let driver = tokio::spawn(connection);
    let body = operation
        .body()
        .map(|value| Bytes::from(value.to_string()))
        .unwrap_or_default();
    let mut request = Request::builder()
        .method(method.clone())
        .uri(path)
        .header(hyper::header::HOST, "localhost")
        .header(hyper::header::ACCEPT, "application/json");
    if !body.is_empty() {
        request = request.header(hyper::header::CONTENT_TYPE, "application/json");
    }
    let request = request
        .body(Full::new(body))
        .map_err(|e| http(e.to_string()))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| http(e.to_string()))?;
    let status = response.status();
    let bytes = Limited::new(response.into_body(), MAX_RESPONSE)
        .collect()
        .await
        .map_err(|e| http(e.to_string()))?
        .to_bytes();
    driver.abort();
    if status.is_success() {
        return Ok(bytes);
    }
    let fault_message = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v.get("fault_message")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
    Err(ApiError::Rejected {
        socket: socket.to_path_buf(),
        method: method.clone(),
        path: path.to_owned(),
        status,
        fault_message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_bodies_use_spec_field_names() {
        let drive = ApiOperation::InsertBlockDevice(DriveConfig {
            drive_id: "vda".into(),
            path_on_host: "/vm/base.ext4".into(),
            is_root_device: false,
            is_read_only: true,
            cache_type: None,
        });
        assert_eq!(drive.path(), "/drives/vda");
        assert_eq!(
            drive.body().unwrap(),
            serde_json::json!({"drive_id": "vda", "path_on_host": "/vm/base.ext4",
                "is_root_device": false, "is_read_only": true})
        );
        let machine = ApiOperation::PutMachineConfiguration(MachineConfig {
            vcpu_count: 2,
            mem_size_mib: 1024,
            smt: None,
            track_dirty_pages: None,
        });
        assert_eq!(
            machine.body().unwrap(),
            serde_json::json!({"vcpu_count": 2, "mem_size_mib": 1024})
        );
        assert_eq!(
            ApiOperation::SendCtrlAltDel.body().unwrap(),
            serde_json::json!({"action_type": "SendCtrlAltDel"})
        );
        assert_eq!(
            ApiOperation::StartMicroVm.body().unwrap(),
            serde_json::json!({"action_type": "InstanceStart"})
        );
        let logger = ApiOperation::ConfigureLogger(LoggerConfig {
            log_path: "/run/fc.log".into(),
            level: Some(logger::LogLevel::Warning),
            show_level: Some(true),
            show_log_origin: None,
        });
        assert_eq!(
            logger.body().unwrap(),
            serde_json::json!({"log_path": "/run/fc.log", "level": "Warning", "show_level": true})
        );
        assert_eq!(ApiOperation::DescribeInstance.body(), None);
        assert_eq!(ApiOperation::DescribeInstance.method(), Method::GET);
    }

    #[test]
    fn request_types_refuse_unknown_fields() {
        let error = serde_json::from_value::<VsockConfig>(
            serde_json::json!({"guest_cid": 3, "uds_path": "/x", "vsock_id": "v"}),
        )
        .unwrap_err();
        assert!(error.to_string().contains("unknown field"), "{error}");
    }
}
