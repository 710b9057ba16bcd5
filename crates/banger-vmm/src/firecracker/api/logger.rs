//! `PUT /logger`: where Firecracker writes its own log (spec definition
//! `Logger`). The file must exist before the call.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Log level (`level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Warnings and errors.
    Warning,
    /// Informational.
    Info,
    /// Debugging.
    Debug,
    /// Everything.
    Trace,
    /// Nothing.
    Off,
}

/// Body of `PUT /logger`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoggerConfig {
    /// Log file or named pipe.
    pub log_path: PathBuf,
    /// Level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<LogLevel>,
    /// Prefix lines with the level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub show_level: Option<bool>,
    /// Prefix lines with file and line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub show_log_origin: Option<bool>,
}
