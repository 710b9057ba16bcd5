//! The JSON error body every failing API call returns.
//!
//! Errors carry a stable machine-readable `code` and a human `message` that
//! already contains the full cause chain, printed once.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Stable error categories; clients branch on these, never on messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request body or parameters were malformed.
    BadRequest,
    /// The request body exceeded the daemon's size limit.
    PayloadTooLarge,
    /// The peer is not allowed to use this daemon.
    Forbidden,
    /// No such route or resource.
    NotFound,
    /// The route exists but not with this method.
    MethodNotAllowed,
    /// The request conflicts with current state.
    Conflict,
    /// The host cannot do it right now: the VMM or a helper program is
    /// missing, networking is not set up, the address pool is exhausted.
    Unavailable,
    /// The VM started but its SSH server did not answer in time; the VM is
    /// kept running for inspection.
    SshTimeout,
    /// The daemon failed while doing the work.
    Internal,
}

/// Body of every non-2xx response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiError {
    /// Machine-readable category.
    pub code: ErrorCode,
    /// Human-readable message including its causes.
    pub message: String,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ApiError {}
