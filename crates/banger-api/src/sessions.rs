//! Wire types of guest sessions: long-lived processes in a VM, started by
//! the daemon through the guest agent, which keeps them (and their logs)
//! alive across daemon restarts.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{SessionName, VmName};

/// What a session's stdin is connected to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StdinMode {
    /// `/dev/null`.
    #[default]
    Detached,
    /// A pipe the guest agent keeps open; written by `attach`.
    Pipe,
}

impl StdinMode {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Detached => "detached",
            Self::Pipe => "pipe",
        }
    }

    /// Parses the stored name.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "detached" => Some(Self::Detached),
            "pipe" => Some(Self::Pipe),
            _ => None,
        }
    }
}

/// Where a session is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SessionState {
    /// The process runs.
    Running,
    /// The process exited; `exit_code` or `signal` says how.
    Exited,
    /// The VM stopped or restarted while the process ran, so its end is unknown.
    Lost,
}

impl SessionState {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Exited => "exited",
            Self::Lost => "lost",
        }
    }

    /// Parses the stored name.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "running" => Some(Self::Running),
            "exited" => Some(Self::Exited),
            "lost" => Some(Self::Lost),
            _ => None,
        }
    }
}

impl std::fmt::Display for SessionState {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// Body of `POST /v1/vms/{name}/sessions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionCreateRequest {
    /// Session name, unique within the VM: lowercase letters, digits and `-`.
    pub name: SessionName,
    /// The command and its arguments; the command must be on the guest PATH.
    pub command: Vec<String>,
    /// Working directory in the guest (default: /root/repo when it exists, else /root).
    #[serde(default)]
    pub cwd: Option<String>,
    /// What stdin is.
    #[serde(default)]
    pub stdin_mode: StdinMode,
    /// Commands that must be on the guest PATH before launching.
    #[serde(default)]
    pub require_commands: Vec<String>,
}

/// A session as the daemon reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SessionInfo {
    /// Session name.
    pub name: SessionName,
    /// The VM it runs in.
    pub vm: VmName,
    /// The command and its arguments.
    pub command: Vec<String>,
    /// Working directory in the guest.
    pub cwd: String,
    /// What stdin is.
    pub stdin_mode: StdinMode,
    /// Running, exited or lost.
    pub state: SessionState,
    /// Guest process id (of the session's process group leader).
    pub pid: Option<u32>,
    /// Exit code, when it exited normally.
    pub exit_code: Option<i32>,
    /// Signal number, when a signal ended it.
    pub signal: Option<i32>,
    /// Whether a client is attached right now.
    pub attached: bool,
    /// Bytes written to stdout so far (when the guest agent could be asked).
    pub stdout_bytes: Option<u64>,
    /// Bytes written to stderr so far (when the guest agent could be asked).
    pub stderr_bytes: Option<u64>,
    /// Unix seconds.
    pub created_at: i64,
}

/// Which output stream of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LogStream {
    /// Standard output.
    #[default]
    Stdout,
    /// Standard error.
    Stderr,
}

/// The `Upgrade` protocol name of `GET /v1/vms/{name}/sessions/{session}/attach`.
/// After `101 Switching Protocols` the connection carries attach frames (see
/// `banger_agent_proto::AttachFrame`) in both directions, unchanged.
pub const ATTACH_PROTOCOL: &str = "banger-attach";
