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
    /// A private directory exists but is not owned by us or is reachable by others.
    #[error("directory {path} is {problem}; remove it or fix its ownership and mode (chmod 700)")]
    Insecure {
        /// The directory.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
}

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
