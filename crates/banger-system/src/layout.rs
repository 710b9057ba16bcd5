//! Where a system install puts things, and the check that root never runs
//! or reads anything a user could have replaced.
//!
//! Binaries go into `<prefix>/bin`, the guest agent into
//! `<prefix>/lib/banger` (the daemon looks for it at `../lib/banger` next to
//! itself), the metadata into `/etc/banger`, the units into
//! `/etc/systemd/system`. The prefix is `/usr/local` unless given. Every
//! directory that will hold something root runs or trusts, and every parent
//! of it up to `/`, must be owned by root and writable by nobody else: a
//! user who can rename a parent can swap the file root executes.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use banger_config::install::{INSTALL_METADATA_PATH, ROOT_SOCKET_PATH};

/// The default install prefix.
pub const DEFAULT_PREFIX: &str = "/usr/local";
/// Where the unit files go.
pub const UNIT_DIR: &str = "/etc/systemd/system";
/// Where the detached helper (no systemd) writes its log.
pub const LOG_DIR: &str = "/var/log/banger";

/// One file a system install puts in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Binary {
    /// The CLI.
    Banger,
    /// The owner's daemon.
    Bangerd,
    /// The root helper.
    BangerdRoot,
    /// The static guest agent copied into every image.
    Agent,
    /// The vhost-user vsock backend QEMU VMs need; the owner's daemon runs
    /// it, so it must be where the owner can execute it (a root-owned
    /// copy, not root's `~/.cargo/bin`).
    VhostVsock,
}

impl Binary {
    /// Every installed file.
    pub const ALL: [Binary; 5] = [
        Binary::Banger,
        Binary::Bangerd,
        Binary::BangerdRoot,
        Binary::Agent,
        Binary::VhostVsock,
    ];

    /// The file's name.
    pub fn file_name(self) -> &'static str {
        match self {
            Binary::Banger => "banger",
            Binary::Bangerd => "bangerd",
            Binary::BangerdRoot => "bangerd-root",
            Binary::Agent => "banger-vsock-agent",
            Binary::VhostVsock => "vhost-device-vsock",
        }
    }
}

/// The paths of one system install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// `banger`, `bangerd`, `bangerd-root`.
    pub bin_dir: PathBuf,
    /// The guest agent.
    pub lib_dir: PathBuf,
    /// The install metadata file.
    pub metadata: PathBuf,
    /// Where unit files are written.
    pub unit_dir: PathBuf,
    /// The helper's socket.
    pub root_socket: PathBuf,
    /// The detached helper's log directory (no systemd).
    pub log_dir: PathBuf,
}

impl Layout {
    /// The layout for `prefix` (`/usr/local` by default); metadata, units,
    /// socket and log are at their fixed system paths, because the helper
    /// and the daemon look for them there.
    pub fn with_prefix(prefix: &Path) -> Self {
        Self {
            bin_dir: prefix.join("bin"),
            lib_dir: prefix.join("lib").join("banger"),
            metadata: PathBuf::from(INSTALL_METADATA_PATH),
            unit_dir: PathBuf::from(UNIT_DIR),
            root_socket: PathBuf::from(ROOT_SOCKET_PATH),
            log_dir: PathBuf::from(LOG_DIR),
        }
    }

    /// The layout of an existing install, from its metadata.
    pub fn from_metadata(metadata: &banger_config::InstallMetadata) -> Self {
        Self {
            bin_dir: metadata.bin_dir.clone(),
            lib_dir: metadata.lib_dir.clone(),
            root_socket: metadata.root_socket.clone(),
            ..Self::with_prefix(Path::new(DEFAULT_PREFIX))
        }
    }

    /// Where `binary` is installed.
    pub fn binary(&self, binary: Binary) -> PathBuf {
        match binary {
            Binary::Agent | Binary::VhostVsock => self.lib_dir.join(binary.file_name()),
            _ => self.bin_dir.join(binary.file_name()),
        }
    }

    /// The directory holding the helper's socket (and, without systemd,
    /// its pid file).
    pub fn run_dir(&self) -> PathBuf {
        self.root_socket
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("/run/banger"))
    }

    /// The detached helper's pid file (no systemd).
    pub fn pid_file(&self) -> PathBuf {
        self.run_dir().join("root.pid")
    }

    /// The detached helper's log file (no systemd).
    pub fn log_file(&self) -> PathBuf {
        self.log_dir.join("bangerd-root.log")
    }

    /// The directory of the metadata file.
    pub fn metadata_dir(&self) -> PathBuf {
        self.metadata
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("/etc/banger"))
    }
}

/// A directory root would trust is not safe.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    /// The directory or one of its parents is not root's alone.
    #[error(
        "{checked} cannot hold files root runs or trusts: its parent {path} is {problem}; choose a prefix whose every directory is owned by root and writable only by root"
    )]
    UserWritable {
        /// The directory that was checked.
        checked: PathBuf,
        /// The offending directory (the checked one or a parent).
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// The path is relative.
    #[error("{path} is not an absolute path")]
    Relative {
        /// The path.
        path: PathBuf,
    },
    /// A directory could not be inspected.
    #[error("cannot inspect {path}")]
    Inspect {
        /// The path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// Checks that `dir` (which need not exist yet) and each of its parents up
/// to `/` is owned by `trusted_uid` and not writable by group or others,
/// both along the path as written (a symbolic link counts as its own
/// component and must belong to `trusted_uid`) and along the path the links
/// resolve to. `trusted_uid` is root except in tests.
pub fn check_trusted_dir(dir: &Path, trusted_uid: u32) -> Result<(), LayoutError> {
    if !dir.is_absolute() {
        return Err(LayoutError::Relative {
            path: dir.to_owned(),
        });
    }
    let existing = dir
        .ancestors()
        .find(|ancestor| ancestor.symlink_metadata().is_ok())
        .unwrap_or(Path::new("/"));
    for ancestor in existing.ancestors() {
        check_one(dir, ancestor, trusted_uid, false)?;
    }
    let resolved = fs_err::canonicalize(existing).map_err(|source| LayoutError::Inspect {
        path: existing.to_owned(),
        source,
    })?;
    for ancestor in resolved.ancestors() {
        check_one(dir, ancestor, trusted_uid, true)?;
    }
    Ok(())
}

fn check_one(
    checked: &Path,
    path: &Path,
    trusted_uid: u32,
    follow: bool,
) -> Result<(), LayoutError> {
    let metadata = if follow {
        fs_err::metadata(path)
    } else {
        fs_err::symlink_metadata(path)
    }
    .map_err(|source| LayoutError::Inspect {
        path: path.to_owned(),
        source,
    })?;
    let refuse = |problem: String| {
        Err(LayoutError::UserWritable {
            checked: checked.to_owned(),
            path: path.to_owned(),
            problem,
        })
    };
    if metadata.uid() != trusted_uid {
        return refuse(format!("owned by uid {}", metadata.uid()));
    }
    if metadata.file_type().is_symlink() {
        // A link's own mode is always 0777 and means nothing; its owner and
        // the directory holding it (checked next) decide who may change it.
        return Ok(());
    }
    if !metadata.is_dir() {
        return refuse(format!(
            "a {}",
            banger_config::paths::file_kind(&metadata.file_type())
        ));
    }
    if metadata.mode() & 0o022 != 0 {
        return refuse(format!(
            "writable by group or others (mode {:o})",
            metadata.mode() & 0o7777
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_layout_puts_files_where_the_daemon_looks() {
        let layout = Layout::with_prefix(Path::new(DEFAULT_PREFIX));
        assert_eq!(
            layout.binary(Binary::BangerdRoot),
            Path::new("/usr/local/bin/bangerd-root")
        );
        assert_eq!(
            layout.binary(Binary::Agent),
            Path::new("/usr/local/lib/banger/banger-vsock-agent")
        );
        // bangerd finds the agent at ../lib/banger next to itself.
        assert_eq!(
            layout.bin_dir.parent().unwrap().join("lib/banger"),
            layout.lib_dir
        );
        assert_eq!(layout.metadata, Path::new("/etc/banger/install.toml"));
        assert_eq!(layout.pid_file(), Path::new("/run/banger/root.pid"));
        assert_eq!(
            layout.log_file(),
            Path::new("/var/log/banger/bangerd-root.log")
        );
    }

    #[test]
    fn relative_prefixes_are_refused() {
        assert!(matches!(
            check_trusted_dir(Path::new("usr/local/bin"), 0),
            Err(LayoutError::Relative { .. })
        ));
    }
}
