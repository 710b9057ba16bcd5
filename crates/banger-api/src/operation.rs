//! Progress streams of long operations (kernel pull, image build, VM create).
//!
//! A long operation answers `200` with `Content-Type: application/x-ndjson`
//! and one [`OperationEvent`] per line: any number of `progress` events, then
//! exactly one `done` (carrying the result) or `failed` (carrying the error).
//! A stream that ends without either means the daemon died mid-way.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ApiError;

/// Media type of progress streams.
pub const NDJSON: &str = "application/x-ndjson";

/// One line of a progress stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "event", rename_all = "snake_case", deny_unknown_fields)]
pub enum OperationEvent<T> {
    /// The operation moved on.
    Progress(Progress),
    /// The operation succeeded; the stream ends.
    Done {
        /// The result.
        result: T,
    },
    /// The operation failed; the stream ends.
    Failed {
        /// Why.
        error: ApiError,
    },
}

/// A step of a long operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Progress {
    /// Short stage name, e.g. `download`, `initramfs`.
    pub stage: String,
    /// Human message for this step.
    pub message: String,
    /// Completed fraction of the stage (0.0 to 1.0), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fraction: Option<f32>,
}
