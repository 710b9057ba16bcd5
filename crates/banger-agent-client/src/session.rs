//! Daemon-managed guest sessions, host side: typed calls for every session
//! request, and validation of what the agent says about sessions.
//!
//! Session names, argv and cwd come back from the guest and are untrusted
//! like everything else: names must pass the same rule the agent enforces,
//! lists and argv are bounded, and all text is sanitised. For
//! [`session_logs`] and [`session_attach`] the timeout covers connecting
//! and the reply line only; the stream after it is the caller's to bound.

use std::path::Path;
use std::time::Duration;

use banger_agent_proto::{
    LogStream, MAX_ARG_BYTES, MAX_ARGS, MAX_MESSAGE_BYTES, MAX_SESSIONS, Request, Response,
    SessionRefusal, SessionSignal, SessionSpec, SessionStatus, validate_session_name,
};
use tokio::net::UnixStream;

use crate::{
    AgentError, InvalidReply, call, call_keeping_stream, sanitize_guest_text, variant_name,
};

/// Starts a session; returns its status once it runs.
pub async fn session_start(
    uds: &Path,
    spec: &SessionSpec,
    timeout: Duration,
) -> Result<SessionStatus, AgentError> {
    let request = Request::SessionStart(spec.clone());
    match call(uds, request.clone(), timeout).await? {
        Response::SessionStarted { session } => Ok(session),
        other => Err(wrong(&request, &other)),
    }
}

/// All sessions the agent knows, sorted by name. Should their command lines
/// be too long to fit one reply frame together, the agent leaves the last
/// ones out (use [`call`] with [`Request::SessionList`] to see the
/// `truncated` flag; [`session_show`] reaches every session).
pub async fn session_list(uds: &Path, timeout: Duration) -> Result<Vec<SessionStatus>, AgentError> {
    match call(uds, Request::SessionList, timeout).await? {
        Response::Sessions { sessions, .. } => Ok(sessions),
        other => Err(wrong(&Request::SessionList, &other)),
    }
}

/// One session.
pub async fn session_show(
    uds: &Path,
    name: &str,
    timeout: Duration,
) -> Result<SessionStatus, AgentError> {
    let request = Request::SessionShow {
        name: name.to_owned(),
    };
    match call(uds, request.clone(), timeout).await? {
        Response::Session { session } => Ok(session),
        other => Err(wrong(&request, &other)),
    }
}

/// Sends `signal` to a running session's process group.
pub async fn session_signal(
    uds: &Path,
    name: &str,
    signal: SessionSignal,
    timeout: Duration,
) -> Result<(), AgentError> {
    done(
        uds,
        Request::SessionSignal {
            name: name.to_owned(),
            signal,
        },
        timeout,
    )
    .await
}

/// Forgets an exited session and deletes its logs in the guest.
pub async fn session_remove(uds: &Path, name: &str, timeout: Duration) -> Result<(), AgentError> {
    done(
        uds,
        Request::SessionRemove {
            name: name.to_owned(),
        },
        timeout,
    )
    .await
}

async fn done(uds: &Path, request: Request, timeout: Duration) -> Result<(), AgentError> {
    match call(uds, request.clone(), timeout).await? {
        Response::Done => Ok(()),
        other => Err(wrong(&request, &other)),
    }
}

/// Asks for a session's log from `offset`. Returns the log's size when the
/// agent answered and the connection, positioned after the reply line: read
/// raw log bytes from it until EOF (with `follow`, EOF comes once the session
/// has exited and its log is drained).
pub async fn session_logs(
    uds: &Path,
    name: &str,
    stream: LogStream,
    offset: u64,
    follow: bool,
    timeout: Duration,
) -> Result<(u64, UnixStream), AgentError> {
    let request = Request::SessionLogs {
        name: name.to_owned(),
        stream,
        offset,
        follow,
    };
    match call_keeping_stream(uds, &request, timeout).await? {
        (Response::LogStream { size }, connection) => Ok((size, connection)),
        (other, _) => Err(wrong(&request, &other)),
    }
}

/// Attaches to a running pipe-mode session. Returns its status and the
/// connection, positioned after the reply line, which then carries
/// [`banger_agent_proto::AttachFrame`]s both ways.
pub async fn session_attach(
    uds: &Path,
    name: &str,
    timeout: Duration,
) -> Result<(SessionStatus, UnixStream), AgentError> {
    let request = Request::SessionAttach {
        name: name.to_owned(),
    };
    match call_keeping_stream(uds, &request, timeout).await? {
        (Response::Attached { session }, connection) => Ok((session, connection)),
        (other, _) => Err(wrong(&request, &other)),
    }
}

fn wrong(request: &Request, response: &Response) -> AgentError {
    AgentError::WrongVariant {
        request: request.kind(),
        got: variant_name(response),
    }
}

/// Whether `request` is one of the session requests validated here.
pub(crate) fn is_session_request(request: &Request) -> bool {
    !matches!(
        request,
        Request::Health | Request::ListeningPorts | Request::Stats
    )
}

/// Checks a reply to a session request and sanitises its strings.
pub(crate) fn validate(request: &Request, response: Response) -> Result<Response, AgentError> {
    let kind = request.kind();
    let invalid = |reason: InvalidReply| AgentError::Invalid {
        request: kind,
        reason,
    };
    let asked = match request {
        Request::SessionStart(spec) => Some(spec.name.as_str()),
        Request::SessionShow { name } | Request::SessionAttach { name } => Some(name.as_str()),
        _ => None,
    };
    // A status must be about the session asked for, not another one.
    let checked = |session: SessionStatus| -> Result<SessionStatus, AgentError> {
        let session = check_status(session).map_err(invalid)?;
        match asked {
            Some(name) if name != session.name => Err(invalid(InvalidReply::OtherSession {
                got: session.name,
                asked: name.to_owned(),
            })),
            _ => Ok(session),
        }
    };
    match (request, response) {
        (_, Response::SessionRefused { reason }) => Err(AgentError::SessionRefused {
            reason: sanitize_refusal(reason),
        }),
        (Request::SessionStart(_), Response::SessionStarted { session }) => {
            Ok(Response::SessionStarted {
                session: checked(session)?,
            })
        }
        (Request::SessionShow { .. }, Response::Session { session }) => Ok(Response::Session {
            session: checked(session)?,
        }),
        (Request::SessionAttach { .. }, Response::Attached { session }) => Ok(Response::Attached {
            session: checked(session)?,
        }),
        (
            Request::SessionList,
            Response::Sessions {
                sessions,
                truncated,
            },
        ) => {
            if sessions.len() > MAX_SESSIONS {
                return Err(invalid(InvalidReply::TooManySessions {
                    count: sessions.len(),
                }));
            }
            let mut sessions = sessions
                .into_iter()
                .map(checked)
                .collect::<Result<Vec<_>, _>>()?;
            sessions.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(Response::Sessions {
                sessions,
                truncated,
            })
        }
        (Request::SessionSignal { .. } | Request::SessionRemove { .. }, Response::Done) => {
            Ok(Response::Done)
        }
        (Request::SessionLogs { .. }, Response::LogStream { size }) => {
            Ok(Response::LogStream { size })
        }
        (_, other) => Err(wrong(request, &other)),
    }
}

/// Validates and sanitises one guest-reported session.
fn check_status(mut session: SessionStatus) -> Result<SessionStatus, InvalidReply> {
    if validate_session_name(&session.name).is_err() {
        return Err(InvalidReply::SessionName {
            name: sanitize_guest_text(&session.name, 64),
        });
    }
    // From here on the name passed the agent's own rule: safe to show.
    if session.pid == 0 {
        return Err(InvalidReply::SessionPidZero { name: session.name });
    }
    if session.argv.is_empty() || session.argv.len() > MAX_ARGS {
        return Err(InvalidReply::SessionArgCount {
            count: session.argv.len(),
            name: session.name,
        });
    }
    for arg in &mut session.argv {
        *arg = sanitize_guest_text(arg, MAX_ARG_BYTES);
    }
    session.cwd = sanitize_guest_text(&session.cwd, MAX_ARG_BYTES);
    Ok(session)
}

fn sanitize_refusal(reason: SessionRefusal) -> SessionRefusal {
    let clean = |text: String| sanitize_guest_text(&text, MAX_MESSAGE_BYTES);
    match reason {
        SessionRefusal::InvalidName { name } => SessionRefusal::InvalidName { name: clean(name) },
        SessionRefusal::InvalidArgv { reason } => SessionRefusal::InvalidArgv {
            reason: clean(reason),
        },
        SessionRefusal::AlreadyExists { name } => {
            SessionRefusal::AlreadyExists { name: clean(name) }
        }
        SessionRefusal::NotFound { name } => SessionRefusal::NotFound { name: clean(name) },
        SessionRefusal::MissingCwd { path } => SessionRefusal::MissingCwd { path: clean(path) },
        SessionRefusal::MissingCommand { command } => SessionRefusal::MissingCommand {
            command: clean(command),
        },
        SessionRefusal::NotPipeMode { name } => SessionRefusal::NotPipeMode { name: clean(name) },
        SessionRefusal::AlreadyAttached { name } => {
            SessionRefusal::AlreadyAttached { name: clean(name) }
        }
        SessionRefusal::StillRunning { name } => SessionRefusal::StillRunning { name: clean(name) },
        SessionRefusal::NotRunning { name } => SessionRefusal::NotRunning { name: clean(name) },
        SessionRefusal::SpawnFailed { message } => SessionRefusal::SpawnFailed {
            message: clean(message),
        },
        limit @ (SessionRefusal::TooManySessions { .. } | SessionRefusal::Busy { .. }) => limit,
    }
}
