//! `PUT /metrics`: where Firecracker flushes its JSON metrics (spec definition
//! `Metrics`). The file must exist before the call.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Body of `PUT /metrics`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Metrics file or named pipe.
    pub metrics_path: PathBuf,
}
