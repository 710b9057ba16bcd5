//! Process supervision shared by both backends: detached spawning, identity
//! checks that survive a daemon restart, signals and waiting.
//!
//! A VM's processes (the VMM, its console copier, vhost-device-vsock) must
//! outlive the daemon, so they are started in their own session with no tie to
//! the daemon's stdio. After a daemon restart they are no longer its children;
//! the daemon finds them again through a persisted [`ProcessIdentity`]
//! (pid + start time + executable), which detects pid reuse.
//!
//! Every process is pinned by a pidfd before anything is done to it: a pidfd
//! keeps referring to the process it was opened for even when its pid is
//! recycled, so
//! - signals go through the pidfd, opened *before* the identity check, and a
//!   pid recycled between the check and the signal cannot be hit;
//! - exits are waited for by awaiting the pidfd becoming readable (see
//!   [`ExitWatch`]), which the kernel reports the moment the process exits:
//!   no polling.
//!
//! Children started by this process are kept in a registry (with the pidfd
//! opened right after the spawn, while the unreaped child still owns its pid)
//! so their exit status is collected, and their zombies reaped, by whoever
//! notices the exit first; the status is remembered for a while so a second
//! waiter (a stop and the daemon's watcher, say) learns the same status.
//!
//! Only where `pidfd_open(2)` does not exist (`ENOSYS`, kernels before 5.3)
//! are exits polled every [`POLL`] and signals sent by pid after the identity
//! check (with the small race that implies).

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use banger_host::process::{Stat, StatError};
use rustix::io::Errno;
pub use rustix::process::Signal;
use rustix::process::{Pid, PidfdFlags, pidfd_open, pidfd_send_signal};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::io::unix::AsyncFd;

/// How often exit is polled where no pidfd can be had (see the module doc).
const POLL: Duration = Duration::from_millis(50);

/// How long the exit status of a reaped child stays known, for waiters that
/// come after the one that reaped it.
const EXITED_KEEP: Duration = Duration::from_secs(600);
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

/// `/proc/<pid>/stat` of `pid`, through the one parser (see
/// [`banger_host::process`]).
fn read_stat(pid: u32) -> Result<Stat, ProcessError> {
    banger_host::process::read_stat(pid).map_err(|error| match error {
        StatError::Read { path, source } => ProcessError::Proc { pid, path, source },
        StatError::Malformed { .. } => ProcessError::MalformedStat { pid },
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

    /// This process's identity with the executable it runs now, for a
    /// program started through a wrapper (a script that execs QEMU or
    /// Firecracker): at spawn time /proc showed the wrapper, and a later
    /// [`Self::is_alive_and_same`] would take the real VMM for another
    /// process and never signal it. Call it once the program is ready (its
    /// socket exists). Unchanged when the pid is gone or is another process
    /// (a different start time).
    pub fn current(&self) -> Self {
        match (read_stat(self.pid), read_exe(self.pid)) {
            (Ok(stat), Ok(exe))
                if stat.is_live() && stat.start_time_ticks == self.start_time_ticks =>
            {
                Self {
                    exe,
                    ..self.clone()
                }
            }
            _ => self.clone(),
        }
    }

    /// True when a process with this pid runs (not a zombie), started at the
    /// recorded time and runs the recorded executable.
    pub fn is_alive_and_same(&self) -> bool {
        let Ok(stat) = read_stat(self.pid) else {
            return false;
        };
        if !stat.is_live() || stat.start_time_ticks != self.start_time_ticks {
            return false;
        }
        read_exe(self.pid).is_ok_and(|exe| same_exe(&self.exe, &exe))
    }

    /// True when this very process exists but does not run: stopped by a
    /// signal (SIGSTOP, SIGTSTP: state `T`) or by a debugger (`t`). A
    /// stopped VMM keeps its pid and sockets, so nothing but this tells a
    /// frozen guest from a busy one.
    pub fn is_stopped(&self) -> bool {
        read_stat(self.pid)
            .is_ok_and(|stat| stat.is_stopped() && stat.start_time_ticks == self.start_time_ticks)
            && self.is_alive_and_same()
    }

    /// The pid as rustix wants it; `None` for pids no process can have.
    fn raw_pid(&self) -> Option<Pid> {
        i32::try_from(self.pid).ok().and_then(Pid::from_raw)
    }

    /// The key of this process in the children registry.
    fn key(&self) -> ChildKey {
        (self.pid, self.start_time_ticks)
    }

    /// Sends `signal` if (and only if) the process is still this one.
    /// Returns false when it is gone or the pid now belongs to someone else.
    pub fn signal(&self, signal: Signal) -> Result<bool, ProcessError> {
        let Some(pid) = self.raw_pid() else {
            return Ok(false);
        };
        // Pin the process first, then check who it is: the pidfd keeps
        // referring to this process even if the pid is recycled afterwards.
        let sent = match pidfd_open(pid, PidfdFlags::empty()) {
            Ok(pidfd) => {
                if !self.is_alive_and_same() {
                    return Ok(false);
                }
                pidfd_send_signal(&pidfd, signal)
            }
            // No pidfds on this kernel: check, then signal by pid (a pid
            // recycled in between could be hit; there is no better way).
            Err(Errno::NOSYS) => {
                if !self.is_alive_and_same() {
                    return Ok(false);
                }
                rustix::process::kill_process(pid, signal)
            }
            Err(_) => return Ok(false),
        };
        match sent {
            Ok(()) => Ok(true),
            Err(Errno::SRCH) => Ok(false),
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

impl ExitInfo {
    fn of(status: std::process::ExitStatus) -> Self {
        use std::os::unix::process::ExitStatusExt;
        match (status.code(), status.signal()) {
            (Some(code), _) => Self::Code { code },
            (None, Some(signal)) => Self::Signal { signal },
            (None, None) => Self::Unknown,
        }
    }
}

/// A registered child: pid and start time (a pid alone could be reused once
/// the child is reaped and its entry kept as [`Child::Exited`]).
type ChildKey = (u32, u64);

/// A child spawned by this process.
enum Child {
    /// Not reaped yet.
    Running {
        /// The handle that reaps it.
        child: std::process::Child,
        /// Opened right after the spawn; `None` only without pidfd support.
        pidfd: Option<OwnedFd>,
    },
    /// Reaped; the status is kept for later waiters until [`EXITED_KEEP`]
    /// has passed.
    Exited {
        /// How it ended.
        exit: ExitInfo,
        /// When it was reaped.
        at: Instant,
    },
}

impl Child {
    /// Reaps it if it has exited (non-blocking); its status once it has.
    fn settle(&mut self) -> Option<ExitInfo> {
        match self {
            Self::Exited { exit, .. } => Some(*exit),
            Self::Running { child, .. } => {
                let exit = match child.try_wait() {
                    Ok(Some(status)) => ExitInfo::of(status),
                    Ok(None) => return None,
                    // ECHILD: someone else reaped it; the status is lost.
                    Err(_) => ExitInfo::Unknown,
                };
                *self = Self::Exited {
                    exit,
                    at: Instant::now(),
                };
                Some(exit)
            }
        }
    }
}

/// Children spawned by this process, so their exits are reaped and their
/// statuses reported.
static CHILDREN: LazyLock<Mutex<HashMap<ChildKey, Child>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

fn lock_children() -> std::sync::MutexGuard<'static, HashMap<ChildKey, Child>> {
    // A panic while holding the lock leaves the map intact; keep using it.
    CHILDREN.lock().unwrap_or_else(|e| e.into_inner())
}

/// Starts `command` detached from this process: its own session (so it
/// survives the daemon being killed and gets no terminal hangup), stdin from
/// /dev/null unless the caller set it. Returns its identity; the child and
/// a pidfd of it are kept in the registry for [`ExitWatch`].
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
    let mut child = command.spawn().map_err(|source| ProcessError::Spawn {
        program: program.clone(),
        source,
    })?;
    let pid = child.id();
    // Until we reap it the pid is this child's, so the pidfd is this child's
    // even if it has already exited.
    let pidfd = i32::try_from(pid)
        .ok()
        .and_then(Pid::from_raw)
        .and_then(|pid| pidfd_open(pid, PidfdFlags::empty()).ok());
    // spawn() returns after a successful exec, so /proc shows the new program.
    // A program that already exited is a zombie (we have not reaped it): its
    // stat is readable but its exe link is not, so fall back to the program.
    let identity = match ProcessIdentity::of(pid) {
        Ok(identity) => identity,
        Err(error) => match read_stat(pid) {
            Ok(stat) => ProcessIdentity {
                pid,
                start_time_ticks: stat.start_time_ticks,
                exe: program,
            },
            Err(_) => {
                // Unidentifiable: do not leave it running or a zombie.
                let _ = child.kill();
                let _ = child.wait();
                return Err(error);
            }
        },
    };
    let mut children = lock_children();
    let now = Instant::now();
    children.retain(|_, entry| match entry {
        Child::Exited { at, .. } => now.duration_since(*at) < EXITED_KEEP,
        Child::Running { .. } => true,
    });
    children.insert(identity.key(), Child::Running { child, pidfd });
    Ok(identity)
}

/// Non-blocking: `Some` once the process has ended (reaping it when it is our
/// child), `None` while it runs.
///
/// A registered child is authoritative: its pid cannot be reused before we
/// reap it, and /proc is unreliable while it dies (the exe link disappears
/// before the process becomes a zombie).
pub fn exit_status(identity: &ProcessIdentity) -> Option<ExitInfo> {
    if let Some(child) = lock_children().get_mut(&identity.key()) {
        return child.settle();
    }
    if identity.is_alive_and_same() {
        None
    } else {
        Some(ExitInfo::Unknown)
    }
}

/// How an [`ExitWatch`] learns of the exit.
enum Watching {
    /// A pidfd of the process, not yet registered with the async runtime.
    Pinned(OwnedFd),
    /// The pidfd, registered: readable once the process has exited.
    Registered(AsyncFd<OwnedFd>),
    /// No pidfd could be had (see [`ExitWatch::new`]): /proc is polled.
    Polling,
    /// It has ended.
    Ended(ExitInfo),
}

/// Waits for one process to exit, without polling: the process is pinned by
/// a pidfd when the watch is made, and [`ExitWatch::exited`] awaits that
/// pidfd becoming readable, then reaps the process if it is our child.
///
/// For our own children the exit status is real; for processes that are not
/// (adopted after a daemon restart) it is [`ExitInfo::Unknown`], since only
/// the parent can collect it.
pub struct ExitWatch {
    identity: ProcessIdentity,
    watching: Watching,
}

impl std::fmt::Debug for ExitWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let how = match &self.watching {
            Watching::Pinned(_) | Watching::Registered(_) => "pidfd",
            Watching::Polling => "polling",
            Watching::Ended(_) => "ended",
        };
        f.debug_struct("ExitWatch")
            .field("identity", &self.identity)
            .field("watching", &how)
            .finish()
    }
}

impl ExitWatch {
    /// Pins `identity`'s process. A process that is not our child is pinned
    /// by a pidfd opened from its pid, and its identity (start time and
    /// executable) is checked *after* the pidfd is open: if the pid now
    /// belongs to another process, the watch reports the recorded process
    /// as ended and never follows the newcomer.
    ///
    /// Falls back to polling /proc when no pidfd can be had: on kernels
    /// without `pidfd_open` (`ENOSYS`), and (logged as a warning) when the
    /// kernel refuses one for lack of resources (`EMFILE`, `ENOMEM`).
    pub fn new(identity: &ProcessIdentity) -> Self {
        let watching = Self::pin(identity);
        Self {
            identity: identity.clone(),
            watching,
        }
    }

    fn pin(identity: &ProcessIdentity) -> Watching {
        let mut children = lock_children();
        if let Some(child) = children.get_mut(&identity.key()) {
            if let Some(exit) = child.settle() {
                return Watching::Ended(exit);
            }
            let Child::Running { pidfd, .. } = child else {
                return Watching::Polling;
            };
            // A duplicate per watch: each registers with the runtime itself.
            return match pidfd
                .as_ref()
                .map(|fd| rustix::io::fcntl_dupfd_cloexec(fd, 0))
            {
                Some(Ok(fd)) => Watching::Pinned(fd),
                Some(Err(error)) => {
                    tracing::warn!(pid = identity.pid, %error, "cannot duplicate the pidfd; polling for the exit");
                    Watching::Polling
                }
                None => Watching::Polling,
            };
        }
        drop(children);
        let Some(pid) = identity.raw_pid() else {
            return Watching::Ended(ExitInfo::Unknown);
        };
        match pidfd_open(pid, PidfdFlags::empty()) {
            // Pinned: whatever happens to the pid now, the pidfd refers to
            // this process. Is it the recorded one?
            Ok(pidfd) if identity.is_alive_and_same() => Watching::Pinned(pidfd),
            Ok(_) | Err(Errno::SRCH) => Watching::Ended(ExitInfo::Unknown),
            Err(Errno::NOSYS) => Watching::Polling,
            Err(error) => {
                tracing::warn!(pid = identity.pid, %error, "cannot open a pidfd; polling for the exit");
                Watching::Polling
            }
        }
    }

    /// The process watched.
    pub fn identity(&self) -> &ProcessIdentity {
        &self.identity
    }

    /// Resolves once the process has exited (at once if it already has),
    /// reaping it when it is our child. Cancel-safe: awaiting it again
    /// continues the same watch, and a finished watch keeps its answer.
    pub async fn exited(&mut self) -> ExitInfo {
        loop {
            match std::mem::replace(&mut self.watching, Watching::Polling) {
                Watching::Ended(exit) => {
                    self.watching = Watching::Ended(exit);
                    return exit;
                }
                Watching::Pinned(fd) => {
                    // SAFETY: the `OwnedFd` is a valid, open pidfd that the
                    // `AsyncFd` takes ownership of; nothing closes or replaces
                    // it while registered, and its `as_raw_fd` never changes.
                    let registered = unsafe {
                        AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)
                    };
                    self.watching = match registered {
                        Ok(fd) => Watching::Registered(fd),
                        Err(error) => {
                            let (_, error) = error.into_parts();
                            tracing::warn!(pid = self.identity.pid, %error, "cannot register the pidfd; polling for the exit");
                            Watching::Polling
                        }
                    };
                }
                Watching::Registered(fd) => {
                    // Put it back first: the await below may be cancelled.
                    self.watching = Watching::Registered(fd);
                    let Watching::Registered(fd) = &self.watching else {
                        continue;
                    };
                    // The guard is dropped at once: readiness is never cleared,
                    // since an exited process stays exited.
                    let ready = fd.readable().await.map(drop);
                    if let Err(error) = ready {
                        tracing::warn!(pid = self.identity.pid, %error, "waiting on the pidfd failed; polling for the exit");
                        self.watching = Watching::Polling;
                        continue;
                    }
                    // Readable: the process has exited. Our child is a zombie
                    // now, so reaping it cannot block.
                    let exit = match lock_children().get_mut(&self.identity.key()) {
                        Some(child) => child.settle(),
                        None => Some(ExitInfo::Unknown),
                    };
                    // A readable pidfd whose child cannot be reaped yet would
                    // stay readable; poll rather than spin (not expected).
                    self.watching = exit.map_or(Watching::Polling, Watching::Ended);
                }
                Watching::Polling => {
                    if let Some(exit) = exit_status(&self.identity) {
                        self.watching = Watching::Ended(exit);
                        return exit;
                    }
                    tokio::time::sleep(POLL).await;
                }
            }
        }
    }
}

/// Waits up to `timeout` for the process to end; `None` if it still runs.
pub async fn wait_exit(identity: &ProcessIdentity, timeout: Duration) -> Option<ExitInfo> {
    let mut watch = ExitWatch::new(identity);
    tokio::time::timeout(timeout, watch.exited()).await.ok()
}

/// Sends SIGKILL and waits (up to 5 s) for the process to disappear.
pub async fn kill_and_wait(identity: &ProcessIdentity) -> Result<Option<ExitInfo>, ProcessError> {
    // Pinned before the signal, so the wait follows this process.
    let mut watch = ExitWatch::new(identity);
    identity.signal(Signal::KILL)?;
    Ok(tokio::time::timeout(Duration::from_secs(5), watch.exited())
        .await
        .ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What "at once" means for a noticed exit: far below the daemon's
    /// 2-second promise, far above scheduling noise.
    const PROMPTLY: Duration = Duration::from_millis(500);

    #[test]
    fn identity_of_self_is_alive() {
        let me = ProcessIdentity::of(std::process::id()).unwrap();
        assert!(me.is_alive_and_same());
        assert_eq!(me.exe, std::env::current_exe().unwrap());
    }

    #[tokio::test]
    async fn pid_reuse_is_detected() {
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
        assert!(!other_exe.signal(Signal::TERM).unwrap());
        // Nor is it watched: the recorded process is gone, whoever has its
        // pid now.
        for stranger in [&recycled, &other_exe] {
            let mut watch = ExitWatch::new(stranger);
            let exit = tokio::time::timeout(PROMPTLY, watch.exited()).await;
            assert_eq!(exit, Ok(ExitInfo::Unknown), "{stranger:?}");
        }
        assert!(same_exe(
            Path::new("/usr/bin/qemu"),
            Path::new("/usr/bin/qemu (deleted)")
        ));
    }

    #[tokio::test]
    async fn spawned_child_is_detached_killed_and_reaped() {
        let mut command = std::process::Command::new("sleep");
        command.arg("1000");
        let id = spawn_detached(command).unwrap();
        assert!(id.is_alive_and_same());
        // Its own session: session id == its pid.
        let sid = rustix::process::getsid(Pid::from_raw(i32::try_from(id.pid).unwrap())).unwrap();
        assert_eq!(sid.as_raw_nonzero().get(), i32::try_from(id.pid).unwrap());
        assert_eq!(exit_status(&id), None);
        let mut watch = ExitWatch::new(&id);
        let started = Instant::now();
        assert!(id.signal(Signal::KILL).unwrap());
        let exit = tokio::time::timeout(PROMPTLY, watch.exited()).await;
        assert_eq!(exit, Ok(ExitInfo::Signal { signal: 9 }));
        eprintln!("SIGKILLed child noticed after {:?}", started.elapsed());
        // Reaped: no zombie left.
        assert!(!Path::new(&format!("/proc/{}", id.pid)).exists());
        assert!(!id.is_alive_and_same());
        // Gone processes are not signalled; later waiters get the same status.
        assert!(!id.signal(Signal::KILL).unwrap());
        assert_eq!(exit_status(&id), Some(ExitInfo::Signal { signal: 9 }));
        assert_eq!(
            kill_and_wait(&id).await.unwrap(),
            Some(ExitInfo::Signal { signal: 9 })
        );
    }

    #[tokio::test]
    async fn a_wrapper_that_execs_is_known_by_its_current_program() {
        // A wrapper script that execs the real program once it has run a
        // moment, as a user's `qemu_bin` wrapper does.
        let mut command = std::process::Command::new("sh");
        command.args(["-c", "sleep 0.2; exec sleep 1000"]);
        let spawned = spawn_detached(command).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while read_exe(spawned.pid).unwrap() == spawned.exe {
            assert!(Instant::now() < deadline, "the wrapper never exec'd");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Seen as spawned, the wrapper is no longer there: it would never be
        // signalled, and would outlive its VM.
        assert!(!spawned.is_alive_and_same());
        let current = spawned.current();
        assert_ne!(current.exe, spawned.exe);
        assert!(current.is_alive_and_same());
        // Another process with that pid is not adopted.
        let recycled = ProcessIdentity {
            start_time_ticks: spawned.start_time_ticks + 1,
            ..spawned.clone()
        };
        assert_eq!(recycled.current(), recycled);
        let mut watch = ExitWatch::new(&current);
        assert!(current.signal(Signal::KILL).unwrap());
        let exit = tokio::time::timeout(PROMPTLY, watch.exited()).await;
        assert_eq!(exit, Ok(ExitInfo::Signal { signal: 9 }));
    }

    /// Polls `check` for up to [`PROMPTLY`] (a signal's effect on the
    /// target's state is not synchronous with `kill`).
    async fn becomes(check: impl Fn() -> bool) -> bool {
        let deadline = Instant::now() + PROMPTLY;
        while !check() {
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }

    #[tokio::test]
    async fn a_stopped_process_is_told_from_a_running_one_and_still_killed() {
        let mut command = std::process::Command::new("sleep");
        command.arg("1000");
        let id = spawn_detached(command).unwrap();
        assert!(!id.is_stopped());
        assert!(id.signal(Signal::STOP).unwrap());
        assert!(becomes(|| id.is_stopped()).await, "SIGSTOP not seen");
        assert!(id.is_alive_and_same(), "stopped is still alive");
        // Another process under its pid is not "our stopped process".
        let recycled = ProcessIdentity {
            start_time_ticks: id.start_time_ticks + 1,
            ..id.clone()
        };
        assert!(!recycled.is_stopped());
        assert!(id.signal(Signal::CONT).unwrap());
        assert!(becomes(|| !id.is_stopped()).await, "SIGCONT not seen");
        // SIGKILL ends a stopped process too.
        assert!(id.signal(Signal::STOP).unwrap());
        assert!(becomes(|| id.is_stopped()).await);
        assert_eq!(
            kill_and_wait(&id).await.unwrap(),
            Some(ExitInfo::Signal { signal: 9 })
        );
        assert!(!id.is_stopped());
    }

    #[tokio::test]
    async fn exit_code_of_child_is_reported_promptly() {
        let mut command = std::process::Command::new("sh");
        command.args(["-c", "sleep 0.2; exit 7"]);
        let id = spawn_detached(command).unwrap();
        let started = Instant::now();
        assert_eq!(
            wait_exit(&id, Duration::from_secs(5)).await,
            Some(ExitInfo::Code { code: 7 })
        );
        let took = started.elapsed();
        assert!(took < Duration::from_millis(200) + PROMPTLY, "{took:?}");
        assert!(!Path::new(&format!("/proc/{}", id.pid)).exists());
        // A child that exits before anyone waits is reported too.
        let mut command = std::process::Command::new("sh");
        command.args(["-c", "exit 7"]);
        let id = spawn_detached(command).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(
            wait_exit(&id, PROMPTLY).await,
            Some(ExitInfo::Code { code: 7 })
        );
    }

    #[tokio::test]
    async fn two_waiters_of_one_child_both_learn_its_status() {
        let mut command = std::process::Command::new("sleep");
        command.arg("1000");
        let id = spawn_detached(command).unwrap();
        let mut first = ExitWatch::new(&id);
        let mut second = ExitWatch::new(&id);
        assert!(id.signal(Signal::KILL).unwrap());
        let (a, b) = tokio::join!(first.exited(), second.exited());
        assert_eq!(a, ExitInfo::Signal { signal: 9 });
        assert_eq!(b, ExitInfo::Signal { signal: 9 });
        // A finished watch keeps its answer.
        assert_eq!(first.exited().await, ExitInfo::Signal { signal: 9 });
    }

    #[tokio::test]
    async fn a_process_that_is_not_our_child_is_watched_by_pidfd() {
        // `sh` starts `sleep` in the background and exits: the sleep is
        // reparented away from us, as a VMM is after a daemon restart.
        let output = std::process::Command::new("sh")
            .args(["-c", "sleep 1000 </dev/null >/dev/null 2>&1 & echo $!"])
            .output()
            .unwrap();
        let pid: u32 = String::from_utf8(output.stdout)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let id = ProcessIdentity::of(pid).unwrap();
        assert!(id.exe.ends_with("sleep"), "{id:?}");
        let mut watch = ExitWatch::new(&id);
        assert!(
            matches!(
                watch.watching,
                Watching::Pinned(_) | Watching::Registered(_)
            ),
            "{watch:?}"
        );
        // Not noticed while it runs...
        let early = tokio::time::timeout(Duration::from_millis(200), watch.exited()).await;
        assert!(early.is_err(), "{early:?}");
        // ...and at once when it dies; its status belongs to its parent.
        let started = Instant::now();
        assert!(id.signal(Signal::KILL).unwrap());
        let exit = tokio::time::timeout(PROMPTLY, watch.exited()).await;
        assert_eq!(exit, Ok(ExitInfo::Unknown));
        eprintln!("SIGKILLed non-child noticed after {:?}", started.elapsed());
        assert!(!id.is_alive_and_same());
        assert!(!id.signal(Signal::KILL).unwrap());
    }
}
