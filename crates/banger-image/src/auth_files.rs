//! Coding-agent credentials copied from the owner's home into every guest.
//!
//! On each VM start the daemon reads a fixed list of files from the owner's
//! home (never a path taken from the guest or from a request), puts them into
//! the per-VM config archive under `banger/auth/<id>`, and `/init` writes each
//! to the same path under the guest's `/root` with mode 0600 in an owner-only
//! directory. Tokens refreshed on the host therefore reach the guest on its
//! next start, and a guest never learns where on the host they came from.

use std::path::{Path, PathBuf};

use thiserror::Error;

/// Largest credential file copied; anything bigger is not a credential.
pub const MAX_AUTH_FILE_BYTES: u64 = 1024 * 1024;

/// One credential file banger knows about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFileKind {
    /// opencode's provider logins.
    Opencode,
    /// Claude Code's OAuth credentials.
    Claude,
    /// pi's agent logins.
    Pi,
}

impl AuthFileKind {
    /// Every kind, in the order they are copied.
    pub const ALL: [Self; 3] = [Self::Opencode, Self::Claude, Self::Pi];

    /// The file's path relative to the home directory, on host and guest.
    pub fn home_relative_path(self) -> &'static str {
        match self {
            Self::Opencode => ".local/share/opencode/auth.json",
            Self::Claude => ".claude/.credentials.json",
            Self::Pi => ".pi/agent/auth.json",
        }
    }

    /// Its name inside the config archive (`banger/auth/<id>`); `/init`
    /// maps it back to [`Self::home_relative_path`].
    pub fn archive_id(self) -> &'static str {
        match self {
            Self::Opencode => "opencode",
            Self::Claude => "claude",
            Self::Pi => "pi",
        }
    }
}

/// A credential file's contents, ready for the config archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthFile {
    /// Which file.
    pub kind: AuthFileKind,
    /// Its bytes.
    pub contents: Vec<u8>,
}

/// A credential file that exists but cannot be copied; the VM starts
/// without it.
#[derive(Debug, Error)]
pub enum AuthFileError {
    /// Reading it failed (permissions, a directory in its place, ...).
    #[error("cannot read {path}")]
    Read {
        /// The host file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// It is larger than [`MAX_AUTH_FILE_BYTES`].
    #[error(
        "{path} is {size} bytes, more than the {MAX_AUTH_FILE_BYTES} bytes a credential file may have"
    )]
    TooLarge {
        /// The host file.
        path: PathBuf,
        /// Its size.
        size: u64,
    },
}

/// Reads every known credential file that exists under `home`. Missing files
/// are skipped silently; unreadable or oversized ones are returned as
/// problems so the caller can log them without failing the start.
pub fn read_from_home(home: &Path) -> (Vec<AuthFile>, Vec<AuthFileError>) {
    let mut files = Vec::new();
    let mut problems = Vec::new();
    for kind in AuthFileKind::ALL {
        let path = home.join(kind.home_relative_path());
        match read_one(&path) {
            Ok(Some(contents)) => files.push(AuthFile { kind, contents }),
            Ok(None) => {}
            Err(problem) => problems.push(problem),
        }
    }
    (files, problems)
}

fn read_one(path: &Path) -> Result<Option<Vec<u8>>, AuthFileError> {
    let read_error = |source| AuthFileError::Read {
        path: path.to_owned(),
        source,
    };
    // symlink_metadata would refuse a symlinked credential file; people do
    // keep dotfiles as symlinks into a dotfiles repo, and the path itself is
    // fixed and in the owner's own home, so following it is what they expect.
    let metadata = match fs_err::metadata(path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(read_error(error)),
    };
    if !metadata.is_file() {
        return Err(read_error(std::io::Error::other("not a regular file")));
    }
    if metadata.len() > MAX_AUTH_FILE_BYTES {
        return Err(AuthFileError::TooLarge {
            path: path.to_owned(),
            size: metadata.len(),
        });
    }
    let contents = fs_err::read(path).map_err(read_error)?;
    if contents.len() as u64 > MAX_AUTH_FILE_BYTES {
        return Err(AuthFileError::TooLarge {
            path: path.to_owned(),
            size: contents.len() as u64,
        });
    }
    Ok(Some(contents))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_existing_files_skips_missing_and_reports_bad_ones() {
        let home = tempfile::tempdir().unwrap();
        let opencode = home.path().join(".local/share/opencode/auth.json");
        fs_err::create_dir_all(opencode.parent().unwrap()).unwrap();
        fs_err::write(&opencode, b"{\"token\":1}").unwrap();
        // A directory where the Claude file should be is a problem, not a crash.
        fs_err::create_dir_all(home.path().join(".claude/.credentials.json")).unwrap();
        let (files, problems) = read_from_home(home.path());
        assert_eq!(
            files,
            vec![AuthFile {
                kind: AuthFileKind::Opencode,
                contents: b"{\"token\":1}".to_vec()
            }]
        );
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0]
                .to_string()
                .contains(".claude/.credentials.json"),
            "{}",
            problems[0]
        );
    }

    #[test]
    fn oversized_files_are_refused() {
        let home = tempfile::tempdir().unwrap();
        let pi = home.path().join(".pi/agent/auth.json");
        fs_err::create_dir_all(pi.parent().unwrap()).unwrap();
        fs_err::write(&pi, vec![b'x'; MAX_AUTH_FILE_BYTES as usize + 1]).unwrap();
        let (files, problems) = read_from_home(home.path());
        assert!(files.is_empty());
        assert!(matches!(problems[..], [AuthFileError::TooLarge { .. }]));
    }

    #[test]
    fn archive_ids_are_unique_and_match_the_init_script() {
        let script = crate::initramfs::INIT_SCRIPT;
        for kind in AuthFileKind::ALL {
            let entry = format!("{}:{}", kind.archive_id(), kind.home_relative_path());
            assert!(script.contains(&entry), "/init does not map {entry}");
        }
    }
}
