//! The helper's socket: made owner-only, in a root-owned directory, and
//! removed again only if it is still the one this process made.
//!
//! The file mode (0600, owned by the installed owner) keeps other users from
//! connecting at all; the server's `SO_PEERCRED` check is the real gate and
//! does not depend on it. The directory must be root's and writable only by
//! root, or another user could swap the socket for their own.

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::net::UnixListener;

/// Making or removing the socket failed.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    /// The socket path has no parent directory.
    #[error("socket path {} has no parent directory", path.display())]
    NoParent {
        /// The socket path.
        path: PathBuf,
    },
    /// The directory could not be made or inspected.
    #[error("cannot prepare socket directory {}", dir.display())]
    Directory {
        /// The directory.
        dir: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The directory is not something root may trust.
    #[error("socket directory {} is {problem}; it must be a directory owned by root and writable only by root", dir.display())]
    UntrustedDirectory {
        /// The directory.
        dir: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// Something other than a socket is at the socket path.
    #[error("{} exists and is not a socket; refusing to remove it", path.display())]
    NotASocket {
        /// The socket path.
        path: PathBuf,
    },
    /// Removing a stale socket, binding, or setting owner and mode failed.
    #[error("cannot {action} {}", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The socket path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// The socket file [`bind`] made; [`SocketFile::remove`] deletes it if it
/// is still this one.
#[derive(Debug)]
pub struct SocketFile {
    path: PathBuf,
    /// Device, inode and change time (seconds, nanoseconds) after the
    /// socket got its mode and owner: an inode number alone is reused at
    /// once when a newer helper replaces the file.
    identity: (u64, u64, i64, i64),
}

impl SocketFile {
    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes the socket file if it is still the one bound here (a newer
    /// helper may have replaced it).
    pub fn remove(&self) -> Result<(), SocketError> {
        match fs_err::symlink_metadata(&self.path) {
            Ok(meta) if identity_of(&meta) == self.identity => fs_err::remove_file(&self.path)
                .map_err(|source| SocketError::Io {
                    action: "remove",
                    path: self.path.clone(),
                    source,
                }),
            _ => Ok(()),
        }
    }
}

/// Makes the socket at `path`: its directory (mode 0755, when missing;
/// checked to be root's either way), a stale socket removed (anything else
/// refused), bound, then owned by `owner_uid:owner_gid` with mode 0600.
pub fn bind(
    path: &Path,
    owner_uid: u32,
    owner_gid: u32,
) -> Result<(UnixListener, SocketFile), SocketError> {
    let dir = path.parent().ok_or_else(|| SocketError::NoParent {
        path: path.to_owned(),
    })?;
    prepare_directory(dir)?;
    match fs_err::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            fs_err::remove_file(path).map_err(|source| SocketError::Io {
                action: "remove the stale socket",
                path: path.to_owned(),
                source,
            })?;
        }
        Ok(_) => {
            return Err(SocketError::NotASocket {
                path: path.to_owned(),
            });
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(SocketError::Io {
                action: "inspect",
                path: path.to_owned(),
                source,
            });
        }
    }
    let io = |action: &'static str| {
        move |source: std::io::Error| SocketError::Io {
            action,
            path: path.to_owned(),
            source,
        }
    };
    let listener = UnixListener::bind(path).map_err(io("bind"))?;
    fs_err::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(io("set the mode of"))?;
    rustix::fs::chown(
        path,
        Some(rustix::process::Uid::from_raw(owner_uid)),
        Some(rustix::process::Gid::from_raw(owner_gid)),
    )
    .map_err(|errno| io("set the owner of")(errno.into()))?;
    let meta = fs_err::symlink_metadata(path).map_err(io("inspect"))?;
    let file = SocketFile {
        path: path.to_owned(),
        identity: identity_of(&meta),
    };
    Ok((listener, file))
}

/// What tells this socket file apart from a later one at the same path.
fn identity_of(meta: &std::fs::Metadata) -> (u64, u64, i64, i64) {
    (meta.dev(), meta.ino(), meta.ctime(), meta.ctime_nsec())
}

/// Creates `dir` (0755) if missing, then checks it is a directory owned by
/// this process's user (root) that nobody else can write.
fn prepare_directory(dir: &Path) -> Result<(), SocketError> {
    let directory_error = |source: std::io::Error| SocketError::Directory {
        dir: dir.to_owned(),
        source,
    };
    match rustix::fs::mkdir(dir, rustix::fs::Mode::from_raw_mode(0o755)) {
        Ok(()) | Err(rustix::io::Errno::EXIST) => {}
        Err(errno) => return Err(directory_error(errno.into())),
    }
    let meta = fs_err::symlink_metadata(dir).map_err(directory_error)?;
    let untrusted = |problem: String| SocketError::UntrustedDirectory {
        dir: dir.to_owned(),
        problem,
    };
    if !meta.file_type().is_dir() {
        return Err(untrusted("not a directory".into()));
    }
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me {
        return Err(untrusted(format!("owned by uid {}", meta.uid())));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(untrusted(format!(
            "writable by group or others (mode {:o})",
            meta.mode() & 0o7777
        )));
    }
    Ok(())
}
