//! The MCP tools: sandbox operations on bangerd (through `banger_client`)
//! and in guests (through the system `ssh`, as the CLI does).
//!
//! Every tool takes a JSON object checked against its argument type
//! (unknown fields refused), returns a JSON object, and fails with a
//! [`ToolError`] whose [`ToolError::code`] is the daemon's error code when
//! the daemon refused, or one of this server's own codes.

mod catalog;
mod exec;
mod files;
mod fork;
mod sessions;
mod vm;
mod workspace;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Mutex;

use banger_api::VmName;
use banger_api::vms::{VmInfo, VmState};
use banger_client::{ClientError, DaemonClient, StartError};
use banger_config::Paths;
use serde::de::DeserializeOwned;
use serde_json::Value;

pub use catalog::definitions;

use crate::remote::RemoteError;
use crate::safety::{AllowedRoots, HostPathError};

/// Why a tool call failed; shown to the agent as a tool error.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// The arguments do not fit the tool's schema.
    #[error("invalid arguments for {tool}")]
    InvalidArguments {
        /// The tool.
        tool: &'static str,
        /// What did not fit.
        #[source]
        source: serde_json::Error,
    },
    /// An argument is out of range or malformed.
    #[error("invalid argument {argument} for {tool}: {why}")]
    BadArgument {
        /// The tool.
        tool: &'static str,
        /// The argument.
        argument: &'static str,
        /// What is wrong with it.
        why: String,
    },
    /// The daemon could not be reached or started.
    #[error("cannot reach bangerd")]
    Connect {
        /// The cause.
        #[source]
        source: StartError,
    },
    /// The daemon refused or failed the request.
    #[error(transparent)]
    Daemon(#[from] ClientError),
    /// A host path is not allowed.
    #[error(transparent)]
    HostPath(#[from] HostPathError),
    /// A checkout inside an allowed root belongs to a repository outside them.
    #[error(
        "host path {path} belongs to the git repository at {repo}, outside the allowed roots ({roots}); allow that repository with `--allow-path`"
    )]
    RepositoryOutside {
        /// The path as resolved.
        path: PathBuf,
        /// The repository's top level.
        repo: PathBuf,
        /// The allowed roots.
        roots: String,
    },
    /// `vm_delete` of a VM this server did not create.
    #[error(
        "VM {vm} was not created by this banger mcp server; delete it yourself with `banger vm delete {vm}`, or start the server with --allow-delete-any"
    )]
    NotCreatedHere {
        /// The VM.
        vm: VmName,
    },
    /// The VM must be running for this.
    #[error("VM {vm} is {state}; it must be running (vm_resume a paused VM)")]
    NotRunning {
        /// The VM.
        vm: VmName,
        /// Its state.
        state: VmState,
    },
    /// ssh could not be run.
    #[error(transparent)]
    Remote(#[from] RemoteError),
    /// A guest-side helper command failed (file not found, not a
    /// directory, ...); its stderr says why.
    #[error("{what} in VM {vm} failed (exit {exit}): {stderr}")]
    Guest {
        /// The VM.
        vm: VmName,
        /// What was attempted.
        what: String,
        /// The exit status (255: ssh could not connect).
        exit: i32,
        /// The command's stderr, bounded.
        stderr: String,
    },
    /// Planning a workspace copy failed.
    #[error(transparent)]
    Plan(#[from] banger_workspace::PlanError),
    /// Copying a workspace failed.
    #[error(transparent)]
    Prepare(#[from] banger_workspace::PrepareError),
    /// Pulling a workspace failed.
    #[error(transparent)]
    Pull(#[from] banger_workspace::PullError),
    /// Talking to an attached session failed.
    #[error("writing to session {session} of VM {vm} failed")]
    Attach {
        /// The VM.
        vm: VmName,
        /// The session.
        session: banger_api::SessionName,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A blocking helper task was lost.
    #[error("a background task of {tool} failed")]
    Task {
        /// The tool.
        tool: &'static str,
        /// The cause.
        #[source]
        source: tokio::task::JoinError,
    },
}

impl ToolError {
    /// The machine-readable code: the daemon's error code (`not_found`,
    /// `conflict`, ...) when the daemon answered with one, else this
    /// server's own.
    pub fn code(&self) -> String {
        match self {
            Self::InvalidArguments { .. } | Self::BadArgument { .. } => "invalid_arguments".into(),
            Self::Connect { .. } => "daemon_unreachable".into(),
            Self::Daemon(ClientError::Api { error, .. } | ClientError::Operation { error }) => {
                serde_json::to_value(error.code)
                    .ok()
                    .and_then(|code| code.as_str().map(str::to_owned))
                    .unwrap_or_else(|| "internal".into())
            }
            Self::Daemon(_) => "daemon_unreachable".into(),
            Self::HostPath(_) | Self::RepositoryOutside { .. } => "path_not_allowed".into(),
            Self::NotCreatedHere { .. } => "not_created_here".into(),
            Self::NotRunning { .. } => "not_running".into(),
            Self::Remote(_) => "ssh_failed".into(),
            Self::Guest { exit: 255, .. } => "ssh_failed".into(),
            Self::Guest { .. } => "guest_command_failed".into(),
            Self::Plan(_) | Self::Prepare(_) | Self::Pull(_) => "workspace_error".into(),
            Self::Attach { .. } => "session_error".into(),
            Self::Task { .. } => "internal".into(),
        }
    }

    /// The message with its whole cause chain, printed once.
    pub fn message(&self) -> String {
        let mut message = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            let text = cause.to_string();
            // Transparent variants show their source's text already.
            if !message.ends_with(&text) {
                message.push_str(": ");
                message.push_str(&text);
            }
            source = cause.source();
        }
        message
    }
}

/// What the tools need: where the daemon is, which host paths are
/// allowed, and which VMs this server created.
#[derive(Debug)]
pub struct Tools {
    roots: AllowedRoots,
    allow_delete_any: bool,
    paths: Paths,
    daemon_binary: PathBuf,
    client: tokio::sync::OnceCell<DaemonClient>,
    created: Mutex<BTreeSet<VmName>>,
}

impl Tools {
    /// Tools for a daemon at `paths` (started from `daemon_binary` when
    /// none runs, on the first call that needs it).
    pub fn new(
        roots: AllowedRoots,
        allow_delete_any: bool,
        paths: Paths,
        daemon_binary: PathBuf,
    ) -> Self {
        Self {
            roots,
            allow_delete_any,
            paths,
            daemon_binary,
            client: tokio::sync::OnceCell::new(),
            created: Mutex::new(BTreeSet::new()),
        }
    }

    /// The allowed host roots.
    pub fn roots(&self) -> &AllowedRoots {
        &self.roots
    }

    /// Whether `name` is a known tool.
    pub fn exists(name: &str) -> bool {
        catalog::NAMES.contains(&name)
    }

    /// Runs tool `name`; `Ok(None)` when there is no such tool.
    pub async fn call(&self, name: &str, arguments: Value) -> Option<Result<Value, ToolError>> {
        let result = match name {
            "vm_list" => vm::list(self, arguments).await,
            "vm_create" => vm::create(self, arguments).await,
            "vm_pause" => vm::pause(self, arguments).await,
            "vm_resume" => vm::resume(self, arguments).await,
            "vm_delete" => vm::delete(self, arguments).await,
            "vm_fork" => fork::fork(self, arguments).await,
            "vm_ports" => vm::ports(self, arguments).await,
            "vm_logs" => vm::logs(self, arguments).await,
            "vm_exec" => exec::exec(self, arguments).await,
            "vm_run" => exec::run(self, arguments).await,
            "file_read" => files::read(self, arguments).await,
            "file_write" => files::write(self, arguments).await,
            "file_list" => files::list(self, arguments).await,
            "session_start" => sessions::start(self, arguments).await,
            "session_read" => sessions::read(self, arguments).await,
            "session_write" => sessions::write(self, arguments).await,
            "session_stop" => sessions::stop(self, arguments).await,
            "workspace_prepare" => workspace::prepare(self, arguments).await,
            "workspace_pull" => workspace::pull(self, arguments).await,
            _ => return None,
        };
        Some(result)
    }

    /// The daemon client, connecting (and starting the daemon) on first use.
    async fn client(&self) -> Result<&DaemonClient, ToolError> {
        self.client
            .get_or_try_init(|| async {
                banger_client::connect_or_start(&self.paths, &self.daemon_binary)
                    .await
                    .map_err(|source| ToolError::Connect { source })
            })
            .await
    }

    /// A running VM, for tools that reach into the guest.
    async fn running_vm(&self, name: &VmName) -> Result<VmInfo, ToolError> {
        let vm = self.client().await?.vm(name).await?;
        if vm.state != VmState::Running {
            return Err(ToolError::NotRunning {
                vm: vm.name,
                state: vm.state,
            });
        }
        Ok(vm)
    }

    fn remember(&self, name: &VmName) {
        if let Ok(mut created) = self.created.lock() {
            created.insert(name.clone());
        }
    }

    fn forget(&self, name: &VmName) {
        if let Ok(mut created) = self.created.lock() {
            created.remove(name);
        }
    }

    fn created_here(&self, name: &VmName) -> bool {
        self.created
            .lock()
            .is_ok_and(|created| created.contains(name))
    }
}

/// Parses a tool's arguments (a missing object is an empty one).
fn arguments<T: DeserializeOwned>(tool: &'static str, value: Value) -> Result<T, ToolError> {
    let value = if value.is_null() {
        Value::Object(serde_json::Map::new())
    } else {
        value
    };
    serde_json::from_value(value).map_err(|source| ToolError::InvalidArguments { tool, source })
}

/// `true`, for serde defaults of options that are on unless turned off.
fn yes() -> bool {
    true
}

/// A result object from a serialisable value.
fn to_result(value: impl serde::Serialize) -> Result<Value, ToolError> {
    // Our own result types always serialise.
    Ok(serde_json::to_value(value).unwrap_or(Value::Null))
}

/// A guest path must be absolute and free of NUL bytes.
fn guest_path(tool: &'static str, argument: &'static str, path: &str) -> Result<(), ToolError> {
    if !path.starts_with('/') || path.contains('\0') {
        return Err(ToolError::BadArgument {
            tool,
            argument,
            why: format!("{path:?} is not an absolute guest path"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use banger_api::{ApiError, ErrorCode};

    #[test]
    fn daemon_errors_carry_the_daemon_code() {
        let error = ToolError::Daemon(ClientError::Operation {
            error: ApiError {
                code: ErrorCode::SshTimeout,
                message: "VM box: SSH did not answer".into(),
            },
        });
        assert_eq!(error.code(), "ssh_timeout");
        assert_eq!(error.message(), "VM box: SSH did not answer");
        let refused = ToolError::NotCreatedHere {
            vm: VmName::parse("box").unwrap(),
        };
        assert_eq!(refused.code(), "not_created_here");
    }
}
