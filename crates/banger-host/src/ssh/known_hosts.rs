//! banger's own `known_hosts` file.
//!
//! Only banger writes this file (e.g. `<state dir>/ssh/known_hosts`); ssh
//! reads it through `UserKnownHostsFile=` and matches entries by
//! `HostKeyAlias=<alias>`, so the VM's IP address never appears in it and a
//! recycled IP cannot confuse ssh. Each line is `<alias> <keytype> <base64>`.
//!
//! Updates take an exclusive `flock` on a sibling `<file>.lock`, read the
//! file (a missing file is empty), and replace it atomically (temp file +
//! rename), so concurrent writers in one or several processes never lose
//! each other's entries and ssh never reads a half-written file.

use fs_err::OpenOptions;
use fs_err::os::unix::fs::OpenOptionsExt;
use std::io;
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, flock};

use super::fsutil;

/// Longest alias accepted: the DNS name limit.
pub const MAX_ALIAS_LEN: usize = 253;

/// Why a known_hosts update failed.
#[derive(Debug, thiserror::Error)]
pub enum KnownHostsError {
    /// Reading, writing or locking a file failed.
    #[error("{action} {path}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file involved (the known_hosts file or its lock).
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The alias is not a banger host name.
    #[error(
        "{alias:?} is not a valid host alias for {path}: {reason} (use dot-separated labels of lowercase letters, digits and '-', like devbox.vm)"
    )]
    InvalidAlias {
        /// The refused alias.
        alias: String,
        /// The known_hosts file that was to be changed.
        path: PathBuf,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The public key line is not `<keytype> <base64> [comment]`.
    #[error("{line:?} is not an OpenSSH public key line (for {path}): {reason}")]
    InvalidKey {
        /// The refused line.
        line: String,
        /// The known_hosts file that was to be changed.
        path: PathBuf,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// Checks that `alias` is a banger host name: 1 to [`MAX_ALIAS_LEN`]
/// characters, dot-separated non-empty labels of `[a-z0-9-]`, no label
/// starting or ending with '-'. Returns the reason it is not.
pub fn check_alias(alias: &str) -> Result<(), &'static str> {
    if alias.is_empty() {
        return Err("it is empty");
    }
    if alias.len() > MAX_ALIAS_LEN {
        return Err("it is longer than 253 characters");
    }
    for label in alias.split('.') {
        if label.is_empty() {
            return Err("it has an empty label (leading, trailing or double '.')");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err("it contains a character other than a-z, 0-9, '-' and '.'");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("a label starts or ends with '-'");
        }
    }
    Ok(())
}

/// Splits `public_line` into key type and base64 blob, dropping a comment.
fn parse_public_line(line: &str) -> Result<(&str, &str), &'static str> {
    let mut fields = line.split_ascii_whitespace();
    let (Some(key_type), Some(blob)) = (fields.next(), fields.next()) else {
        return Err("expected `<keytype> <base64>`");
    };
    let type_ok = key_type
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'@'));
    if !type_ok {
        return Err("bad key type");
    }
    let blob_ok = blob
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='));
    if !blob_ok || blob.len() < 16 {
        return Err("bad base64 key data");
    }
    Ok((key_type, blob))
}

/// Pins `public_line` (`<keytype> <base64> [comment]`) for `alias`,
/// replacing every existing entry for that alias. Creates the file (and a
/// 0700 parent directory) if missing.
pub fn set_host(path: &Path, alias: &str, public_line: &str) -> Result<(), KnownHostsError> {
    validate_alias(path, alias)?;
    let (key_type, blob) =
        parse_public_line(public_line).map_err(|reason| KnownHostsError::InvalidKey {
            line: public_line.to_owned(),
            path: path.to_owned(),
            reason,
        })?;
    let entry = format!("{alias} {key_type} {blob}");
    update(path, |lines| {
        lines.retain(|line| !names_alias(line, alias));
        lines.push(entry);
        true
    })
}

/// Removes every entry for `alias`. Returns whether one was there; a
/// missing file counts as empty.
pub fn remove_host(path: &Path, alias: &str) -> Result<bool, KnownHostsError> {
    validate_alias(path, alias)?;
    let mut removed = false;
    update(path, |lines| {
        let before = lines.len();
        lines.retain(|line| !names_alias(line, alias));
        removed = lines.len() != before;
        removed
    })?;
    Ok(removed)
}

/// The public key lines (`<keytype> <base64>`) pinned for `alias`.
pub fn host_keys(path: &Path, alias: &str) -> Result<Vec<String>, KnownHostsError> {
    validate_alias(path, alias)?;
    let text = fsutil::read_optional(path)
        .map_err(|source| io_error("read", path, source))?
        .unwrap_or_default();
    Ok(text
        .lines()
        .filter(|line| names_alias(line, alias))
        .filter_map(|line| line.split_once(' ').map(|(_, key)| key.trim().to_owned()))
        .collect())
}

fn validate_alias(path: &Path, alias: &str) -> Result<(), KnownHostsError> {
    check_alias(alias).map_err(|reason| KnownHostsError::InvalidAlias {
        alias: alias.to_owned(),
        path: path.to_owned(),
        reason,
    })
}

/// Whether a known_hosts line's host field (comma-separated patterns)
/// names exactly `alias`.
fn names_alias(line: &str, alias: &str) -> bool {
    let line = line.trim_start();
    if line.starts_with('#') {
        return false;
    }
    line.split_ascii_whitespace()
        .next()
        .is_some_and(|hosts| hosts.split(',').any(|host| host == alias))
}

fn io_error(action: &'static str, path: &Path, source: io::Error) -> KnownHostsError {
    KnownHostsError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

/// The lock file guarding `path`: `<path>.lock`.
fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// Under the lock, reads the lines of `path`, lets `change` edit them, and
/// if it returns true writes them back atomically.
fn update(
    path: &Path,
    change: impl FnOnce(&mut Vec<String>) -> bool,
) -> Result<(), KnownHostsError> {
    let dir = fsutil::parent_of(path);
    fsutil::create_private_dir(dir).map_err(|source| io_error("create directory", dir, source))?;
    let lock_file_path = lock_path(path);
    let lock_file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&lock_file_path)
        .map_err(|source| io_error("open lock", &lock_file_path, source))?;
    flock(&lock_file, FlockOperation::LockExclusive)
        .map_err(|errno| io_error("lock", &lock_file_path, errno.into()))?;
    let text = fsutil::read_optional(path)
        .map_err(|source| io_error("read", path, source))?
        .unwrap_or_default();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    if change(&mut lines) {
        let mut out = lines.join("\n");
        if !out.is_empty() {
            out.push('\n');
        }
        fsutil::write_atomic(path, out.as_bytes(), 0o644)
            .map_err(|source| io_error("write", path, source))?;
    }
    // The lock is released when `lock_file` is closed here.
    drop(lock_file);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alias_rule() {
        for good in ["devbox.vm", "a", "a-1.vm", "0x.vm", "x.y.z"] {
            assert_eq!(check_alias(good), Ok(()), "{good}");
        }
        for bad in [
            "", "Dev.vm", "dev box", "dev..vm", ".vm", "vm.", "-x.vm", "x-.vm", "a,b", "a*",
            "[a]:22", "dev\nvm", "dév",
        ] {
            assert!(check_alias(bad).is_err(), "{bad:?}");
        }
        assert!(check_alias(&"a".repeat(254)).is_err());
    }

    #[test]
    fn public_line_parsing() {
        let blob = "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";
        assert_eq!(
            parse_public_line(&format!("ssh-ed25519 {blob} root@x")),
            Ok(("ssh-ed25519", blob))
        );
        assert!(parse_public_line("ssh-ed25519").is_err());
        assert!(parse_public_line("ssh-ed25519 not*base64xxxxxxxxxxx").is_err());
        assert!(parse_public_line("ssh ed25519\0 AAAAAAAAAAAAAAAAAAAAA").is_err());
    }

    #[test]
    fn names_alias_matches_whole_patterns() {
        assert!(names_alias("a.vm ssh-ed25519 AAAA", "a.vm"));
        assert!(names_alias("b.vm,a.vm ssh-ed25519 AAAA", "a.vm"));
        assert!(!names_alias("aa.vm ssh-ed25519 AAAA", "a.vm"));
        assert!(!names_alias("# a.vm ssh-ed25519 AAAA", "a.vm"));
        assert!(!names_alias("", "a.vm"));
    }
}
