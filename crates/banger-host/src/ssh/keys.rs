//! banger's SSH keys: the user's client key and per-VM host keys.
//!
//! The user key is an unencrypted ed25519 key in OpenSSH format that banger
//! creates once ([`ensure_user_key`]) and then passes to `ssh -i`; its public
//! line goes into every guest's `/root/.ssh/authorized_keys`. Host keys
//! ([`generate_host_key`]) are made fresh for each VM, delivered into the
//! guest's `/etc/ssh/` by the config initrd, and pinned in banger's own
//! `known_hosts` (see [`super::known_hosts`]).

use fs_err as fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ssh_key::rand_core::OsRng;
use ssh_key::{Algorithm, HashAlg, LineEnding, PrivateKey, PublicKey};

use super::fsutil;

/// Comment written into keys banger generates.
const KEY_COMMENT: &str = "banger";

/// Key type of the host keys banger generates, as used in guest file names
/// (`/etc/ssh/ssh_host_<type>_key`) and in `banger_image::SshHostKey::key_type`.
pub const HOST_KEY_TYPE: &str = "ed25519";

/// Why the user key could not be created or loaded. Every variant names the
/// file that failed.
#[derive(Debug, thiserror::Error)]
pub enum SshKeyError {
    /// Reading, writing or inspecting a file failed.
    #[error("{action} {path}")]
    Io {
        /// What was being done ("read", "create directory", ...).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The file is not an OpenSSH private or public key.
    #[error("{path} is not a valid OpenSSH key: {reason}")]
    Parse {
        /// The key file.
        path: PathBuf,
        /// What the parser said.
        reason: String,
    },
    /// The private key is protected by a passphrase.
    #[error(
        "{path} is encrypted with a passphrase; banger uses this key without a prompt, so it must be unencrypted (remove it to let banger generate a new one, or point banger at an unencrypted key)"
    )]
    Encrypted {
        /// The key file.
        path: PathBuf,
    },
    /// The private key is readable by group or others and is not ours to fix.
    #[error(
        "{path} has mode {mode:04o} and belongs to uid {owner}, not to us (uid {uid}); ssh refuses private keys readable by others: run `chmod 600` on it as its owner"
    )]
    PermissionsTooOpen {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
        /// Its owner.
        owner: u32,
        /// Our effective uid.
        uid: u32,
    },
    /// The `.pub` file holds a different key than the private key.
    #[error(
        "{public} does not match the private key {private}; delete the .pub file and banger will recreate it"
    )]
    Mismatch {
        /// The private key file.
        private: PathBuf,
        /// The public key file.
        public: PathBuf,
    },
    /// The path exists but is not a regular file.
    #[error("{path} is not a regular file")]
    NotAFile {
        /// The offending path.
        path: PathBuf,
    },
    /// Generating or encoding a key failed (no file involved).
    #[error("generating an ed25519 key failed: {reason}")]
    Generate {
        /// What the key library said.
        reason: String,
    },
}

/// The user's SSH key, ready for `ssh -i` and `authorized_keys`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserKey {
    /// The private key file (mode 0600).
    pub private_key: PathBuf,
    /// The public key as one `authorized_keys` line:
    /// `ssh-ed25519 <base64> <comment>`, no trailing newline.
    pub public_key_line: String,
}

/// The path of the public half of `private_key`: the same name plus `.pub`.
pub fn public_key_path(private_key: &Path) -> PathBuf {
    let mut name = private_key.as_os_str().to_owned();
    name.push(".pub");
    PathBuf::from(name)
}

/// Makes sure an unencrypted OpenSSH key exists at `private_key_path` and
/// returns it.
///
/// - Absent: generates an ed25519 key, writes it with mode 0600 (atomically,
///   never replacing a key another process created meanwhile) and its `.pub`
///   with 0644; the parent directory is created with 0700 if missing.
/// - Present: loads it; a passphrase-protected key is refused
///   ([`SshKeyError::Encrypted`]); group/other permission bits, which make
///   ssh refuse the key, are removed if we own the file and refused
///   otherwise; a missing `.pub` is recreated from the private key, a `.pub`
///   holding another key is refused.
pub fn ensure_user_key(private_key_path: &Path) -> Result<UserKey, SshKeyError> {
    match fs::metadata(private_key_path) {
        Ok(_) => load_user_key(private_key_path),
        Err(error) if error.kind() == io::ErrorKind::NotFound => create_user_key(private_key_path),
        Err(source) => Err(io_error("inspect", private_key_path, source)),
    }
}

fn io_error(action: &'static str, path: &Path, source: io::Error) -> SshKeyError {
    SshKeyError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

fn generate_error(error: ssh_key::Error) -> SshKeyError {
    SshKeyError::Generate {
        reason: error.to_string(),
    }
}

fn new_ed25519(comment: &str) -> Result<PrivateKey, SshKeyError> {
    let mut key = PrivateKey::random(&mut OsRng, Algorithm::Ed25519).map_err(generate_error)?;
    key.set_comment(comment);
    Ok(key)
}

fn create_user_key(path: &Path) -> Result<UserKey, SshKeyError> {
    let dir = fsutil::parent_of(path);
    fsutil::create_private_dir(dir).map_err(|source| io_error("create directory", dir, source))?;
    let key = new_ed25519(KEY_COMMENT)?;
    let private_text = key.to_openssh(LineEnding::LF).map_err(generate_error)?;
    let public_line = key.public_key().to_openssh().map_err(generate_error)?;
    match fsutil::create_atomic(path, private_text.as_bytes(), 0o600) {
        Ok(()) => {}
        // Another process created the key first: use theirs.
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
            return load_user_key(path);
        }
        Err(source) => return Err(io_error("write", path, source)),
    }
    let public_path = public_key_path(path);
    fsutil::write_atomic(&public_path, format!("{public_line}\n").as_bytes(), 0o644)
        .map_err(|source| io_error("write", &public_path, source))?;
    tracing::info!(path = %path.display(), "generated SSH user key");
    Ok(UserKey {
        private_key: path.to_owned(),
        public_key_line: public_line,
    })
}

fn load_user_key(path: &Path) -> Result<UserKey, SshKeyError> {
    let metadata = fs::metadata(path).map_err(|source| io_error("inspect", path, source))?;
    if !metadata.is_file() {
        return Err(SshKeyError::NotAFile {
            path: path.to_owned(),
        });
    }
    fix_permissions(path, &metadata)?;
    let text = fs::read(path).map_err(|source| io_error("read", path, source))?;
    let key = PrivateKey::from_openssh(&text).map_err(|error| SshKeyError::Parse {
        path: path.to_owned(),
        reason: error.to_string(),
    })?;
    if key.is_encrypted() {
        return Err(SshKeyError::Encrypted {
            path: path.to_owned(),
        });
    }
    let derived = key.public_key();
    let public_path = public_key_path(path);
    let existing = fsutil::read_optional(&public_path)
        .map_err(|source| io_error("read", &public_path, source))?;
    let public_key_line = match existing {
        Some(text) => {
            let line = text.trim();
            let public = PublicKey::from_openssh(line).map_err(|error| SshKeyError::Parse {
                path: public_path.clone(),
                reason: error.to_string(),
            })?;
            if public.key_data() != derived.key_data() {
                return Err(SshKeyError::Mismatch {
                    private: path.to_owned(),
                    public: public_path,
                });
            }
            line.to_owned()
        }
        None => {
            let line = derived.to_openssh().map_err(generate_error)?;
            fsutil::write_atomic(&public_path, format!("{line}\n").as_bytes(), 0o644)
                .map_err(|source| io_error("write", &public_path, source))?;
            tracing::info!(path = %public_path.display(), "recreated missing SSH public key");
            line
        }
    };
    Ok(UserKey {
        private_key: path.to_owned(),
        public_key_line,
    })
}

/// ssh refuses a private key that group or others can access. If it is
/// ours, tighten it to 0600; otherwise refuse with a message saying so.
fn fix_permissions(path: &Path, metadata: &std::fs::Metadata) -> Result<(), SshKeyError> {
    let mode = metadata.mode() & 0o7777;
    if mode & 0o077 == 0 {
        return Ok(());
    }
    let uid = rustix::process::geteuid().as_raw();
    if metadata.uid() != uid {
        return Err(SshKeyError::PermissionsTooOpen {
            path: path.to_owned(),
            mode,
            owner: metadata.uid(),
            uid,
        });
    }
    fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|source| io_error("chmod 600", path, source))?;
    tracing::warn!(
        path = %path.display(),
        old_mode = format!("{mode:04o}"),
        "SSH private key was accessible by group/others; changed it to 0600"
    );
    Ok(())
}

/// A freshly generated SSH host key for one VM.
///
/// It maps one-to-one onto `banger_image::guest_config::SshHostKey`
/// (banger-host does not depend on banger-image):
///
/// ```text
/// SshHostKey {
///     key_type: HOST_KEY_TYPE.to_owned(),   // "ed25519"
///     private_key: host_key.private_openssh, // OpenSSH PEM text
///     public_key: host_key.public_line,      // "ssh-ed25519 AAAA..."
/// }
/// ```
///
/// `public_line` is also what [`super::known_hosts::set_host`] pins for the
/// VM's alias.
#[derive(Clone, PartialEq, Eq)]
pub struct HostKey {
    /// The private key, OpenSSH PEM text ending in a newline.
    pub private_openssh: String,
    /// The public key line, `ssh-ed25519 <base64>` (no comment, no newline).
    pub public_line: String,
    /// The key's fingerprint as ssh prints it: `SHA256:<base64>`.
    pub fingerprint_sha256: String,
}

impl HostKey {
    /// The key type for the guest's file name: always [`HOST_KEY_TYPE`].
    pub fn key_type(&self) -> &'static str {
        HOST_KEY_TYPE
    }
}

impl std::fmt::Debug for HostKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostKey")
            .field("private_openssh", &"<redacted>")
            .field("public_line", &self.public_line)
            .field("fingerprint_sha256", &self.fingerprint_sha256)
            .finish()
    }
}

/// Generates a new ed25519 host key for a VM.
pub fn generate_host_key() -> Result<HostKey, SshKeyError> {
    let key = new_ed25519("")?;
    let private_openssh = key.to_openssh(LineEnding::LF).map_err(generate_error)?;
    let public_line = key.public_key().to_openssh().map_err(generate_error)?;
    let fingerprint_sha256 = key.fingerprint(HashAlg::Sha256).to_string();
    Ok(HostKey {
        private_openssh: private_openssh.as_str().to_owned(),
        public_line,
        fingerprint_sha256,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_key_strings_are_openssh() {
        let key = generate_host_key().expect("generate");
        assert!(
            key.private_openssh
                .starts_with("-----BEGIN OPENSSH PRIVATE KEY-----\n")
        );
        assert!(key.private_openssh.ends_with('\n'));
        assert!(key.public_line.starts_with("ssh-ed25519 "));
        assert_eq!(key.public_line.split(' ').count(), 2);
        assert!(key.fingerprint_sha256.starts_with("SHA256:"));
        assert_eq!(key.key_type(), "ed25519");
        assert!(!format!("{key:?}").contains("PRIVATE"));
    }

    #[test]
    fn public_key_path_appends_pub() {
        assert_eq!(
            public_key_path(Path::new("/a/id_ed25519")),
            PathBuf::from("/a/id_ed25519.pub")
        );
    }
}
