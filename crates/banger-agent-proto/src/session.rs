//! Daemon-managed guest sessions: long-running commands the guest agent
//! starts, owns and logs, so they outlive the host daemon.
//!
//! The agent validates every [`SessionSpec`] with [`validate_spec`] (and the
//! daemon may call it first to fail early with the same rule); the limits
//! here keep every reply that carries a [`SessionStatus`] well under
//! [`crate::MAX_FRAME_BYTES`], even when every byte escapes to six in JSON.

use std::fmt;

use serde::{Deserialize, Serialize};

/// `PATH` of every session, also where commands are looked up before
/// spawning: the user's tool directories (pipx, mise shims) come first.
pub const SESSION_PATH: &str = "/root/.local/bin:/root/.local/share/mise/shims:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Most sessions an agent keeps (running or exited, until removed), and so
/// the most a [`crate::Response::Sessions`] lists.
pub const MAX_SESSIONS: usize = 256;

/// Longest session name, in bytes.
pub const MAX_SESSION_NAME_BYTES: usize = 63;

/// Most arguments in a session's argv (program included).
pub const MAX_ARGS: usize = 256;

/// Longest single argument (and longest `cwd`), in bytes.
pub const MAX_ARG_BYTES: usize = 4 * 1024;

/// Longest argv, all arguments together, in bytes.
pub const MAX_ARGV_BYTES: usize = 16 * 1024;

/// Most `require_commands` entries.
pub const MAX_REQUIRED_COMMANDS: usize = 32;

/// What to start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionSpec {
    /// Unique name, see [`validate_session_name`].
    pub name: String,
    /// Program and arguments; the program is looked up on [`SESSION_PATH`]
    /// unless it contains a `/`.
    pub argv: Vec<String>,
    /// Absolute working directory; must exist.
    pub cwd: String,
    /// What the session's stdin is.
    pub stdin_mode: StdinMode,
    /// Commands that must resolve on [`SESSION_PATH`] before starting.
    pub require_commands: Vec<String>,
}

/// A session's stdin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StdinMode {
    /// `/dev/null`.
    Detached,
    /// A pipe the agent keeps open; attachers write to it.
    Pipe,
}

/// A signal for a session's process group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionSignal {
    /// `SIGTERM`: ask it to stop.
    Terminate,
    /// `SIGKILL`: stop it now.
    Kill,
}

/// One of a session's two output logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogStream {
    /// `stdout.log`.
    Stdout,
    /// `stderr.log`.
    Stderr,
}

/// A session as the agent reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionStatus {
    /// Its name.
    pub name: String,
    /// What was started.
    pub argv: Vec<String>,
    /// Its working directory.
    pub cwd: String,
    /// What its stdin is.
    pub stdin_mode: StdinMode,
    /// Guest pid of the session leader (also its process group id).
    pub pid: u32,
    /// When it started, seconds since the Unix epoch (guest clock).
    pub started_at_unix: u64,
    /// Running or exited.
    pub state: SessionState,
    /// Whether a host is attached right now.
    pub attached: bool,
    /// Bytes written to `stdout.log` so far.
    pub stdout_bytes: u64,
    /// Bytes written to `stderr.log` so far.
    pub stderr_bytes: u64,
}

/// Whether a session still runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum SessionState {
    /// The session leader has not exited.
    Running,
    /// The session leader exited with `code`, or was killed by `signal`.
    Exited {
        /// Exit code, when it exited normally.
        code: Option<i32>,
        /// Terminating signal, when it was killed.
        signal: Option<i32>,
    },
}

/// Why the agent refused a session request. Each names what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum SessionRefusal {
    /// The name breaks [`validate_session_name`].
    InvalidName {
        /// The name.
        name: String,
    },
    /// The argv (or cwd, or required commands) breaks a limit or is empty.
    InvalidArgv {
        /// What is wrong.
        reason: String,
    },
    /// A session (or an earlier boot's logs) with this name exists.
    AlreadyExists {
        /// The name.
        name: String,
    },
    /// No session (and no logs) with this name.
    NotFound {
        /// The name.
        name: String,
    },
    /// The working directory is not an existing absolute directory.
    MissingCwd {
        /// The path.
        path: String,
    },
    /// The program or a required command does not resolve.
    MissingCommand {
        /// The command.
        command: String,
    },
    /// Attach needs a [`StdinMode::Pipe`] session.
    NotPipeMode {
        /// The session.
        name: String,
    },
    /// Another host connection is attached.
    AlreadyAttached {
        /// The session.
        name: String,
    },
    /// Remove needs an exited session.
    StillRunning {
        /// The session.
        name: String,
    },
    /// Signal or attach needs a running session.
    NotRunning {
        /// The session.
        name: String,
    },
    /// The agent already keeps [`MAX_SESSIONS`] sessions.
    TooManySessions {
        /// The limit.
        limit: u32,
    },
    /// Too many attached or following connections at once.
    Busy {
        /// The limit on such connections.
        limit: u32,
    },
    /// Creating the log directory or spawning the process failed.
    SpawnFailed {
        /// The OS error, as text.
        message: String,
    },
}

impl fmt::Display for SessionRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidName { name } => write!(
                f,
                "invalid session name {name:?}: use 1-63 of a-z, 0-9 and '-', not starting with '-'"
            ),
            Self::InvalidArgv { reason } => write!(f, "invalid session command: {reason}"),
            Self::AlreadyExists { name } => write!(
                f,
                "session {name:?} already exists in the guest (remove it first)"
            ),
            Self::NotFound { name } => write!(f, "no session {name:?} in the guest"),
            Self::MissingCwd { path } => write!(
                f,
                "working directory {path:?} is not an existing absolute directory in the guest"
            ),
            Self::MissingCommand { command } => write!(
                f,
                "command {command:?} is not on the guest PATH ({SESSION_PATH})"
            ),
            Self::NotPipeMode { name } => write!(
                f,
                "session {name:?} has no stdin pipe (start it with --stdin-mode pipe to attach)"
            ),
            Self::AlreadyAttached { name } => {
                write!(f, "session {name:?} already has an attached client")
            }
            Self::StillRunning { name } => {
                write!(f, "session {name:?} is still running (stop it first)")
            }
            Self::NotRunning { name } => write!(f, "session {name:?} is not running"),
            Self::TooManySessions { limit } => write!(
                f,
                "the guest already keeps {limit} sessions (remove exited ones first)"
            ),
            Self::Busy { limit } => write!(
                f,
                "the guest agent already serves {limit} attached or following connections"
            ),
            Self::SpawnFailed { message } => write!(f, "cannot start the session: {message}"),
        }
    }
}

/// A session name breaking the rule `[a-z0-9][a-z0-9-]{0,62}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid session name {name:?}: use 1-63 of a-z, 0-9 and '-', not starting with '-'")]
pub struct SessionNameError {
    /// The name.
    pub name: String,
}

/// Checks `name` against `[a-z0-9][a-z0-9-]{0,62}`: safe as a directory name
/// and in a shell or URL without quoting.
pub fn validate_session_name(name: &str) -> Result<(), SessionNameError> {
    let bytes = name.as_bytes();
    let valid = !bytes.is_empty()
        && bytes.len() <= MAX_SESSION_NAME_BYTES
        && bytes[0] != b'-'
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-');
    if valid {
        Ok(())
    } else {
        Err(SessionNameError {
            name: name.to_owned(),
        })
    }
}

/// Checks the name and the size limits of `spec` (not whether the cwd or
/// commands exist: only the guest can tell).
pub fn validate_spec(spec: &SessionSpec) -> Result<(), SessionRefusal> {
    validate_session_name(&spec.name)
        .map_err(|error| SessionRefusal::InvalidName { name: error.name })?;
    let invalid = |reason: String| Err(SessionRefusal::InvalidArgv { reason });
    if spec.argv.is_empty() || spec.argv[0].is_empty() {
        return invalid("no program given".into());
    }
    if spec.argv.len() > MAX_ARGS {
        return invalid(format!(
            "{} arguments, more than {MAX_ARGS}",
            spec.argv.len()
        ));
    }
    if let Some((index, _)) = spec
        .argv
        .iter()
        .enumerate()
        .find(|(_, arg)| arg.len() > MAX_ARG_BYTES)
    {
        return invalid(format!(
            "argument {index} is longer than {MAX_ARG_BYTES} bytes"
        ));
    }
    let total: usize = spec.argv.iter().map(String::len).sum();
    if total > MAX_ARGV_BYTES {
        return invalid(format!(
            "the command is {total} bytes, more than {MAX_ARGV_BYTES}"
        ));
    }
    if spec.cwd.len() > MAX_ARG_BYTES {
        return invalid(format!(
            "the working directory is longer than {MAX_ARG_BYTES} bytes"
        ));
    }
    if spec.require_commands.len() > MAX_REQUIRED_COMMANDS {
        return invalid(format!(
            "{} required commands, more than {MAX_REQUIRED_COMMANDS}",
            spec.require_commands.len()
        ));
    }
    if let Some(command) = spec
        .require_commands
        .iter()
        .find(|c| c.is_empty() || c.len() > MAX_ARG_BYTES)
    {
        return invalid(format!(
            "required command of {} bytes (must be 1 to {MAX_ARG_BYTES})",
            command.len()
        ));
    }
    let nul = |s: &String| s.contains('\0');
    if spec.argv.iter().any(nul) || nul(&spec.cwd) || spec.require_commands.iter().any(nul) {
        return invalid("NUL byte in the command, working directory or a required command".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(argv: &[&str]) -> SessionSpec {
        SessionSpec {
            name: "web".into(),
            argv: argv.iter().map(|a| (*a).to_owned()).collect(),
            cwd: "/root".into(),
            stdin_mode: StdinMode::Detached,
            require_commands: vec![],
        }
    }

    #[test]
    fn session_names_follow_the_rule() {
        for good in ["a", "0", "web-1", &"a".repeat(63)] {
            assert!(validate_session_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "-a",
            "A",
            "a_b",
            "a.b",
            "../x",
            "a/b",
            &"a".repeat(64),
            "é",
        ] {
            assert!(validate_session_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn spec_limits_are_enforced() {
        assert!(validate_spec(&spec(&["sleep", "1"])).is_ok());
        assert!(matches!(
            validate_spec(&spec(&[])),
            Err(SessionRefusal::InvalidArgv { .. })
        ));
        let long = "x".repeat(MAX_ARG_BYTES + 1);
        assert!(validate_spec(&spec(&["echo", &long])).is_err());
        let many = vec!["x"; MAX_ARGS + 1];
        assert!(validate_spec(&spec(&many)).is_err());
        let big = "x".repeat(MAX_ARG_BYTES);
        let total = vec![big.as_str(); 5];
        assert!(validate_spec(&spec(&total)).is_err());
        assert!(validate_spec(&spec(&["a\0b"])).is_err());
        let mut bad_name = spec(&["true"]);
        bad_name.name = "Bad".into();
        assert_eq!(
            validate_spec(&bad_name),
            Err(SessionRefusal::InvalidName { name: "Bad".into() })
        );
    }

    #[test]
    fn refusals_name_what_failed() {
        let message = SessionRefusal::MissingCommand {
            command: "foo".into(),
        }
        .to_string();
        assert!(message.starts_with("command \"foo\" is not on the guest PATH (/root/.local/bin:"));
        assert!(
            SessionRefusal::MissingCwd {
                path: "/nope".into()
            }
            .to_string()
            .contains("\"/nope\"")
        );
    }
}
