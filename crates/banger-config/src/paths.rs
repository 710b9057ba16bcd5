//! XDG directory resolution for banger.
//!
//! Each directory comes from, in order: a `BANGER_*_DIR` override, the XDG
//! variable, then the XDG default under `$HOME`. The runtime directory falls
//! back to `/run/user/<uid>` when it exists and is ours, else to a private
//! directory under the system temp dir, because sockets must live somewhere
//! short-pathed and private even on hosts without a login session manager.

use std::path::{Path, PathBuf};

/// Failure to resolve or prepare banger's directories.
#[derive(Debug, thiserror::Error)]
pub enum PathsError {
    /// Neither the override, the XDG variable nor `$HOME` is set.
    #[error("cannot find a {what} directory: set {override_var} or {xdg_var}, or HOME")]
    NoHome {
        /// Which directory (config, state, ...).
        what: &'static str,
        /// The banger-specific override variable.
        override_var: &'static str,
        /// The XDG variable.
        xdg_var: &'static str,
    },
    /// A directory variable holds a relative path, which XDG forbids.
    #[error("{var} is set to the relative path {value:?}; it must be absolute")]
    RelativePath {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
    },
    /// Creating or securing a directory failed.
    #[error("cannot prepare directory {path}")]
    Prepare {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A Unix socket banger would create under the runtime dir does not fit
    /// in `sockaddr_un.sun_path`.
    #[error(
        "socket path {path} is {len} bytes; Unix socket paths allow at most {limit}: set BANGER_RUNTIME_DIR (or XDG_RUNTIME_DIR) to a shorter directory{hint}"
    )]
    SocketPathTooLong {
        /// The socket path.
        path: PathBuf,
        /// Its length in bytes.
        len: usize,
        /// [`MAX_SOCKET_PATH`].
        limit: usize,
        /// Extra advice (for a VM's socket: the longest name that fits).
        hint: String,
    },
    /// A private directory exists but is not owned by us or is reachable by others.
    #[error("directory {path} is {problem}; remove it or fix its ownership and mode (chmod 700)")]
    Insecure {
        /// The directory.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
}

/// Longest Unix socket path: `sockaddr_un.sun_path` is 108 bytes including
/// the terminating NUL.
pub const MAX_SOCKET_PATH: usize = 107;

/// The longest socket file name any VMM backend creates in a VM's runtime
/// dir `<runtime dir>/vms/<name>/` (QEMU's vhost-user vsock socket; the
/// others are `qmp.sock`, `vsock.sock`, `firecracker.sock`).
pub const LONGEST_VM_SOCKET: &str = "vhost-vsock.sock";

/// All directories and well-known files banger uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// `~/.config/banger`: config.toml, ssh keys.
    pub config_dir: PathBuf,
    /// `~/.local/state/banger`: database, logs, VM state.
    pub state_dir: PathBuf,
    /// `~/.cache/banger`: downloads and build caches.
    pub cache_dir: PathBuf,
    /// `$XDG_RUNTIME_DIR/banger`: socket, lock, pid file.
    pub runtime_dir: PathBuf,
    /// The owner's home (`$HOME`, when set and absolute): the only place
    /// the daemon reads agent credentials from (docs/vms.md).
    pub home_dir: Option<PathBuf>,
}

/// Looks up an environment variable; tests pass their own instead of the
/// process environment so they can run in parallel.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Reads a variable through `env`, treating empty as unset (as XDG says).
fn var(env: EnvLookup<'_>, name: &str) -> Option<String> {
    env(name).filter(|value| !value.is_empty())
}

/// The process environment as an [`EnvLookup`].
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn absolute(var_name: &'static str, value: String) -> Result<PathBuf, PathsError> {
    let path = PathBuf::from(&value);
    if path.is_absolute() {
        Ok(path)
    } else {
        Err(PathsError::RelativePath {
            var: var_name,
            value,
        })
    }
}

/// Resolves one directory: override (used as is), XDG base + `banger`, or
/// `$HOME/<default>/banger`.
fn resolve(
    env: EnvLookup<'_>,
    what: &'static str,
    override_var: &'static str,
    xdg_var: &'static str,
    home_default: &str,
) -> Result<PathBuf, PathsError> {
    if let Some(value) = var(env, override_var) {
        return absolute(override_var, value);
    }
    if let Some(value) = var(env, xdg_var) {
        return Ok(absolute(xdg_var, value)?.join("banger"));
    }
    match var(env, "HOME") {
        Some(home) => Ok(absolute("HOME", home)?.join(home_default).join("banger")),
        None => Err(PathsError::NoHome {
            what,
            override_var,
            xdg_var,
        }),
    }
}

impl Paths {
    /// Resolves every directory from the process environment. Nothing is created.
    pub fn from_env() -> Result<Self, PathsError> {
        Self::from_lookup(&process_env)
    }

    /// Resolves every directory through `env`. Nothing is created.
    pub fn from_lookup(env: EnvLookup<'_>) -> Result<Self, PathsError> {
        let config_dir = resolve(
            env,
            "config",
            "BANGER_CONFIG_DIR",
            "XDG_CONFIG_HOME",
            ".config",
        )?;
        let state_dir = resolve(
            env,
            "state",
            "BANGER_STATE_DIR",
            "XDG_STATE_HOME",
            ".local/state",
        )?;
        let cache_dir = resolve(env, "cache", "BANGER_CACHE_DIR", "XDG_CACHE_HOME", ".cache")?;
        let runtime_dir = if let Some(value) = var(env, "BANGER_RUNTIME_DIR") {
            absolute("BANGER_RUNTIME_DIR", value)?
        } else if let Some(value) = var(env, "XDG_RUNTIME_DIR") {
            absolute("XDG_RUNTIME_DIR", value)?.join("banger")
        } else {
            fallback_runtime_base().join("banger")
        };
        let home_dir = var(env, "HOME")
            .map(PathBuf::from)
            .filter(|home| home.is_absolute());
        Ok(Self {
            config_dir,
            state_dir,
            cache_dir,
            runtime_dir,
            home_dir,
        })
    }

    /// `config.toml` inside the config dir.
    pub fn config_file(&self) -> PathBuf {
        self.config_dir.join("config.toml")
    }

    /// The daemon's API socket.
    pub fn socket(&self) -> PathBuf {
        self.runtime_dir.join("bangerd.sock")
    }

    /// Lock held by the running daemon for its whole life.
    pub fn daemon_lock(&self) -> PathBuf {
        self.runtime_dir.join("bangerd.lock")
    }

    /// Lock clients hold while they start a daemon, so only one starts it.
    pub fn spawn_lock(&self) -> PathBuf {
        self.runtime_dir.join("spawn.lock")
    }

    /// The daemon's structured log.
    pub fn log_file(&self) -> PathBuf {
        self.state_dir.join("bangerd.log")
    }

    /// Where the daemon's stdout/stderr go (panics, early start-up failures).
    pub fn daemon_stderr_file(&self) -> PathBuf {
        self.state_dir.join("bangerd.stderr.log")
    }

    /// The SQLite database.
    pub fn database(&self) -> PathBuf {
        self.state_dir.join("banger.db")
    }

    /// Checks that the daemon's API socket fits in a Unix socket address.
    /// Both the daemon (before it binds) and the client (before it
    /// connects or starts a daemon) call this, so an over-long runtime dir
    /// is refused with the fix instead of an `ENAMETOOLONG` or a hang.
    pub fn check_socket_path(&self) -> Result<(), PathsError> {
        check_socket_len(self.socket(), String::new())
    }

    /// The longest VM name whose sockets (`<runtime dir>/vms/<name>/`
    /// [`LONGEST_VM_SOCKET`]) fit in a Unix socket address; 0 when none do.
    pub fn max_vm_name_for_sockets(&self) -> usize {
        // <runtime>/vms/ + name + / + LONGEST_VM_SOCKET
        let fixed = self.runtime_dir.join("vms").as_os_str().len() + 2 + LONGEST_VM_SOCKET.len();
        MAX_SOCKET_PATH.saturating_sub(fixed)
    }

    /// Checks that every socket a VM named `name` gets (the longest is
    /// `<runtime dir>/vms/<name>/`[`LONGEST_VM_SOCKET`]) fits in a Unix
    /// socket address; the error names the longest name that would fit.
    pub fn check_vm_socket_paths(&self, name: &str) -> Result<(), PathsError> {
        let path = self
            .runtime_dir
            .join("vms")
            .join(name)
            .join(LONGEST_VM_SOCKET);
        let max = self.max_vm_name_for_sockets();
        let hint = if max == 0 {
            String::new()
        } else {
            format!(", or use a VM name of at most {max} characters")
        };
        check_socket_len(path, hint)
    }

    /// Creates the runtime dir with mode 0700 and checks it is private to us.
    /// The daemon calls this before binding its socket.
    pub fn prepare_runtime_dir(&self) -> Result<(), PathsError> {
        ensure_private_dir(&self.runtime_dir)
    }

    /// Creates the state dir (0700).
    pub fn prepare_state_dir(&self) -> Result<(), PathsError> {
        ensure_private_dir(&self.state_dir)
    }
}

fn check_socket_len(path: PathBuf, hint: String) -> Result<(), PathsError> {
    let len = path.as_os_str().len();
    if len > MAX_SOCKET_PATH {
        return Err(PathsError::SocketPathTooLong {
            path,
            len,
            limit: MAX_SOCKET_PATH,
            hint,
        });
    }
    Ok(())
}

/// `/run/user/<uid>` when it is a directory we own, else the temp dir with a
/// per-uid private subdirectory (`banger-<uid>`).
fn fallback_runtime_base() -> PathBuf {
    let uid = rustix::process::getuid().as_raw();
    let run_user = PathBuf::from(format!("/run/user/{uid}"));
    if let Ok(stat) = rustix::fs::stat(&run_user) {
        if stat.st_uid == uid && rustix::fs::FileType::from_raw_mode(stat.st_mode).is_dir() {
            return run_user;
        }
    }
    std::env::temp_dir().join(format!("banger-{uid}"))
}

/// What a file that is not a regular file is, for messages ("FIFO",
/// "directory", ...); every place that refuses such a file names it alike.
pub fn file_kind(file_type: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if file_type.is_file() {
        "regular file"
    } else if file_type.is_dir() {
        "directory"
    } else if file_type.is_symlink() {
        "symbolic link"
    } else if file_type.is_fifo() {
        "FIFO"
    } else if file_type.is_char_device() {
        "character device"
    } else if file_type.is_block_device() {
        "block device"
    } else if file_type.is_socket() {
        "socket"
    } else {
        "special file"
    }
}

/// Creates `path` (and parents) with mode 0700, or verifies an existing one
/// is a real directory owned by us and closed to others. Parents that
/// already exist are left alone; new ones are created 0700 too.
pub fn ensure_private_dir(path: &Path) -> Result<(), PathsError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let prepare = |source| PathsError::Prepare {
        path: path.to_owned(),
        source,
    };
    #[allow(
        clippy::disallowed_types,
        reason = "fs-err has no DirBuilder; the error is mapped with the path below"
    )]
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(prepare)?;
    let metadata = fs_err::symlink_metadata(path).map_err(prepare)?;
    let insecure = |problem: String| PathsError::Insecure {
        path: path.to_owned(),
        problem,
    };
    if !metadata.is_dir() {
        return Err(insecure(
            "not a directory (a symlink or file is in the way)".into(),
        ));
    }
    let uid = rustix::process::getuid().as_raw();
    if std::os::unix::fs::MetadataExt::uid(&metadata) != uid {
        return Err(insecure(format!(
            "owned by uid {} but banger runs as uid {uid}",
            std::os::unix::fs::MetadataExt::uid(&metadata)
        )));
    }
    let mode = metadata.permissions().mode() & 0o777;
    if mode != 0o700 {
        fs_err::set_permissions(path, std::fs::Permissions::from_mode(0o700)).map_err(prepare)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn xdg_variables_then_overrides_then_home() {
        let env = lookup(&[
            ("HOME", "/home/u"),
            ("XDG_STATE_HOME", "/xdg/state"),
            ("BANGER_CACHE_DIR", "/c"),
        ]);
        let paths = Paths::from_lookup(&env).expect("paths");
        assert_eq!(paths.config_dir, PathBuf::from("/home/u/.config/banger"));
        assert_eq!(paths.state_dir, PathBuf::from("/xdg/state/banger"));
        assert_eq!(paths.cache_dir, PathBuf::from("/c"));
        assert_eq!(
            paths.log_file(),
            PathBuf::from("/xdg/state/banger/bangerd.log")
        );
        let env = lookup(&[("HOME", "/home/u"), ("XDG_RUNTIME_DIR", "/run/user/5")]);
        let paths = Paths::from_lookup(&env).expect("paths");
        assert_eq!(
            paths.socket(),
            PathBuf::from("/run/user/5/banger/bangerd.sock")
        );
    }

    #[test]
    fn relative_and_missing_paths_are_errors() {
        let env = lookup(&[("HOME", "/home/u"), ("XDG_CONFIG_HOME", "rel/dir")]);
        let error = Paths::from_lookup(&env).expect_err("relative refused");
        assert_eq!(
            error.to_string(),
            "XDG_CONFIG_HOME is set to the relative path \"rel/dir\"; it must be absolute"
        );
        let env = lookup(&[]);
        let error = Paths::from_lookup(&env).expect_err("no home");
        assert!(
            error
                .to_string()
                .contains("set BANGER_CONFIG_DIR or XDG_CONFIG_HOME, or HOME"),
            "{error}"
        );
    }

    #[test]
    fn runtime_dir_falls_back_when_xdg_runtime_dir_is_unset() {
        let env = lookup(&[("HOME", "/home/u")]);
        let paths = Paths::from_lookup(&env).expect("paths");
        assert!(
            paths.runtime_dir.ends_with("banger"),
            "{}",
            paths.runtime_dir.display()
        );
        assert!(paths.runtime_dir.is_absolute());
    }

    #[test]
    fn socket_paths_longer_than_sun_path_are_refused_with_the_fix() {
        let short = lookup(&[("HOME", "/home/u"), ("BANGER_RUNTIME_DIR", "/run/b")]);
        let paths = Paths::from_lookup(&short).expect("paths");
        paths.check_socket_path().expect("short socket fits");
        paths
            .check_vm_socket_paths(&"v".repeat(63))
            .expect("63-char VM name fits");

        // The API socket: 107 bytes fit, 108 do not.
        let fits = format!(
            "/{}",
            "r".repeat(MAX_SOCKET_PATH - "/bangerd.sock".len() - 1)
        );
        let paths = Paths::from_lookup(&lookup(&[
            ("HOME", "/home/u"),
            ("BANGER_RUNTIME_DIR", fits.as_str()),
        ]))
        .expect("paths");
        assert_eq!(paths.socket().as_os_str().len(), MAX_SOCKET_PATH);
        paths.check_socket_path().expect("107 bytes fit");
        let long = format!("{fits}x");
        let paths = Paths::from_lookup(&lookup(&[
            ("HOME", "/home/u"),
            ("BANGER_RUNTIME_DIR", long.as_str()),
        ]))
        .expect("paths");
        let error = paths.check_socket_path().expect_err("108 bytes refused");
        let PathsError::SocketPathTooLong {
            path, len, limit, ..
        } = &error
        else {
            panic!("wrong error: {error}");
        };
        assert_eq!((path, *len, *limit), (&paths.socket(), 108, 107));
        let message = error.to_string();
        assert!(message.contains(&long), "{message}");
        assert!(message.contains("108 bytes"), "{message}");
        assert!(message.contains("at most 107"), "{message}");
        assert!(message.contains("BANGER_RUNTIME_DIR"), "{message}");

        // A VM's sockets: a runtime dir that fits the API socket can still be
        // too long for a long VM name; the error names the name that fits.
        let env = lookup(&[
            ("HOME", "/home/u"),
            ("BANGER_RUNTIME_DIR", "/tmp/banger-100000/banger"),
        ]);
        let paths = Paths::from_lookup(&env).expect("paths");
        paths.check_socket_path().expect("API socket fits");
        let max = paths.max_vm_name_for_sockets();
        assert_eq!(
            max,
            107 - "/tmp/banger-100000/banger/vms//vhost-vsock.sock".len()
        );
        paths
            .check_vm_socket_paths(&"v".repeat(max))
            .expect("the longest name that fits");
        let error = paths
            .check_vm_socket_paths(&"v".repeat(63))
            .expect_err("63 chars refused");
        let message = error.to_string();
        assert!(
            message.contains("/tmp/banger-100000/banger/vms/vvv"),
            "{message}"
        );
        assert!(message.contains("vhost-vsock.sock"), "{message}");
        assert!(
            message.contains(&format!("a VM name of at most {max} characters")),
            "{message}"
        );
    }

    #[test]
    fn private_dir_is_created_0700_and_tightened() {
        let temp = tempfile::tempdir().expect("tempdir");
        let dir = temp.path().join("a/b");
        ensure_private_dir(&dir).expect("create");
        let mode = fs_err::metadata(&dir).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        fs_err::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        ensure_private_dir(&dir).expect("tighten");
        let mode = fs_err::metadata(&dir).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }

    #[test]
    fn private_dir_refuses_a_symlink() {
        let temp = tempfile::tempdir().expect("tempdir");
        let target = temp.path().join("target");
        fs_err::create_dir(&target).expect("mkdir");
        let link = temp.path().join("link");
        fs_err::os::unix::fs::symlink(&target, &link).expect("symlink");
        let error = ensure_private_dir(&link).expect_err("symlink refused");
        assert!(error.to_string().contains("not a directory"), "{error}");
    }
}
