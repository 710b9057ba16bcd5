//! Guest sessions: long-lived processes in a VM, started and owned by the
//! guest agent, remembered by the daemon.
//!
//! The agent keeps the process, its stdin pipe and its logs (under
//! `/root/.cache/banger/sessions/<name>/` in the guest), so a session and its
//! output outlive a daemon restart; the daemon's `sessions` rows remember
//! what was started and how it ended, so they outlive a VM reboot. Every read
//! reconciles the two: a row the agent no longer knows while the VM ran is
//! `lost`, as is every running row of a stopped VM.

use std::time::Duration;

use banger_agent_client::AgentError;
use banger_agent_client::proto::{
    LogStream as AgentLogStream, SessionRefusal, SessionSignal, SessionSpec,
    SessionState as AgentSessionState, SessionStatus, StdinMode as AgentStdinMode,
};
use banger_api::sessions::{LogStream, SessionCreateRequest, SessionInfo, SessionState, StdinMode};
use banger_api::vms::VmState;
use banger_api::{ErrorCode, SessionName, VmName};

use crate::state::AppState;
use crate::store::{SessionRow, StoreError, VmRow};
use crate::vms::{VmError, row};

/// Deadline of one agent request (not of a log or attach stream after it).
const AGENT_TIMEOUT: Duration = Duration::from_secs(10);

/// The working directory when none is given and `/root/repo` does not exist.
const FALLBACK_CWD: &str = "/root";

/// Where `banger vm workspace prepare` puts a checkout, and so the default cwd.
pub const DEFAULT_CWD: &str = "/root/repo";

/// Why a session operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The VM is missing or not running.
    #[error(transparent)]
    Vm(#[from] VmError),
    /// No command was given.
    #[error("session {name} needs a command (after `--`)")]
    EmptyCommand {
        /// The session.
        name: SessionName,
    },
    /// A session of that name exists.
    #[error("VM {vm} already has a session {name} ({state}); {hint}")]
    NameTaken {
        /// The VM.
        vm: VmName,
        /// The session.
        name: SessionName,
        /// Its state.
        state: SessionState,
        /// What to do.
        hint: &'static str,
    },
    /// No session of that name.
    #[error("VM {vm} has no session {name}; see `banger vm session list {vm}`")]
    NotFound {
        /// The VM.
        vm: VmName,
        /// The session.
        name: SessionName,
    },
    /// The session's state does not allow the operation.
    #[error("session {name} in VM {vm} is {state}; {hint}")]
    WrongState {
        /// The VM.
        vm: VmName,
        /// The session.
        name: SessionName,
        /// Its state.
        state: SessionState,
        /// What to do instead.
        hint: &'static str,
    },
    /// The guest agent refused (a missing command or cwd, an attacher
    /// already present, ...); the reason names the thing.
    #[error("VM {vm}: {reason}")]
    Refused {
        /// The VM.
        vm: VmName,
        /// The agent's reason.
        reason: SessionRefusal,
    },
    /// The guest agent could not be reached or answered badly.
    #[error(
        "VM {vm}: the guest agent did not answer; check `banger vm show {vm}` and `banger doctor`"
    )]
    Agent {
        /// The VM.
        vm: VmName,
        /// The cause.
        #[source]
        source: AgentError,
    },
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl SessionError {
    /// The API error code: what a client may branch on.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Vm(vm) => vm.code(),
            Self::EmptyCommand { .. } => ErrorCode::BadRequest,
            Self::NotFound { .. } => ErrorCode::NotFound,
            Self::NameTaken { .. } | Self::WrongState { .. } => ErrorCode::Conflict,
            Self::Refused { reason, .. } => match reason {
                SessionRefusal::InvalidName { .. }
                | SessionRefusal::InvalidArgv { .. }
                | SessionRefusal::MissingCwd { .. }
                | SessionRefusal::MissingCommand { .. } => ErrorCode::BadRequest,
                SessionRefusal::NotFound { .. } => ErrorCode::NotFound,
                SessionRefusal::AlreadyExists { .. }
                | SessionRefusal::NotPipeMode { .. }
                | SessionRefusal::AlreadyAttached { .. }
                | SessionRefusal::StillRunning { .. }
                | SessionRefusal::NotRunning { .. } => ErrorCode::Conflict,
                SessionRefusal::TooManySessions { .. } | SessionRefusal::Busy { .. } => {
                    ErrorCode::Unavailable
                }
                SessionRefusal::SpawnFailed { .. } => ErrorCode::Internal,
            },
            Self::Agent { .. } => ErrorCode::Unavailable,
            Self::Store(_) => ErrorCode::Internal,
        }
    }
}

fn agent_error(vm: &VmName, error: AgentError) -> SessionError {
    match error {
        AgentError::SessionRefused { reason } => SessionError::Refused {
            vm: vm.clone(),
            reason,
        },
        source => SessionError::Agent {
            vm: vm.clone(),
            source,
        },
    }
}

fn to_agent_mode(mode: StdinMode) -> AgentStdinMode {
    match mode {
        StdinMode::Detached => AgentStdinMode::Detached,
        StdinMode::Pipe => AgentStdinMode::Pipe,
    }
}

/// The stored row of session `name`, with its VM.
fn session_row(
    state: &AppState,
    vm: &VmName,
    name: &SessionName,
) -> Result<(VmRow, SessionRow), SessionError> {
    let store = state.store();
    let vm_row = row(&store, vm)?;
    let session = store
        .session(vm_row.id, name)?
        .ok_or_else(|| SessionError::NotFound {
            vm: vm.clone(),
            name: name.clone(),
        })?;
    Ok((vm_row, session))
}

/// The running VM's vsock socket; a paused VM is resumed first when
/// `auto_resume` is on.
async fn agent_socket(state: &AppState, vm: &VmName) -> Result<std::path::PathBuf, SessionError> {
    crate::vms::agent::wake(state, vm).await?;
    Ok(crate::vms::agent::running_uds(state, vm)?.1)
}

/// Starts a session after checking, in the guest, that the cwd exists and
/// that the command and every required command are on the guest PATH.
pub async fn create(
    state: &AppState,
    vm: &VmName,
    request: &SessionCreateRequest,
) -> Result<SessionInfo, SessionError> {
    if request.command.is_empty() {
        return Err(SessionError::EmptyCommand {
            name: request.name.clone(),
        });
    }
    let uds = agent_socket(state, vm).await?;
    let vm_id = {
        let store = state.store();
        let vm_row = row(&store, vm)?;
        if let Some(existing) = store.session(vm_row.id, &request.name)? {
            return Err(SessionError::NameTaken {
                vm: vm.clone(),
                name: request.name.clone(),
                state: existing.state,
                hint: if existing.state == SessionState::Running {
                    "stop it first, or pick another name"
                } else {
                    "remove it with `banger vm session rm`, or pick another name"
                },
            });
        }
        vm_row.id
    };
    let mut spec = SessionSpec {
        name: request.name.to_string(),
        argv: request.command.clone(),
        cwd: request
            .cwd
            .clone()
            .unwrap_or_else(|| DEFAULT_CWD.to_owned()),
        stdin_mode: to_agent_mode(request.stdin_mode),
        require_commands: request.require_commands.clone(),
    };
    let mut started = banger_agent_client::session_start(&uds, &spec, AGENT_TIMEOUT).await;
    if request.cwd.is_none()
        && matches!(
            &started,
            Err(AgentError::SessionRefused {
                reason: SessionRefusal::MissingCwd { .. }
            })
        )
    {
        spec.cwd = FALLBACK_CWD.to_owned();
        started = banger_agent_client::session_start(&uds, &spec, AGENT_TIMEOUT).await;
    }
    let status = started.map_err(|error| agent_error(vm, error))?;
    let mut session = SessionRow {
        id: 0,
        vm_id,
        name: request.name.clone(),
        command: request.command.clone(),
        cwd: spec.cwd.clone(),
        stdin_mode: request.stdin_mode,
        state: SessionState::Running,
        pid: Some(status.pid),
        exit_code: None,
        signal: None,
        created_at: crate::store::unix_now(),
    };
    apply_agent_state(&mut session, &status);
    let inserted = state.store().insert_session(&session);
    match inserted {
        Ok(id) => session.id = id,
        Err(error) => {
            // Nothing may run that the daemon does not know about, and the
            // name must stay free for a retry.
            discard(&uds, &session.name).await;
            return Err(error.into());
        }
    }
    tracing::info!(vm = %vm, session = %session.name, pid = status.pid, "session started");
    Ok(info(vm, &session, Some(&status)))
}

/// Kills a session the daemon could not record and makes the agent forget
/// it (remove is refused until the kill has landed, so it is retried).
async fn discard(uds: &std::path::Path, name: &SessionName) {
    let name = name.as_str();
    let _ =
        banger_agent_client::session_signal(uds, name, SessionSignal::Kill, AGENT_TIMEOUT).await;
    for _ in 0..20 {
        if banger_agent_client::session_remove(uds, name, AGENT_TIMEOUT)
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tracing::warn!(session = %name, "could not discard an unrecorded session in the guest");
}

/// Copies the agent's view of the process into the row; true if it changed.
fn apply_agent_state(session: &mut SessionRow, status: &SessionStatus) -> bool {
    let (state, exit_code, signal) = match status.state {
        AgentSessionState::Running => (SessionState::Running, None, None),
        AgentSessionState::Exited { code, signal } => (SessionState::Exited, code, signal),
    };
    let changed =
        session.state != state || session.exit_code != exit_code || session.signal != signal;
    session.state = state;
    session.exit_code = exit_code;
    session.signal = signal;
    changed
}

fn info(vm: &VmName, session: &SessionRow, status: Option<&SessionStatus>) -> SessionInfo {
    SessionInfo {
        name: session.name.clone(),
        vm: vm.clone(),
        command: session.command.clone(),
        cwd: session.cwd.clone(),
        stdin_mode: session.stdin_mode,
        state: session.state,
        pid: session.pid,
        exit_code: session.exit_code,
        signal: session.signal,
        attached: status.is_some_and(|status| status.attached),
        stdout_bytes: status.map(|status| status.stdout_bytes),
        stderr_bytes: status.map(|status| status.stderr_bytes),
        created_at: session.created_at,
    }
}

/// The VM's sessions, reconciled with what its agent reports.
pub async fn list(state: &AppState, vm: &VmName) -> Result<Vec<SessionInfo>, SessionError> {
    let (vm_row, rows) = {
        let store = state.store();
        let vm_row = row(&store, vm)?;
        let rows = store.sessions(vm_row.id)?;
        (vm_row, rows)
    };
    let live = live_sessions(state, vm, &vm_row, None).await;
    let mut sessions = Vec::with_capacity(rows.len());
    for mut session in rows {
        let status = reconcile(state, &mut session, live.as_deref())?;
        sessions.push(info(vm, &session, status.as_ref()));
    }
    Ok(sessions)
}

/// One session, reconciled with what its agent reports.
pub async fn show(
    state: &AppState,
    vm: &VmName,
    name: &SessionName,
) -> Result<SessionInfo, SessionError> {
    let (vm_row, mut session) = session_row(state, vm, name)?;
    let live = live_sessions(state, vm, &vm_row, Some(name)).await;
    let status = reconcile(state, &mut session, live.as_deref())?;
    Ok(info(vm, &session, status.as_ref()))
}

/// What the agent reports, for every session or (`only`) the one asked by
/// name, since a list reply may be truncated when a guest has very many:
/// `Some(statuses)` when the VM runs and the agent answered, `Some(empty)`
/// when the VM is not running (nothing can run in it), `None` when the
/// agent could not be asked (state unknown).
async fn live_sessions(
    state: &AppState,
    vm: &VmName,
    vm_row: &VmRow,
    only: Option<&SessionName>,
) -> Option<Vec<SessionStatus>> {
    if vm_row.state != VmState::Running {
        return Some(Vec::new());
    }
    let uds = crate::vms::agent::running_uds(state, vm).ok()?.1;
    let answer = match only {
        Some(name) => banger_agent_client::session_show(&uds, name.as_str(), AGENT_TIMEOUT)
            .await
            .map(|status| vec![status]),
        None => banger_agent_client::session_list(&uds, AGENT_TIMEOUT).await,
    };
    match answer {
        Ok(statuses) => Some(statuses),
        Err(AgentError::SessionRefused {
            reason: SessionRefusal::NotFound { .. },
        }) => Some(Vec::new()),
        Err(error) => {
            tracing::warn!(vm = %vm, session = ?only.map(SessionName::as_str), error = %crate::error::error_chain(&error), "cannot ask the agent for sessions");
            None
        }
    }
}

/// Brings one row up to date with the agent's list and persists changes;
/// returns the agent's status of it when there is one.
fn reconcile(
    state: &AppState,
    session: &mut SessionRow,
    live: Option<&[SessionStatus]>,
) -> Result<Option<SessionStatus>, SessionError> {
    let Some(live) = live else {
        return Ok(None);
    };
    let status = live
        .iter()
        .find(|status| status.name == session.name.as_str() && Some(status.pid) == session.pid)
        .cloned();
    let changed = match &status {
        Some(status) => apply_agent_state(session, status),
        None if session.state == SessionState::Running => {
            session.state = SessionState::Lost;
            true
        }
        None => false,
    };
    if changed {
        state.store().update_session_state(session)?;
    }
    Ok(status)
}

/// Fails with `hint` unless the session is running (`running`) or not.
fn expect_state(
    session: &SessionInfo,
    running: bool,
    hint: &'static str,
) -> Result<(), SessionError> {
    if (session.state == SessionState::Running) == running {
        return Ok(());
    }
    Err(SessionError::WrongState {
        vm: session.vm.clone(),
        name: session.name.clone(),
        state: session.state,
        hint,
    })
}

/// Sends SIGTERM (`stop`) or SIGKILL (`kill`) to the session's process group.
pub async fn signal(
    state: &AppState,
    vm: &VmName,
    name: &SessionName,
    signal: SessionSignal,
) -> Result<SessionInfo, SessionError> {
    expect_state(
        &show(state, vm, name).await?,
        true,
        "only a running session can be stopped or killed",
    )?;
    let uds = agent_socket(state, vm).await?;
    banger_agent_client::session_signal(&uds, name.as_str(), signal, AGENT_TIMEOUT)
        .await
        .map_err(|error| agent_error(vm, error))?;
    // Give a process that honours SIGTERM a moment, so the answer usually
    // shows it exited.
    for _ in 0..20 {
        let now = show(state, vm, name).await?;
        if now.state != SessionState::Running {
            return Ok(now);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    show(state, vm, name).await
}

/// Forgets an ended session: the agent deletes its logs, the row goes.
/// Returns the session as it was.
pub async fn remove(
    state: &AppState,
    vm: &VmName,
    name: &SessionName,
) -> Result<SessionInfo, SessionError> {
    let current = show(state, vm, name).await?;
    expect_state(
        &current,
        false,
        "stop it first with `banger vm session stop`",
    )?;
    let uds = agent_socket(state, vm).await?;
    match banger_agent_client::session_remove(&uds, name.as_str(), AGENT_TIMEOUT).await {
        // After a VM reboot the agent does not know the session; its remove
        // still deletes the log directory, or there was none.
        Ok(())
        | Err(AgentError::SessionRefused {
            reason: SessionRefusal::NotFound { .. },
        }) => {}
        Err(error) => return Err(agent_error(vm, error)),
    }
    let (_, session) = session_row(state, vm, name)?;
    state.store().delete_session(session.id)?;
    tracing::info!(vm = %vm, session = %name, "session removed");
    Ok(current)
}

/// Opens a session's log stream from the agent: the raw bytes of the log
/// from the start, then (with `follow`) new output until the session ends.
pub async fn logs(
    state: &AppState,
    vm: &VmName,
    name: &SessionName,
    stream: LogStream,
    follow: bool,
) -> Result<tokio::net::UnixStream, SessionError> {
    session_row(state, vm, name)?;
    let uds = agent_socket(state, vm).await?;
    let stream = match stream {
        LogStream::Stdout => AgentLogStream::Stdout,
        LogStream::Stderr => AgentLogStream::Stderr,
    };
    let (_, connection) =
        banger_agent_client::session_logs(&uds, name.as_str(), stream, 0, follow, AGENT_TIMEOUT)
            .await
            .map_err(|error| agent_error(vm, error))?;
    Ok(connection)
}

/// Claims the session's single attach slot in the agent; the returned
/// stream carries attach frames both ways.
pub async fn attach(
    state: &AppState,
    vm: &VmName,
    name: &SessionName,
) -> Result<tokio::net::UnixStream, SessionError> {
    expect_state(
        &show(state, vm, name).await?,
        true,
        "only a running session can be attached; see `banger vm session logs`",
    )?;
    let uds = agent_socket(state, vm).await?;
    let (_, connection) = banger_agent_client::session_attach(&uds, name.as_str(), AGENT_TIMEOUT)
        .await
        .map_err(|error| agent_error(vm, error))?;
    Ok(connection)
}

#[cfg(test)]
mod tests {
    use banger_api::SessionName;

    /// The daemon parses session names with `SessionName` at the API edge;
    /// the guest agent checks them again with its own copy of the rule. The
    /// two must accept exactly the same names.
    #[test]
    fn the_api_and_the_guest_agent_share_the_session_name_rule() {
        let mut names: Vec<String> = [
            "", "a", "0", "web", "web-1", "2fast", "web-", "-web", "-", "Web", "a_b", "a.b",
            "../x", "a/b", "é", " web", "web ", "a\n",
        ]
        .iter()
        .map(|name| (*name).to_owned())
        .collect();
        names.extend([
            "a".repeat(62),
            "a".repeat(63),
            "a".repeat(64),
            "é".repeat(32),
        ]);
        for first in ['a', 'z', '0', '9', '-', '_', 'A', '.', '/'] {
            for second in ['a', '0', '-', '_', 'A', '.', ' '] {
                names.push(format!("{first}{second}"));
            }
        }
        for name in names {
            assert_eq!(
                SessionName::parse(&name).is_ok(),
                banger_agent_client::proto::validate_session_name(&name).is_ok(),
                "{name:?}"
            );
        }
    }
}
