//! Claiming the daemon's single-instance lock and binding its private socket.
//!
//! Exactly one daemon per runtime dir: the daemon holds an exclusive `flock`
//! on `bangerd.lock` for its whole life, so a second daemon fails fast and a
//! crashed one releases the lock automatically. A socket file found while we
//! hold the lock can only be a leftover of a dead daemon; it is still probed
//! before removal, so a live socket is never stolen even from a daemon that
//! somehow runs without the lock. The socket is created 0600 (via umask) so
//! there is no window in which another user could connect.

use std::io::{Read, Seek, Write};
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
    /// Something answers on the socket although we hold the lock.
    #[error("socket {socket} is answered by another process; refusing to replace a live socket")]
    SocketInUse {
        /// The socket.
        socket: PathBuf,
    },
    /// The socket path does not fit in `sockaddr_un`.
    #[error(
        "socket path {socket} is {len} bytes; Unix sockets allow at most 107: set BANGER_RUNTIME_DIR to a shorter directory"
    )]
    PathTooLong {
        /// The socket.
        socket: PathBuf,
        /// Its length in bytes.
        len: usize,
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

/// The lock held for the daemon's lifetime; dropping it releases the lock.
#[derive(Debug)]
pub struct InstanceLock {
    file: fs_err::File,
    path: PathBuf,
}

impl InstanceLock {
    /// Takes the exclusive lock for `paths`, recording our pid in it.
    pub fn acquire(paths: &Paths) -> Result<Self, ListenError> {
        paths.prepare_runtime_dir()?;
        let path = paths.daemon_lock();
        let lock_error = |source| ListenError::LockFile {
            path: path.clone(),
            source,
        };
        let mut file = fs_err::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(lock_error)?;
        if !Self::lock_or_wait_for_exit(&file, &paths.socket()) {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            let pid = pid.trim().to_owned();
            return Err(ListenError::AlreadyRunning {
                pid: if pid.is_empty() {
                    "unknown".to_owned()
                } else {
                    pid
                },
                socket: paths.socket(),
            });
        }
        file.set_len(0).map_err(lock_error)?;
        file.rewind().map_err(lock_error)?;
        writeln!(file, "{}", std::process::id()).map_err(lock_error)?;
        Ok(Self { file, path })
    }

    /// Takes the lock; if it is held by a daemon that no longer answers on
    /// its socket (one that is exiting, e.g. just SIGKILLed), waits up to
    /// [`DYING_OWNER_GRACE`] for the kernel to release it. A daemon that
    /// answers is never waited for.
    fn lock_or_wait_for_exit(file: &fs_err::File, socket: &Path) -> bool {
        let deadline = std::time::Instant::now() + DYING_OWNER_GRACE;
        loop {
            if rustix::fs::flock(file, FlockOperation::NonBlockingLockExclusive).is_ok() {
                return true;
            }
            if UnixStream::connect(socket).is_ok() || std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for InstanceLock {
    fn drop(&mut self) {
        // Clear the pid so a reader never sees a dead daemon's pid as current.
        let _ = self.file.set_len(0);
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
        let socket = paths.socket();
        let len = socket.as_os_str().len();
        if len > 107 {
            return Err(ListenError::PathTooLong { socket, len });
        }
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
