//! Types of the `/v1/daemon/*` resource: status, stop and integrity check.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What `GET /v1/daemon/status` returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DaemonStatus {
    /// Process id of the daemon.
    pub pid: u32,
    /// banger version of the daemon binary.
    pub version: String,
    /// Path of the API socket.
    pub socket: String,
    /// Path of the structured log file.
    pub log_file: String,
    /// Directory holding the database and VM state.
    pub state_dir: String,
    /// Path of the SQLite database.
    pub database: String,
    /// DNS listener for `<name>.vm`.
    pub dns: ListenerStatus,
    /// Web UI listener (`listen_addr` is empty when the UI is disabled).
    pub web: ListenerStatus,
    /// The web UI's URL with its per-daemon secret (`?token=`), while it is
    /// served. The API socket is owner-only, so it may carry the secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web_url: Option<String>,
    /// Seconds since the daemon started.
    pub uptime_secs: u64,
}

/// A configured listen address and whether the daemon serves on it yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ListenerStatus {
    /// The configured `host:port`.
    pub listen_addr: String,
    /// Whether something is listening there now.
    pub serving: bool,
}

/// Body of `POST /v1/daemon/stop`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DaemonStopRequest {
    /// Optional reason, written to the daemon log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Reply of `POST /v1/daemon/stop`: the daemon stops after sending it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DaemonStopReply {
    /// Pid of the daemon that is stopping.
    pub pid: u32,
}

/// Result of `POST /v1/daemon/check`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IntegrityReport {
    /// Path of the database that was checked.
    pub database: String,
    /// Schema version found in the database.
    pub schema_version: u32,
    /// True when every check passed.
    pub ok: bool,
    /// Problems found; empty when `ok`.
    pub problems: Vec<String>,
}
