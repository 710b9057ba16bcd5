//! Claiming the daemon's single-instance locks and binding its private
//! socket; each connection's first request head gets a deadline
//! ([`deadline`]).
//!
//! Exactly one daemon per runtime dir and one per state dir: the daemon holds
//! an exclusive `flock` on `<runtime dir>/bangerd.lock` ([`InstanceLock`])
//! and on `<state dir>/bangerd.lock` ([`StateLock`]) for its whole life, so a
//! second daemon fails fast and a crashed one releases both automatically.
//! Both are a [`PidLock`], whose file records the holder's pid and socket so
//! the refusal can name them. A socket file found while we hold the lock can
//! only be a leftover of a dead daemon; it is still probed before removal, so
//! a live socket is never stolen even from a daemon that somehow runs without
//! the lock. The socket is created 0600 (via umask) so there is no window in
//! which another user could connect.

mod deadline;

pub use deadline::{DeadlineListener, HEADER_READ_TIMEOUT, HeadDeadline};

use std::io::{Seek, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use banger_config::{Paths, PathsError};
use rustix::fs::{FlockOperation, Mode};

/// Why the daemon could not claim its place.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// The runtime dir could not be prepared.
    #[error(transparent)]
    RuntimeDir(#[from] PathsError),
    /// The lock file could not be opened.
    #[error("cannot open lock file {path}")]
    LockFile {
        /// The lock file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Another daemon holds the lock.
    #[error(
        "bangerd is already running (pid {pid}) for socket {socket}; use `banger daemon stop` to stop it"
    )]
    AlreadyRunning {
        /// Pid recorded by the running daemon, or "unknown".
        pid: String,
        /// Its socket.
        socket: PathBuf,
    },
    /// Another daemon, with another runtime dir, holds the state dir.
    #[error(
        "the state directory {state_dir} is in use by bangerd pid {pid} (runtime dir {runtime_dir}); stop it first (`banger daemon stop` with the same environment, e.g. BANGER_RUNTIME_DIR={runtime_dir}) or use another state dir"
    )]
    StateInUse {
        /// The state dir.
        state_dir: PathBuf,
        /// Pid recorded by the daemon holding it, or "unknown".
        pid: String,
        /// Its runtime dir, or "unknown".
        runtime_dir: String,
    },
    /// Something answers on the socket although we hold the lock.
    #[error("socket {socket} is answered by another process; refusing to replace a live socket")]
    SocketInUse {
        /// The socket.
        socket: PathBuf,
    },
    /// Removing a stale socket or binding failed.
    #[error("cannot bind socket {socket}")]
    Bind {
        /// The socket.
        socket: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// How long a new daemon waits for a silent lock owner to finish exiting.
const DYING_OWNER_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

/// The state dir's lock file, beside the database it protects.
pub const STATE_LOCK_FILE: &str = "bangerd.lock";

/// What a lock file says about the daemon holding it: its pid on the first
/// line, its socket on the second. Either may be missing (an older daemon,
/// or a holder that has not written yet).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LockHolder {
    /// The holder's pid.
    pub pid: Option<u32>,
    /// The holder's API socket.
    pub socket: Option<PathBuf>,
}

impl LockHolder {
    fn parse(text: &str) -> Self {
        let mut lines = text.lines();
        let pid = lines.next().and_then(|line| line.trim().parse().ok());
        let socket = lines
            .next()
            .filter(|line| !line.is_empty())
            .map(PathBuf::from);
        Self { pid, socket }
    }

    /// The pid for messages: the number, or "unknown".
    pub fn pid_text(&self) -> String {
        self.pid
            .map_or_else(|| "unknown".to_owned(), |pid| pid.to_string())
    }
}

/// Why a [`PidLock`] was not taken.
#[derive(Debug)]
enum PidLockError {
    /// The lock file could not be opened or written.
    Io(std::io::Error),
    /// Another process holds it.
    Held(LockHolder),
}

/// An exclusive `flock` on a file recording who holds it (our pid and
/// socket); the kernel releases it when we exit, however we exit. Dropping
/// it clears the record and releases the lock.
#[derive(Debug)]
pub struct PidLock {
    file: fs_err::File,
    path: PathBuf,
}

impl PidLock {
    /// Takes the lock on `path` and records our pid and `socket` in it. If
    /// it is held by a daemon that does not answer on its socket (one that
    /// is exiting, e.g. just SIGKILLed), waits up to [`DYING_OWNER_GRACE`]
    /// for the kernel to release it; a holder that answers is never waited
    /// for. The holder's socket is the one it recorded, else `fallback_socket`.
    fn acquire(
        path: &Path,
        socket: &Path,
        fallback_socket: Option<&Path>,
    ) -> Result<Self, PidLockError> {
        let mut file = fs_err::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(PidLockError::Io)?;
        let deadline = std::time::Instant::now() + DYING_OWNER_GRACE;
        loop {
            if rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive).is_ok() {
                break;
            }
            let holder = Self::holder(path);
            let answers = holder
                .socket
                .as_deref()
                .or(fallback_socket)
                .is_some_and(|socket| UnixStream::connect(socket).is_ok());
            if answers || std::time::Instant::now() >= deadline {
                return Err(PidLockError::Held(holder));
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        file.set_len(0).map_err(PidLockError::Io)?;
        file.rewind().map_err(PidLockError::Io)?;
        let record = format!("{}\n{}\n", std::process::id(), socket.display());
        file.write_all(record.as_bytes())
            .map_err(PidLockError::Io)?;
        Ok(Self {
            file,
            path: path.to_owned(),
        })
    }

    /// What the lock file at `path` records (empty when unreadable).
    fn holder(path: &Path) -> LockHolder {
        LockHolder::parse(&fs_err::read_to_string(path).unwrap_or_default())
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for PidLock {
    fn drop(&mut self) {
        // Clear the record so a reader never sees a dead daemon's pid as current.
        let _ = self.file.set_len(0);
    }
}

/// The runtime dir's lock (`<runtime dir>/bangerd.lock`), held for the
/// daemon's lifetime: one daemon per socket.
#[derive(Debug)]
pub struct InstanceLock {
    lock: PidLock,
}

impl InstanceLock {
    /// Takes the exclusive lock for `paths`, recording our pid in it.
    pub fn acquire(paths: &Paths) -> Result<Self, ListenError> {
        paths.prepare_runtime_dir()?;
        let path = paths.daemon_lock();
        let socket = paths.socket();
        match PidLock::acquire(&path, &socket, Some(&socket)) {
            Ok(lock) => Ok(Self { lock }),
            Err(PidLockError::Io(source)) => Err(ListenError::LockFile { path, source }),
            Err(PidLockError::Held(holder)) => Err(ListenError::AlreadyRunning {
                pid: holder.pid_text(),
                socket,
            }),
        }
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        self.lock.path()
    }
}

/// The state dir's lock (`<state dir>/bangerd.lock`), held for the daemon's
/// lifetime: one daemon per database, VM directories and host resources,
/// whatever runtime dir each was started with.
#[derive(Debug)]
pub struct StateLock {
    lock: PidLock,
}

impl StateLock {
    /// Takes the exclusive lock on `paths`' state dir, recording our pid and
    /// socket. Taken after the [`InstanceLock`] and before anything reads or
    /// changes the state or the host.
    pub fn acquire(paths: &Paths, _instance: &InstanceLock) -> Result<Self, ListenError> {
        paths.prepare_state_dir()?;
        let path = Self::path_in(paths);
        match PidLock::acquire(&path, &paths.socket(), None) {
            Ok(lock) => Ok(Self { lock }),
            Err(PidLockError::Io(source)) => Err(ListenError::LockFile { path, source }),
            Err(PidLockError::Held(holder)) => Err(ListenError::StateInUse {
                state_dir: paths.state_dir.clone(),
                pid: holder.pid_text(),
                runtime_dir: holder
                    .socket
                    .as_deref()
                    .and_then(Path::parent)
                    .map_or_else(|| "unknown".to_owned(), |dir| dir.display().to_string()),
            }),
        }
    }

    /// Where the state lock lives for `paths`.
    pub fn path_in(paths: &Paths) -> PathBuf {
        paths.state_dir.join(STATE_LOCK_FILE)
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        self.lock.path()
    }
}

/// The bound socket; removes its file on drop if the file is still ours.
#[derive(Debug)]
pub struct BoundSocket {
    listener: Option<UnixListener>,
    path: PathBuf,
    inode: u64,
}

impl BoundSocket {
    /// Binds `paths.socket()` with mode 0600, replacing a stale socket file.
    /// Requires the [`InstanceLock`] to be held.
    pub fn bind(paths: &Paths, _lock: &InstanceLock) -> Result<Self, ListenError> {
        paths.check_socket_path()?;
        let socket = paths.socket();
        let bind_error = |source| ListenError::Bind {
            socket: socket.clone(),
            source,
        };
        match fs_err::symlink_metadata(&socket) {
            Ok(_) => {
                if UnixStream::connect(&socket).is_ok() {
                    return Err(ListenError::SocketInUse { socket });
                }
                tracing::info!(socket = %socket.display(), "removing stale socket left by a dead daemon");
                fs_err::remove_file(&socket).map_err(bind_error)?;
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(bind_error(error)),
        }
        // The mode comes from the umask at bind time; 0177 yields 0600 with
        // no window where the socket is more open than that.
        let previous = rustix::process::umask(Mode::from_raw_mode(0o177));
        let bound = UnixListener::bind(&socket);
        rustix::process::umask(previous);
        let listener = bound.map_err(bind_error)?;
        listener.set_nonblocking(true).map_err(bind_error)?;
        let inode =
            std::os::unix::fs::MetadataExt::ino(&fs_err::metadata(&socket).map_err(bind_error)?);
        Ok(Self {
            listener: Some(listener),
            path: socket,
            inode,
        })
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Hands the listener to the async server (once).
    pub fn take_listener(&mut self) -> Option<UnixListener> {
        self.listener.take()
    }
}

impl Drop for BoundSocket {
    fn drop(&mut self) {
        let still_ours = fs_err::symlink_metadata(&self.path)
            .map(|metadata| std::os::unix::fs::MetadataExt::ino(&metadata) == self.inode)
            .unwrap_or(false);
        if still_ours {
            let _ = fs_err::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn paths(root: &Path) -> Paths {
        Paths {
            config_dir: root.join("config"),
            state_dir: root.join("state"),
            cache_dir: root.join("cache"),
            runtime_dir: root.join("run"),
            home_dir: None,
        }
    }

    #[test]
    fn socket_is_0600_in_a_0700_dir_and_removed_on_drop() {
        let temp = tempfile::tempdir().expect("tempdir");
        let paths = paths(temp.path());
        let lock = InstanceLock::acquire(&paths).expect("lock");
        let socket = BoundSocket::bind(&paths, &lock).expect("bind");
        let mode = |path: &Path| fs_err::metadata(path).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode(&paths.runtime_dir), 0o700);
        assert_eq!(mode(socket.path()), 0o600);
        drop(socket);
        assert!(!paths.socket().exists());
    }

    #[test]
    fn second_lock_is_refused_with_the_owner_pid() {
        let temp = tempfile::tempdir().expect("tempdir");
        let paths = paths(temp.path());
        let _lock = InstanceLock::acquire(&paths).expect("lock");
        let error = InstanceLock::acquire(&paths).expect_err("second lock refused");
        let message = error.to_string();
        assert!(
            message.contains(&format!("pid {}", std::process::id())),
            "{message}"
        );
    }

    #[test]
    fn second_daemon_on_the_same_state_dir_is_refused_with_the_owner_pid_and_runtime_dir() {
        let temp = tempfile::tempdir().expect("tempdir");
        let first = paths(temp.path());
        let mut second = first.clone();
        second.runtime_dir = temp.path().join("run2");
        let first_instance = InstanceLock::acquire(&first).expect("first instance lock");
        let first_state = StateLock::acquire(&first, &first_instance).expect("first state lock");
        // The first daemon answers on its socket: refused at once, no grace wait.
        let _first_socket = BoundSocket::bind(&first, &first_instance).expect("bind");
        let started = std::time::Instant::now();
        let second_instance = InstanceLock::acquire(&second).expect("other runtime dir is free");
        let error = StateLock::acquire(&second, &second_instance).expect_err("state dir is taken");
        assert!(matches!(error, ListenError::StateInUse { .. }), "{error}");
        assert!(
            started.elapsed() < DYING_OWNER_GRACE,
            "{:?}",
            started.elapsed()
        );
        let message = error.to_string();
        for part in [
            format!("state directory {}", first.state_dir.display()),
            format!("pid {}", std::process::id()),
            format!("runtime dir {}", first.runtime_dir.display()),
        ] {
            assert!(message.contains(&part), "{part:?} missing: {message}");
        }
        // Released on drop, record cleared: the second daemon proceeds.
        drop(first_state);
        assert_eq!(
            fs_err::read_to_string(StateLock::path_in(&first)).expect("lock file"),
            ""
        );
        let state = StateLock::acquire(&second, &second_instance).expect("state lock is free");
        assert_eq!(
            PidLock::holder(state.path()),
            LockHolder {
                pid: Some(std::process::id()),
                socket: Some(second.socket()),
            }
        );
    }

    #[test]
    fn stale_socket_is_replaced_but_live_one_is_not() {
        let temp = tempfile::tempdir().expect("tempdir");
        let paths = paths(temp.path());
        paths.prepare_runtime_dir().expect("runtime dir");
        // A live listener on the path: never stolen.
        let live = UnixListener::bind(paths.socket()).expect("live bind");
        let lock = InstanceLock::acquire(&paths).expect("lock");
        let error = BoundSocket::bind(&paths, &lock).expect_err("live socket kept");
        assert!(matches!(error, ListenError::SocketInUse { .. }), "{error}");
        // The listener dies but its file stays: stale, replaced.
        drop(live);
        assert!(paths.socket().exists());
        let socket = BoundSocket::bind(&paths, &lock).expect("stale socket replaced");
        assert!(UnixStream::connect(socket.path()).is_ok());
    }

    #[test]
    fn overlong_socket_path_is_a_clear_error() {
        let temp = tempfile::tempdir().expect("tempdir");
        let mut paths = paths(temp.path());
        paths.runtime_dir = temp.path().join("r".repeat(120));
        let lock = InstanceLock::acquire(&paths).expect("lock");
        let error = BoundSocket::bind(&paths, &lock).expect_err("too long");
        assert!(
            error.to_string().contains("set BANGER_RUNTIME_DIR"),
            "{error}"
        );
    }
}
