//! The session manager: long-running commands the agent starts and owns, so
//! they survive restarts of the host daemon.
//!
//! Each session has a directory `<root>/<name>/` (0700) holding
//! `stdout.log` and `stderr.log` (0600). Per session, two pump threads copy
//! the child's stdout/stderr pipes into the logs and to the attached host, if
//! any, and a waiter thread records the exit status once the pumps have
//! drained, then sends the attacher an exit frame. Sessions live in memory
//! only: after a guest reboot they are gone, but their logs can still be read
//! (and removed) by name.

use fs_err::os::unix::fs::OpenOptionsExt;
use fs_err::{File, OpenOptions};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use banger_agent_proto::{
    AttachFrame, LogStream, MAX_SESSIONS, SessionRefusal, SessionSignal, SessionSpec, SessionState,
    SessionStatus, StdinMode, validate_session_name, validate_spec,
};

mod spawn;
pub mod stream;

/// Where sessions live in the guest (on the work disk, so logs survive
/// reboots).
pub const DEFAULT_SESSION_ROOT: &str = "/root/.cache/banger/sessions";

/// Frames queued for an attached host; a host that falls this far behind is
/// detached rather than slowing the session (its output stays in the logs).
const ATTACH_QUEUE_FRAMES: usize = 256;

/// How long the waiter lets the pumps drain after the session leader exited;
/// a background child still holding the pipes must not keep the session
/// "running" forever.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// Locks `mutex`, ignoring poisoning: the data is plain bookkeeping that
/// stays consistent even if a thread panicked while holding it.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// All sessions of this agent.
#[derive(Debug)]
pub struct SessionManager {
    root: PathBuf,
    sessions: Mutex<BTreeMap<String, Arc<Session>>>,
}

/// One session.
#[derive(Debug)]
pub(crate) struct Session {
    spec: SessionSpec,
    pid: u32,
    started_at_unix: u64,
    live: Mutex<Live>,
    /// Separate from `live` so a blocked write (the child not reading) never
    /// holds up the pumps.
    stdin: Mutex<Option<ChildStdin>>,
}

#[derive(Debug, Default)]
struct Live {
    exit: Option<SessionState>,
    attacher: Option<Attacher>,
    next_attacher: u64,
    stdout_bytes: u64,
    stderr_bytes: u64,
}

#[derive(Debug)]
struct Attacher {
    id: u64,
    frames: SyncSender<AttachFrame>,
}

/// A registered attacher: frames to send to the host, until the channel
/// closes (session exited, or detached).
#[derive(Debug)]
pub(crate) struct Attachment {
    pub(crate) session: Arc<Session>,
    pub(crate) id: u64,
    pub(crate) frames: Receiver<AttachFrame>,
}

impl SessionManager {
    /// A manager keeping session directories under `root` (created on the
    /// first start).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            sessions: Mutex::new(BTreeMap::new()),
        }
    }

    /// Starts `spec` after checking its limits, cwd and commands.
    pub fn start(&self, spec: SessionSpec) -> Result<SessionStatus, SessionRefusal> {
        validate_spec(&spec)?;
        // Held while spawning so two starts of one name cannot race.
        let mut sessions = lock(&self.sessions);
        let dir = self.root.join(&spec.name);
        if sessions.contains_key(&spec.name) || dir.exists() {
            return Err(SessionRefusal::AlreadyExists { name: spec.name });
        }
        if sessions.len() >= MAX_SESSIONS {
            return Err(SessionRefusal::TooManySessions {
                limit: u32::try_from(MAX_SESSIONS).unwrap_or(u32::MAX),
            });
        }
        let program = spawn::check(&spec)?;
        let failed = |what: &str, path: &Path, error: std::io::Error| SessionRefusal::SpawnFailed {
            message: format!("{what} {}: {error}", path.display()),
        };
        #[allow(
            clippy::disallowed_types,
            reason = "fs-err has no DirBuilder; the error is mapped with the path below"
        )]
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.root)
            .map_err(|e| failed("cannot create", &self.root, e))?;
        #[allow(
            clippy::disallowed_types,
            reason = "fs-err has no DirBuilder; the error is mapped with the path below"
        )]
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| failed("cannot create", &dir, e))?;
        let opened = (|| {
            let stdout = create_log(&dir.join("stdout.log"))?;
            let stderr = create_log(&dir.join("stderr.log"))?;
            let child = spawn::spawn(&spec, &program)?;
            Ok::<_, std::io::Error>((stdout, stderr, child))
        })();
        let (stdout_log, stderr_log, mut child) = match opened {
            Ok(opened) => opened,
            Err(error) => {
                let _ = fs_err::remove_dir_all(&dir);
                return Err(failed("cannot start", &program, error));
            }
        };
        let session = Arc::new(Session {
            pid: child.id(),
            started_at_unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            live: Mutex::new(Live::default()),
            stdin: Mutex::new(child.stdin.take()),
            spec,
        });
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        if let Some(out) = child.stdout.take() {
            pump(
                &session,
                out,
                stdout_log,
                LogStream::Stdout,
                done_tx.clone(),
            );
        }
        if let Some(err) = child.stderr.take() {
            pump(&session, err, stderr_log, LogStream::Stderr, done_tx);
        }
        wait(&session, child, done_rx);
        sessions.insert(session.spec.name.clone(), session.clone());
        Ok(session.status())
    }

    /// Every session, sorted by name.
    pub fn list(&self) -> Vec<SessionStatus> {
        lock(&self.sessions).values().map(|s| s.status()).collect()
    }

    /// One session.
    pub fn show(&self, name: &str) -> Result<SessionStatus, SessionRefusal> {
        Ok(self.get(name)?.status())
    }

    pub(crate) fn get(&self, name: &str) -> Result<Arc<Session>, SessionRefusal> {
        validate_session_name(name)
            .map_err(|error| SessionRefusal::InvalidName { name: error.name })?;
        lock(&self.sessions)
            .get(name)
            .cloned()
            .ok_or_else(|| SessionRefusal::NotFound {
                name: name.to_owned(),
            })
    }

    /// Sends `signal` to the process group of a running session.
    pub fn signal(&self, name: &str, signal: SessionSignal) -> Result<(), SessionRefusal> {
        let session = self.get(name)?;
        let live = lock(&session.live);
        if live.exit.is_some() {
            return Err(SessionRefusal::NotRunning {
                name: name.to_owned(),
            });
        }
        let signal = match signal {
            SessionSignal::Terminate => rustix::process::Signal::TERM,
            SessionSignal::Kill => rustix::process::Signal::KILL,
        };
        let group = i32::try_from(session.pid)
            .ok()
            .and_then(rustix::process::Pid::from_raw);
        if let Some(group) = group {
            // ESRCH: the group is already gone and the waiter is about to
            // record the exit; nothing left to signal is not a failure.
            match rustix::process::kill_process_group(group, signal) {
                Ok(()) | Err(rustix::io::Errno::SRCH) => {}
                Err(error) => {
                    return Err(SessionRefusal::SpawnFailed {
                        message: format!("cannot signal process group {group:?}: {error}"),
                    });
                }
            }
        }
        Ok(())
    }

    /// Forgets an exited session and deletes its directory; also removes the
    /// logs of a session from an earlier boot.
    pub fn remove(&self, name: &str) -> Result<(), SessionRefusal> {
        validate_session_name(name)
            .map_err(|error| SessionRefusal::InvalidName { name: error.name })?;
        let mut sessions = lock(&self.sessions);
        if let Some(session) = sessions.get(name) {
            if lock(&session.live).exit.is_none() {
                return Err(SessionRefusal::StillRunning {
                    name: name.to_owned(),
                });
            }
        }
        let dir = self.root.join(name);
        let known = sessions.remove(name).is_some();
        match fs_err::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                if known {
                    Ok(())
                } else {
                    Err(SessionRefusal::NotFound {
                        name: name.to_owned(),
                    })
                }
            }
            Err(error) => Err(SessionRefusal::SpawnFailed {
                message: format!("cannot delete {}: {error}", dir.display()),
            }),
        }
    }

    /// Registers the only attacher of a running pipe-mode session.
    pub(crate) fn attach(&self, name: &str) -> Result<(SessionStatus, Attachment), SessionRefusal> {
        let session = self.get(name)?;
        if session.spec.stdin_mode != StdinMode::Pipe {
            return Err(SessionRefusal::NotPipeMode {
                name: name.to_owned(),
            });
        }
        let mut live = lock(&session.live);
        if live.exit.is_some() {
            return Err(SessionRefusal::NotRunning {
                name: name.to_owned(),
            });
        }
        if live.attacher.is_some() {
            return Err(SessionRefusal::AlreadyAttached {
                name: name.to_owned(),
            });
        }
        let (frames_tx, frames) = std::sync::mpsc::sync_channel(ATTACH_QUEUE_FRAMES);
        live.next_attacher += 1;
        let id = live.next_attacher;
        live.attacher = Some(Attacher {
            id,
            frames: frames_tx,
        });
        drop(live);
        let status = session.status();
        Ok((
            status,
            Attachment {
                session,
                id,
                frames,
            },
        ))
    }

    /// The log file of `name` (known, or left from an earlier boot), and the
    /// session when it is known (to follow it).
    pub(crate) fn open_log(
        &self,
        name: &str,
        stream: LogStream,
    ) -> Result<(File, Option<Arc<Session>>), SessionRefusal> {
        validate_session_name(name)
            .map_err(|error| SessionRefusal::InvalidName { name: error.name })?;
        let session = lock(&self.sessions).get(name).cloned();
        let path = self.root.join(name).join(log_file(stream));
        File::open(path)
            .map(|file| (file, session))
            .map_err(|_| SessionRefusal::NotFound {
                name: name.to_owned(),
            })
    }
}

fn log_file(stream: LogStream) -> &'static str {
    match stream {
        LogStream::Stdout => "stdout.log",
        LogStream::Stderr => "stderr.log",
    }
}

fn create_log(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

impl Session {
    /// Its current status.
    pub(crate) fn status(&self) -> SessionStatus {
        let live = lock(&self.live);
        SessionStatus {
            name: self.spec.name.clone(),
            argv: self.spec.argv.clone(),
            cwd: self.spec.cwd.clone(),
            stdin_mode: self.spec.stdin_mode,
            pid: self.pid,
            started_at_unix: self.started_at_unix,
            state: live.exit.unwrap_or(SessionState::Running),
            attached: live.attacher.is_some(),
            stdout_bytes: live.stdout_bytes,
            stderr_bytes: live.stderr_bytes,
        }
    }

    /// Whether the exit has been recorded (the pumps have drained).
    pub(crate) fn has_exited(&self) -> bool {
        lock(&self.live).exit.is_some()
    }

    /// Writes to the session's stdin pipe (a no-op without one).
    pub(crate) fn write_stdin(&self, data: &[u8]) -> std::io::Result<()> {
        match lock(&self.stdin).as_mut() {
            Some(stdin) => stdin.write_all(data),
            None => Ok(()),
        }
    }

    /// Frees the attach slot if attacher `id` still holds it; the session
    /// and its stdin stay as they are.
    pub(crate) fn detach(&self, id: u64) {
        let mut live = lock(&self.live);
        if live.attacher.as_ref().is_some_and(|a| a.id == id) {
            live.attacher = None;
        }
    }
}

/// Copies one output pipe into its log and to the attacher, then reports
/// on `done` at EOF.
fn pump(
    session: &Arc<Session>,
    mut pipe: impl Read + Send + 'static,
    mut log: File,
    stream: LogStream,
    done: std::sync::mpsc::Sender<()>,
) {
    let session = session.clone();
    let spawned = std::thread::Builder::new()
        .name(format!("pump-{}", session.spec.name))
        .spawn(move || {
            let mut chunk = vec![0u8; 16 * 1024];
            loop {
                let read = match pipe.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(read) => read,
                    Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                };
                let data = &chunk[..read];
                // A full disk loses log bytes but must not stop the session
                // (a blocked pipe would): keep draining.
                let _ = log.write_all(data);
                let mut live = lock(&session.live);
                let bytes = u64::try_from(read).unwrap_or(u64::MAX);
                let frame = match stream {
                    LogStream::Stdout => {
                        live.stdout_bytes += bytes;
                        AttachFrame::Stdout(data.to_vec())
                    }
                    LogStream::Stderr => {
                        live.stderr_bytes += bytes;
                        AttachFrame::Stderr(data.to_vec())
                    }
                };
                if let Some(attacher) = &live.attacher {
                    if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
                        attacher.frames.try_send(frame)
                    {
                        live.attacher = None;
                    }
                }
            }
            let _ = done.send(());
        });
    if spawned.is_err() {
        eprintln!("banger-vsock-agent: cannot start a log pump thread");
    }
}

/// Reaps the child, lets the pumps drain, records the exit and tells the
/// attacher.
fn wait(session: &Arc<Session>, mut child: Child, pumps_done: Receiver<()>) {
    let session = session.clone();
    let spawned = std::thread::Builder::new()
        .name(format!("wait-{}", session.spec.name))
        .spawn(move || {
            let state = match child.wait() {
                Ok(status) => SessionState::Exited {
                    code: status.code(),
                    signal: status.signal(),
                },
                Err(_) => SessionState::Exited {
                    code: None,
                    signal: None,
                },
            };
            let deadline = Instant::now() + DRAIN_TIMEOUT;
            for _ in 0..2 {
                let left = deadline.saturating_duration_since(Instant::now());
                if pumps_done.recv_timeout(left).is_err() {
                    break;
                }
            }
            // Nobody can write to a dead session; closing the pipe also lets
            // a background child reading it see EOF.
            lock(&session.stdin).take();
            let attacher = {
                let mut live = lock(&session.live);
                live.exit = Some(state);
                live.attacher.take()
            };
            if let (Some(attacher), SessionState::Exited { code, signal }) = (attacher, state) {
                // Blocking send: the writer thread drains the queue or quits
                // (closing the channel), so this cannot hang for long.
                let _ = attacher.frames.send(AttachFrame::Exit { code, signal });
            }
        });
    if spawned.is_err() {
        eprintln!("banger-vsock-agent: cannot start a waiter thread");
    }
}
