//! Process supervision shared by both backends: detached spawning, identity
//! checks that survive a daemon restart, signals and waiting.
//!
//! A VM's processes (the VMM, its console copier, vhost-device-vsock) must
//! outlive the daemon, so they are started in their own session with no tie to
//! the daemon's stdio. After a daemon restart they are no longer its children;
//! the daemon finds them again through a persisted [`ProcessIdentity`]
//! (pid + start time + executable), which detects pid reuse. Signals go through
//! a pidfd opened *before* the identity check, so a pid recycled between the
//! check and the signal cannot be hit.
//!
//! Children started by this process are also kept in a registry so that their
//! exit status can be collected (and zombies reaped) by [`wait_exit`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

pub use rustix::process::Signal;
use rustix::process::{Pid, PidfdFlags, pidfd_open, pidfd_send_signal};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// How often exit is polled for processes that are not our children.
const POLL: Duration = Duration::from_millis(50);

/// Failures identifying, spawning or signalling a process.
#[derive(Debug, Error)]
pub enum ProcessError {
    /// `/proc/<pid>` could not be read (the process is gone or not ours).
    #[error("process {pid}: cannot read {path}")]
    Proc {
        /// Process id.
        pid: u32,
        /// The /proc file.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// `/proc/<pid>/stat` had an unexpected shape.
    #[error("process {pid}: malformed /proc/{pid}/stat")]
    MalformedStat {
        /// Process id.
        pid: u32,
    },
    /// Starting a program failed.
    #[error("cannot start {program}")]
    Spawn {
        /// The program.
        program: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// Sending a signal failed.
    #[error("process {pid} ({exe}): cannot send signal {signal}")]
    Signal {
        /// Process id.
        pid: u32,
        /// Its executable.
        exe: PathBuf,
        /// Raw signal number.
        signal: i32,
        /// Underlying error.
        source: std::io::Error,
    },
}

/// Who a process is, precisely enough to tell it from a later process that
/// got the same pid. Serialisable so the daemon can persist it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ProcessIdentity {
    /// Process id.
    pub pid: u32,
    /// Start time in clock ticks after boot (`/proc/<pid>/stat` field 22).
    pub start_time_ticks: u64,
    /// Executable (`/proc/<pid>/exe`).
    pub exe: PathBuf,
}

/// Facts read from `/proc/<pid>/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    state: char,
    start_time_ticks: u64,
}

fn read_stat(pid: u32) -> Result<Stat, ProcessError> {
    let path = PathBuf::from(format!("/proc/{pid}/stat"));
    let text = fs_err::read_to_string(&path).map_err(|source| ProcessError::Proc {
        pid,
        path: path.clone(),
        source,
    })?;
    parse_stat(&text).ok_or(ProcessError::MalformedStat { pid })
}

/// Parses `/proc/<pid>/stat`. The command name (field 2) may contain spaces
/// and parentheses, so fields are counted from the *last* `)`.
fn parse_stat(text: &str) -> Option<Stat> {
    let (_, rest) = text.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // After the state (field 3) come fields 4..; field 22 is the 19th of those.
    let start_time_ticks = fields.nth(18)?.parse().ok()?;
    Some(Stat {
        state,
        start_time_ticks,
    })
}

fn read_exe(pid: u32) -> Result<PathBuf, ProcessError> {
    let path = PathBuf::from(format!("/proc/{pid}/exe"));
    fs_err::read_link(&path).map_err(|source| ProcessError::Proc { pid, path, source })
}

/// True when `actual` is `recorded`, or `recorded` replaced on disk (e.g. by a
/// package upgrade) while the process kept running.
fn same_exe(recorded: &Path, actual: &Path) -> bool {
    if recorded == actual {
        return true;
    }
    let deleted = format!("{} (deleted)", recorded.display());
    actual.as_os_str() == deleted.as_str()
}

impl ProcessIdentity {
    /// Reads the identity of the live process `pid` from /proc.
    pub fn of(pid: u32) -> Result<Self, ProcessError> {
        let stat = read_stat(pid)?;
        Ok(Self {
            pid,
            start_time_ticks: stat.start_time_ticks,
            exe: read_exe(pid)?,
        })
    }

    /// True when a process with this pid runs (not a zombie), started at the
    /// recorded time and runs the recorded executable.
    pub fn is_alive_and_same(&self) -> bool {
        let Ok(stat) = read_stat(self.pid) else {
            return false;
        };
        if matches!(stat.state, 'Z' | 'X' | 'x') || stat.start_time_ticks != self.start_time_ticks {
            return false;
        }
        read_exe(self.pid).is_ok_and(|exe| same_exe(&self.exe, &exe))
    }

    /// Sends `signal` if (and only if) the process is still this one.
    /// Returns false when it is gone or the pid now belongs to someone else.
    pub fn signal(&self, signal: Signal) -> Result<bool, ProcessError> {
        let Some(pid) = i32::try_from(self.pid).ok().and_then(Pid::from_raw) else {
            return Ok(false);
        };
        // Pin the process first, then check who it is: the pidfd keeps
        // referring to this process even if the pid is recycled afterwards.
        let Ok(pidfd) = pidfd_open(pid, PidfdFlags::empty()) else {
            return Ok(false);
        };
        if !self.is_alive_and_same() {
            return Ok(false);
        }
        match pidfd_send_signal(&pidfd, signal) {
            Ok(()) => Ok(true),
            Err(rustix::io::Errno::SRCH) => Ok(false),
            Err(error) => Err(ProcessError::Signal {
                pid: self.pid,
                exe: self.exe.clone(),
                signal: signal.as_raw(),
                source: error.into(),
            }),
        }
    }
}

/// How a VM process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum ExitInfo {
    /// Exited with this status code.
    Code {
        /// Exit code.
        code: i32,
    },
    /// Killed by this signal.
    Signal {
        /// Raw signal number.
        signal: i32,
    },
    /// Gone, but it was not this process's child (e.g. adopted after a daemon
    /// restart), so the status is unknown.
    Unknown,
}

/// Children spawned by this process, by pid, so [`wait_exit`] can reap them
/// and report their status.
static CHILDREN: LazyLock<Mutex<HashMap<u32, std::process::Child>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

fn lock_children() -> std::sync::MutexGuard<'static, HashMap<u32, std::process::Child>> {
    // A panic while holding the lock leaves the map intact; keep using it.
    CHILDREN.lock().unwrap_or_else(|e| e.into_inner())
}

/// Starts `command` detached from this process: its own session (so it
/// survives the daemon being killed and gets no terminal hangup), stdin from
/// /dev/null unless the caller set it. Returns its identity; the child is kept
/// in the registry for [`wait_exit`].
pub fn spawn_detached(mut command: std::process::Command) -> Result<ProcessIdentity, ProcessError> {
    use std::os::unix::process::CommandExt;
    let program = PathBuf::from(command.get_program());
    // SAFETY: the closure runs in the forked child before exec and calls only
    // setsid(2), which is async-signal-safe and touches no shared state.
    unsafe {
        command.pre_exec(|| {
            rustix::process::setsid().map_err(std::io::Error::from)?;
            Ok(())
        });
    }
    let child = command.spawn().map_err(|source| ProcessError::Spawn {
        program: program.clone(),
        source,
    })?;
    let pid = child.id();
    lock_children().insert(pid, child);
    // spawn() returns after a successful exec, so /proc shows the new program.
    // A program that already exited is a zombie (we have not reaped it): its
    // stat is readable but its exe link is not, so fall back to the program.
    match ProcessIdentity::of(pid) {
        Ok(identity) => Ok(identity),
        Err(error) => match read_stat(pid) {
            Ok(stat) => Ok(ProcessIdentity {
                pid,
                start_time_ticks: stat.start_time_ticks,
                exe: program,
            }),
            Err(_) => Err(error),
        },
    }
}

/// For our own children: `Some(None)` while running, `Some(Some(info))` once
/// exited (reaped now). `None` when `identity` is not our child.
///
/// A registered child is authoritative: its pid cannot be reused before we
/// reap it, and /proc is unreliable while it dies (the exe link disappears
/// before the process becomes a zombie).
fn try_reap(identity: &ProcessIdentity) -> Option<Option<ExitInfo>> {
    use std::os::unix::process::ExitStatusExt;
    let mut children = lock_children();
    let child = children.get_mut(&identity.pid)?;
    match child.try_wait() {
        Ok(Some(status)) => {
            children.remove(&identity.pid);
            Some(Some(match (status.code(), status.signal()) {
                (Some(code), _) => ExitInfo::Code { code },
                (None, Some(signal)) => ExitInfo::Signal { signal },
                (None, None) => ExitInfo::Unknown,
            }))
        }
        Ok(None) => Some(None),
        Err(_) => {
            children.remove(&identity.pid);
            Some(Some(ExitInfo::Unknown))
        }
    }
}

/// Non-blocking: `Some` once the process has ended (reaping it when it is our
/// child), `None` while it runs.
pub fn exit_status(identity: &ProcessIdentity) -> Option<ExitInfo> {
    if let Some(state) = try_reap(identity) {
        return state;
    }
    if identity.is_alive_and_same() {
        None
    } else {
        Some(ExitInfo::Unknown)
    }
}

/// Waits up to `timeout` for the process to end; `None` if it still runs.
pub async fn wait_exit(identity: &ProcessIdentity, timeout: Duration) -> Option<ExitInfo> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(info) = exit_status(identity) {
            return Some(info);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Sends SIGKILL and waits (up to 5 s) for the process to disappear.
pub async fn kill_and_wait(identity: &ProcessIdentity) -> Result<Option<ExitInfo>, ProcessError> {
    identity.signal(Signal::KILL)?;
    Ok(wait_exit(identity, Duration::from_secs(5)).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_command_names() {
        let text =
            "1234 (a) b (c)) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 100";
        let stat = parse_stat(text).unwrap();
        assert_eq!(stat.state, 'S');
        assert_eq!(stat.start_time_ticks, 987_654);
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (x) S 1 2"), None);
    }

    #[test]
    fn identity_of_self_is_alive() {
        let me = ProcessIdentity::of(std::process::id()).unwrap();
        assert!(me.is_alive_and_same());
        assert_eq!(me.exe, std::env::current_exe().unwrap());
    }

    #[test]
    fn pid_reuse_is_detected() {
        let me = ProcessIdentity::of(std::process::id()).unwrap();
        // Same pid, different start time: a recycled pid.
        let recycled = ProcessIdentity {
            start_time_ticks: me.start_time_ticks + 1,
            ..me.clone()
        };
        assert!(!recycled.is_alive_and_same());
        // Same pid and start time, other program.
        let other_exe = ProcessIdentity {
            exe: "/usr/bin/qemu-system-x86_64".into(),
            ..me.clone()
        };
        assert!(!other_exe.is_alive_and_same());
        // Signalling a mismatched identity must not touch this process.
        assert!(!recycled.signal(Signal::TERM).unwrap());
        assert!(same_exe(
            Path::new("/usr/bin/qemu"),
            Path::new("/usr/bin/qemu (deleted)")
        ));
    }

    #[tokio::test]
    async fn spawned_child_is_detached_killed_and_reaped() {
        let mut command = std::process::Command::new("sleep");
        command.arg("30");
        let id = spawn_detached(command).unwrap();
        assert!(id.is_alive_and_same());
        // Its own session: session id == its pid.
        let sid = rustix::process::getsid(Pid::from_raw(i32::try_from(id.pid).unwrap())).unwrap();
        assert_eq!(sid.as_raw_nonzero().get(), i32::try_from(id.pid).unwrap());
        assert_eq!(exit_status(&id), None);
        let info = kill_and_wait(&id).await.unwrap();
        assert_eq!(info, Some(ExitInfo::Signal { signal: 9 }));
        assert!(!id.is_alive_and_same());
        // Gone processes are not signalled.
        assert!(!id.signal(Signal::KILL).unwrap());
    }

    #[tokio::test]
    async fn exit_code_of_child_is_reported() {
        let mut command = std::process::Command::new("sh");
        command.args(["-c", "exit 7"]);
        let id = spawn_detached(command).unwrap();
        assert_eq!(
            wait_exit(&id, Duration::from_secs(5)).await,
            Some(ExitInfo::Code { code: 7 })
        );
    }
}
