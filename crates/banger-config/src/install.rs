//! The system install's metadata: who owns this banger, where its binaries
//! are and which network the root helper may touch.
//!
//! `sudo banger system install` writes it (root-owned, mode 0644, in a
//! root-owned directory); `bangerd-root` reads it at start and trusts nothing
//! else: the owner uid it accepts, the bridge it may create and the ranges a
//! guest network may use all come from here, never from a request. The
//! daemon and the CLI read it to find the helper's socket and to say what is
//! installed. A file that the owner (or anyone but root) could have written
//! is refused: otherwise the owner could widen what root does for them.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use crate::config::Ipv4Cidr;

/// Where the install metadata lives.
pub const INSTALL_METADATA_PATH: &str = "/etc/banger/install.toml";

/// Overrides [`INSTALL_METADATA_PATH`] (tests, and installs elsewhere).
pub const INSTALL_METADATA_ENV: &str = "BANGER_INSTALL_METADATA";

/// Where the install metadata is looked for: `$BANGER_INSTALL_METADATA`,
/// else [`INSTALL_METADATA_PATH`].
pub fn metadata_path() -> PathBuf {
    std::env::var_os(INSTALL_METADATA_ENV)
        .filter(|value| !value.is_empty())
        .map_or_else(|| PathBuf::from(INSTALL_METADATA_PATH), PathBuf::from)
}

/// The root helper's socket.
pub const ROOT_SOCKET_PATH: &str = "/run/banger/root.sock";

/// Largest metadata file read (it is a few hundred bytes).
const MAX_METADATA_BYTES: u64 = 64 << 10;

/// What `banger system install` recorded.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstallMetadata {
    /// The banger version installed.
    pub version: String,
    /// The only uid `bangerd-root` serves.
    pub owner_uid: u32,
    /// The owner's primary gid.
    pub owner_gid: u32,
    /// The owner's login name.
    pub owner_name: String,
    /// The owner's home directory (their config, state and keys live under it).
    pub owner_home: PathBuf,
    /// Where `banger`, `bangerd` and `bangerd-root` were installed.
    pub bin_dir: PathBuf,
    /// Where the guest agent and other support files were installed.
    pub lib_dir: PathBuf,
    /// The helper's socket.
    pub root_socket: PathBuf,
    /// The only bridge the helper creates, configures or deletes.
    pub bridge_name: String,
    /// Guest networks (and the bridge address) must lie inside one of these.
    #[serde(serialize_with = "cidrs_as_text")]
    pub allowed_cidrs: Vec<Ipv4Cidr>,
    /// Whether systemd units were installed (else the helper was started
    /// another way; see docs/privileges.md).
    pub systemd: bool,
    /// Shell completions and man pages installed (paths as the system sees
    /// them); `banger system uninstall` removes exactly these. Absent in
    /// metadata written before they were installed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shell_files: Vec<PathBuf>,
}

/// Writes networks as `"172.30.0.0/24"` strings, the form they are read in.
fn cidrs_as_text<S: serde::Serializer>(
    cidrs: &[Ipv4Cidr],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(cidrs.iter().map(ToString::to_string))
}

/// Reading or checking the install metadata failed.
#[derive(Debug, thiserror::Error)]
pub enum InstallMetadataError {
    /// There is no metadata: banger is not installed system-wide.
    #[error(
        "{path} does not exist: banger is not installed system-wide (run `sudo banger system install`)"
    )]
    NotInstalled {
        /// The metadata path.
        path: PathBuf,
    },
    /// Opening or reading the file failed.
    #[error("cannot read {path}")]
    Read {
        /// The metadata path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not something root may trust.
    #[error(
        "{path} is {problem}; it must be a regular file owned by root and writable only by root (re-run `sudo banger system install`)"
    )]
    Untrusted {
        /// The metadata path.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// The contents are not valid metadata.
    #[error("{path} is not valid install metadata (re-run `sudo banger system install`)")]
    Parse {
        /// The metadata path.
        path: PathBuf,
        /// The parser's complaint.
        #[source]
        source: toml::de::Error,
    },
    /// A value is out of range.
    #[error("{path}: {key} = {value} is not allowed: {expected}")]
    Invalid {
        /// The metadata path.
        path: PathBuf,
        /// The key.
        key: &'static str,
        /// Its value.
        value: String,
        /// What is allowed.
        expected: &'static str,
    },
}

impl InstallMetadata {
    /// Reads and checks the metadata at `path`: a regular file (no link
    /// followed), owned by `trusted_uid` (root, except in tests), neither
    /// group- nor other-writable, at most 64 KiB, every value in range.
    pub fn load(path: &Path, trusted_uid: u32) -> Result<Self, InstallMetadataError> {
        use rustix::fs::{Mode, OFlags};
        let read_error = |source: std::io::Error| InstallMetadataError::Read {
            path: path.to_owned(),
            source,
        };
        let untrusted = |problem: String| InstallMetadataError::Untrusted {
            path: path.to_owned(),
            problem,
        };
        let fd = match rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) => {
                return Err(InstallMetadataError::NotInstalled {
                    path: path.to_owned(),
                });
            }
            Err(rustix::io::Errno::LOOP) => return Err(untrusted("a symbolic link".into())),
            Err(errno) => return Err(read_error(errno.into())),
        };
        let stat = rustix::fs::fstat(&fd).map_err(|errno| read_error(errno.into()))?;
        let kind = rustix::fs::FileType::from_raw_mode(stat.st_mode);
        if kind != rustix::fs::FileType::RegularFile {
            return Err(untrusted(format!("not a regular file ({kind:?})")));
        }
        if stat.st_uid != trusted_uid {
            return Err(untrusted(format!("owned by uid {}", stat.st_uid)));
        }
        if stat.st_mode & 0o022 != 0 {
            return Err(untrusted(format!(
                "writable by group or others (mode {:o})",
                stat.st_mode & 0o7777
            )));
        }
        if stat.st_size as u64 > MAX_METADATA_BYTES {
            return Err(untrusted(format!("larger than {MAX_METADATA_BYTES} bytes")));
        }
        let mut bytes = vec![0; MAX_METADATA_BYTES as usize + 1];
        let mut filled = 0;
        while filled < bytes.len() {
            match rustix::io::read(&fd, &mut bytes[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(rustix::io::Errno::INTR) => continue,
                Err(errno) => return Err(read_error(errno.into())),
            }
        }
        if filled as u64 > MAX_METADATA_BYTES {
            return Err(untrusted(format!("larger than {MAX_METADATA_BYTES} bytes")));
        }
        bytes.truncate(filled);
        let text = String::from_utf8(bytes).map_err(|_| untrusted("not UTF-8 text".into()))?;
        Self::parse(path, &text)
    }

    /// Parses and checks metadata text (`path` only names it in errors).
    pub fn parse(path: &Path, text: &str) -> Result<Self, InstallMetadataError> {
        let metadata: Self =
            toml::from_str(text).map_err(|source| InstallMetadataError::Parse {
                path: path.to_owned(),
                source,
            })?;
        metadata.validate(path)?;
        Ok(metadata)
    }

    /// The metadata as the TOML text [`InstallMetadata::parse`] reads.
    pub fn to_toml(&self) -> Result<String, toml::ser::Error> {
        let body = toml::to_string(self)?;
        Ok(format!(
            "# Written by `banger system install`; read by bangerd-root. Do not edit:\n# re-run the install to change it.\n{body}"
        ))
    }

    /// Whether `cidr` lies inside one of the allowed ranges.
    pub fn allows_cidr(&self, cidr: &Ipv4Cidr) -> bool {
        self.allowed_cidrs
            .iter()
            .any(|allowed| allowed.contains_network(cidr))
    }

    /// Whether `address` is a host address inside one of the allowed ranges.
    pub fn allows_address(&self, address: Ipv4Addr) -> bool {
        self.allowed_cidrs
            .iter()
            .any(|allowed| allowed.contains_host(address))
    }

    fn validate(&self, path: &Path) -> Result<(), InstallMetadataError> {
        let invalid = |key: &'static str, value: String, expected: &'static str| {
            Err(InstallMetadataError::Invalid {
                path: path.to_owned(),
                key,
                value,
                expected,
            })
        };
        if self.owner_uid == 0 {
            return invalid(
                "owner_uid",
                "0".into(),
                "a non-root user (root runs bangerd without the helper)",
            );
        }
        let name_ok = (1..=32).contains(&self.owner_name.len())
            && self
                .owner_name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if !name_ok {
            return invalid(
                "owner_name",
                format!("{:?}", self.owner_name),
                "a login name",
            );
        }
        for (key, dir) in [
            ("owner_home", &self.owner_home),
            ("bin_dir", &self.bin_dir),
            ("lib_dir", &self.lib_dir),
            ("root_socket", &self.root_socket),
        ] {
            if !dir.is_absolute() {
                return invalid(key, dir.display().to_string(), "an absolute path");
            }
        }
        let bridge_ok = (1..=15).contains(&self.bridge_name.len())
            && self
                .bridge_name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'));
        if !bridge_ok {
            return invalid(
                "bridge_name",
                format!("{:?}", self.bridge_name),
                "an interface name of 1-15 letters, digits, - and _",
            );
        }
        if self.allowed_cidrs.is_empty() {
            return invalid("allowed_cidrs", "[]".into(), "at least one network");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> InstallMetadata {
        InstallMetadata {
            version: "0.1.0".into(),
            owner_uid: 1000,
            owner_gid: 1000,
            owner_name: "dev".into(),
            owner_home: "/home/dev".into(),
            bin_dir: "/usr/local/bin".into(),
            lib_dir: "/usr/local/lib/banger".into(),
            root_socket: ROOT_SOCKET_PATH.into(),
            bridge_name: "banger0".into(),
            allowed_cidrs: vec!["172.30.0.0/24".parse().unwrap()],
            systemd: true,
            shell_files: Vec::new(),
        }
    }

    #[test]
    fn metadata_round_trips_through_toml() {
        let metadata = sample();
        let text = metadata.to_toml().unwrap();
        assert_eq!(
            InstallMetadata::parse(Path::new("x"), &text).unwrap(),
            metadata
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        let text = sample().to_toml().unwrap();
        let extra = format!("{text}\nsurprise = 1\n");
        assert!(matches!(
            InstallMetadata::parse(Path::new("x"), &extra),
            Err(InstallMetadataError::Parse { .. })
        ));
        let root = text.replace("owner_uid = 1000", "owner_uid = 0");
        assert!(matches!(
            InstallMetadata::parse(Path::new("x"), &root),
            Err(InstallMetadataError::Invalid {
                key: "owner_uid",
                ..
            })
        ));
        let bridge = text.replace("\"banger0\"", "\"bad name\"");
        assert!(matches!(
            InstallMetadata::parse(Path::new("x"), &bridge),
            Err(InstallMetadataError::Invalid {
                key: "bridge_name",
                ..
            })
        ));
        let cidr = text.replace("172.30.0.0/24", "172.30.0.1/24");
        assert!(matches!(
            InstallMetadata::parse(Path::new("x"), &cidr),
            Err(InstallMetadataError::Parse { .. })
        ));
    }

    #[test]
    fn allowed_ranges_contain_only_their_subnets() {
        let metadata = sample();
        assert!(metadata.allows_cidr(&"172.30.0.0/24".parse().unwrap()));
        assert!(metadata.allows_cidr(&"172.30.0.128/25".parse().unwrap()));
        assert!(!metadata.allows_cidr(&"172.30.0.0/16".parse().unwrap()));
        assert!(!metadata.allows_cidr(&"10.0.0.0/24".parse().unwrap()));
        assert!(metadata.allows_address("172.30.0.1".parse().unwrap()));
        assert!(!metadata.allows_address("172.30.0.255".parse().unwrap()));
        assert!(!metadata.allows_address("8.8.8.8".parse().unwrap()));
    }

    #[test]
    fn load_refuses_links_fifos_foreign_owners_and_loose_modes() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let me = rustix::process::geteuid().as_raw();
        let good = dir.path().join("install.toml");
        fs_err::write(&good, sample().to_toml().unwrap()).unwrap();
        fs_err::set_permissions(&good, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(InstallMetadata::load(&good, me).unwrap(), sample());
        assert!(matches!(
            InstallMetadata::load(&good, me + 1),
            Err(InstallMetadataError::Untrusted { .. })
        ));
        fs_err::set_permissions(&good, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert!(matches!(
            InstallMetadata::load(&good, me),
            Err(InstallMetadataError::Untrusted { .. })
        ));
        let link = dir.path().join("link.toml");
        fs_err::os::unix::fs::symlink(&good, &link).unwrap();
        assert!(matches!(
            InstallMetadata::load(&link, me),
            Err(InstallMetadataError::Untrusted { .. })
        ));
        let fifo = dir.path().join("fifo.toml");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        assert!(matches!(
            InstallMetadata::load(&fifo, me),
            Err(InstallMetadataError::Untrusted { .. })
        ));
        assert!(matches!(
            InstallMetadata::load(&dir.path().join("missing"), me),
            Err(InstallMetadataError::NotInstalled { .. })
        ));
    }
}
