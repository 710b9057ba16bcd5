//! Per-VM configuration delivered to the initramfs as a second cpio archive.
//!
//! The Linux kernel unpacks every cpio archive it finds in the initrd, one after
//! the other, into the same rootfs. So the host writes, per VM, a file made of
//! the shared (gzip'd) banger initramfs followed by a small uncompressed newc
//! archive holding `/banger/...`; `/init` reads it and writes the settings into
//! the overlay's upper layer. No DHCP server, no metadata service, no loop
//! mounts, no root needed on the host, and the base image is never written.
//!
//! Archive layout (all root-owned):
//! - `banger/config` (0600): `key=value` lines, parsed by `/init` line by line
//!   (never sourced): `version`, `hostname`, `ip` (`addr/prefix`), `gateway`,
//!   `dns` (space-separated), `mac`, `iface`, `mtu`;
//! - `banger/authorized_keys` (0600) -> `/root/.ssh/authorized_keys`;
//! - `banger/ssh/ssh_host_<type>_key` (0600) and `.pub` (0644) -> `/etc/ssh/`;
//! - `banger/agent` (0755) -> `/usr/local/bin/banger-vsock-agent`;
//! - `banger/auth/<id>` (0600) -> the credential file's path under `/root`
//!   (see [`crate::auth_files`]).
//!
//! The daemon puts the agent in a cached base with the initramfs instead
//! ([`crate::initrd_base`]), so a start writes only the small rest.
//!
//! Every value is validated here, because `/init` runs as PID 1 with no
//! further checks: a newline smuggled into a hostname would add a config line.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::auth_files::AuthFile;
use crate::cpio::{CpioError, CpioWriter};

/// Format version written as `version=` in `banger/config`.
pub const CONFIG_VERSION: u32 = 1;

/// Why a config archive could not be produced.
#[derive(Debug, Error)]
pub enum GuestConfigError {
    /// A field has a value `/init` cannot safely use.
    #[error("invalid guest config field {field}: {reason}")]
    Invalid {
        /// Field name.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// Reading the initramfs or writing the initrd failed.
    #[error("{path}")]
    Io {
        /// File that failed.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// Writing the archive failed.
    #[error(transparent)]
    Cpio(#[from] CpioError),
}

impl GuestConfigError {
    /// Wraps an IO error on `path` (for `map_err`).
    pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Self + use<> {
        let path = path.to_owned();
        move |source| Self::Io { path, source }
    }
}

/// Static IPv4 configuration, applied by `/init` with busybox `ip`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkConfig {
    /// Guest address.
    pub address: Ipv4Addr,
    /// Prefix length (e.g. 24).
    pub prefix_len: u8,
    /// Default gateway, if any.
    pub gateway: Option<Ipv4Addr>,
    /// Nameservers for `/etc/resolv.conf` (empty: leave the image's file alone).
    pub dns: Vec<IpAddr>,
    /// MAC of the interface to configure (`aa:bb:cc:dd:ee:ff`); when None,
    /// `iface` (default `eth0`) is used.
    pub mac: Option<String>,
    /// Interface name used when `mac` is None.
    pub iface: Option<String>,
    /// MTU to set, if any.
    pub mtu: Option<u32>,
}

/// An SSH host key pair in OpenSSH format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshHostKey {
    /// Key type as used in the file name: `ed25519`, `ecdsa`, `rsa`.
    pub key_type: String,
    /// Private key (OpenSSH PEM text).
    pub private_key: String,
    /// Public key line.
    pub public_key: String,
}

/// Everything `/init` applies to one VM.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GuestConfig {
    /// Hostname (RFC 1123: dot-separated labels of `[a-z0-9-]`).
    pub hostname: String,
    /// Static network config; None leaves networking to the image.
    pub network: Option<NetworkConfig>,
    /// Lines for root's `authorized_keys`; empty writes no file.
    pub authorized_keys: Vec<String>,
    /// Host keys installed into `/etc/ssh`.
    pub ssh_host_keys: Vec<SshHostKey>,
    /// The guest agent binary, installed as `/usr/local/bin/banger-vsock-agent`.
    pub agent: Option<Vec<u8>>,
    /// Coding-agent credentials copied from the owner's home.
    pub auth_files: Vec<AuthFile>,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> GuestConfigError {
    GuestConfigError::Invalid {
        field,
        reason: reason.into(),
    }
}

/// Checks a hostname: 1..=253 chars, labels of 1..=63 `[A-Za-z0-9-]` not
/// starting or ending with `-`.
pub fn validate_hostname(name: &str) -> Result<(), GuestConfigError> {
    if name.is_empty() || name.len() > 253 {
        return Err(invalid(
            "hostname",
            format!("{name:?} must be 1 to 253 characters"),
        ));
    }
    for label in name.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !ok {
            return Err(invalid(
                "hostname",
                format!("{name:?} is not a valid hostname"),
            ));
        }
    }
    Ok(())
}

fn validate_mac(mac: &str) -> Result<(), GuestConfigError> {
    let parts: Vec<_> = mac.split(':').collect();
    let ok = parts.len() == 6
        && parts.iter().all(|p| {
            p.len() == 2
                && p.chars()
                    .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
        });
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "network.mac",
            format!("{mac:?} must be lowercase aa:bb:cc:dd:ee:ff"),
        ))
    }
}

fn single_line(field: &'static str, value: &str) -> Result<(), GuestConfigError> {
    if value.contains(['\n', '\r', '\0']) {
        return Err(invalid(field, "must be a single line"));
    }
    Ok(())
}

impl GuestConfig {
    /// Validates every field (see the module docs for why).
    pub fn validate(&self) -> Result<(), GuestConfigError> {
        validate_hostname(&self.hostname)?;
        if let Some(net) = &self.network {
            if net.prefix_len > 32 {
                return Err(invalid(
                    "network.prefix_len",
                    format!("{} is above 32", net.prefix_len),
                ));
            }
            if let Some(mac) = &net.mac {
                validate_mac(mac)?;
            }
            if let Some(iface) = &net.iface {
                let ok = !iface.is_empty()
                    && iface.len() < 16
                    && iface
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
                if !ok {
                    return Err(invalid(
                        "network.iface",
                        format!("{iface:?} is not an interface name"),
                    ));
                }
            }
            if net.mtu.is_some_and(|m| !(68..=65535).contains(&m)) {
                return Err(invalid("network.mtu", "must be between 68 and 65535"));
            }
        }
        for key in &self.authorized_keys {
            single_line("authorized_keys", key)?;
            if key.trim().is_empty() {
                return Err(invalid("authorized_keys", "empty key line"));
            }
        }
        for key in &self.ssh_host_keys {
            let ok = !key.key_type.is_empty()
                && key
                    .key_type
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
            if !ok {
                return Err(invalid(
                    "ssh_host_keys.key_type",
                    format!("{:?} is not a key type", key.key_type),
                ));
            }
            single_line("ssh_host_keys.public_key", key.public_key.trim_end())?;
            if key.private_key.contains('\0') {
                return Err(invalid("ssh_host_keys.private_key", "contains NUL"));
            }
        }
        Ok(())
    }

    /// The text of `banger/config`.
    pub fn config_text(&self) -> String {
        let mut out = format!("version={CONFIG_VERSION}\nhostname={}\n", self.hostname);
        if let Some(net) = &self.network {
            out.push_str(&format!("ip={}/{}\n", net.address, net.prefix_len));
            if let Some(gw) = net.gateway {
                out.push_str(&format!("gateway={gw}\n"));
            }
            if !net.dns.is_empty() {
                let dns: Vec<String> = net.dns.iter().map(ToString::to_string).collect();
                out.push_str(&format!("dns={}\n", dns.join(" ")));
            }
            if let Some(mac) = &net.mac {
                out.push_str(&format!("mac={mac}\n"));
            }
            if let Some(iface) = &net.iface {
                out.push_str(&format!("iface={iface}\n"));
            }
            if let Some(mtu) = net.mtu {
                out.push_str(&format!("mtu={mtu}\n"));
            }
        }
        out
    }

    /// Writes the uncompressed newc config archive into `out`.
    pub fn write_archive<W: Write>(&self, out: W) -> Result<W, GuestConfigError> {
        self.validate()?;
        let mut w = CpioWriter::new(out);
        w.dir("banger", 0o700)?;
        w.file("banger/config", 0o600, self.config_text().as_bytes())?;
        if !self.authorized_keys.is_empty() {
            let mut keys = self.authorized_keys.join("\n");
            keys.push('\n');
            w.file("banger/authorized_keys", 0o600, keys.as_bytes())?;
        }
        if !self.ssh_host_keys.is_empty() {
            w.dir("banger/ssh", 0o700)?;
            for key in &self.ssh_host_keys {
                let base = format!("banger/ssh/ssh_host_{}_key", key.key_type);
                let mut private = key.private_key.clone();
                if !private.ends_with('\n') {
                    private.push('\n');
                }
                w.file(&base, 0o600, private.as_bytes())?;
                w.file(
                    &format!("{base}.pub"),
                    0o644,
                    format!("{}\n", key.public_key.trim_end()).as_bytes(),
                )?;
            }
        }
        if let Some(agent) = &self.agent {
            w.file("banger/agent", 0o755, agent)?;
        }
        if !self.auth_files.is_empty() {
            w.dir("banger/auth", 0o700)?;
            for file in &self.auth_files {
                w.file(
                    &format!("banger/auth/{}", file.kind.archive_id()),
                    0o600,
                    &file.contents,
                )?;
            }
        }
        Ok(w.finish()?)
    }

    /// Returns the config archive as bytes.
    pub fn archive(&self) -> Result<Vec<u8>, GuestConfigError> {
        self.write_archive(Vec::new())
    }
}

/// Writes the initrd for one VM to `out`: the shared initramfs at `initramfs`,
/// zero-padded to a 4-byte boundary (the kernel skips NUL padding between
/// archives but expects each to start aligned), followed by the config archive.
/// Written to a temporary file and renamed, so a VM never boots a partial file.
pub fn write_vm_initrd(
    initramfs: &Path,
    config: &GuestConfig,
    out: &Path,
) -> Result<(), GuestConfigError> {
    let io = GuestConfigError::io;
    let archive = config.archive()?;
    let mut data = fs_err::read(initramfs).map_err(io(initramfs))?;
    data.resize(data.len().div_ceil(4) * 4, 0);
    data.extend_from_slice(&archive);
    let tmp = out.with_extension("tmp");
    {
        let mut f = fs_err::File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(&data).map_err(io(&tmp))?;
        // Config holds private keys: keep the initrd owner-only.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            f.set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(io(&tmp))?;
        }
    }
    fs_err::rename(&tmp, out).map_err(io(out))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpio::parse;

    fn sample() -> GuestConfig {
        GuestConfig {
            hostname: "dev-1".into(),
            network: Some(NetworkConfig {
                address: Ipv4Addr::new(172, 30, 0, 2),
                prefix_len: 24,
                gateway: Some(Ipv4Addr::new(172, 30, 0, 1)),
                dns: vec![
                    "172.30.0.1".parse().unwrap(),
                    "2001:db8::1".parse().unwrap(),
                ],
                mac: Some("02:fc:ac:1e:00:02".into()),
                iface: None,
                mtu: Some(1500),
            }),
            authorized_keys: vec!["ssh-ed25519 AAAA user@host".into()],
            ssh_host_keys: vec![SshHostKey {
                key_type: "ed25519".into(),
                private_key:
                    "-----BEGIN OPENSSH PRIVATE KEY-----\nxx\n-----END OPENSSH PRIVATE KEY-----"
                        .into(),
                public_key: "ssh-ed25519 BBBB root@dev-1".into(),
            }],
            agent: Some(b"\x7fELFagent".to_vec()),
            auth_files: vec![AuthFile {
                kind: crate::auth_files::AuthFileKind::Pi,
                contents: b"{}".to_vec(),
            }],
        }
    }

    #[test]
    fn config_text_is_key_value() {
        assert_eq!(
            sample().config_text(),
            "version=1\nhostname=dev-1\nip=172.30.0.2/24\ngateway=172.30.0.1\n\
             dns=172.30.0.1 2001:db8::1\nmac=02:fc:ac:1e:00:02\nmtu=1500\n"
        );
    }

    #[test]
    fn archive_layout_and_modes() {
        let entries = parse(&sample().archive().unwrap());
        let names: Vec<_> = entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "banger",
                "banger/config",
                "banger/authorized_keys",
                "banger/ssh",
                "banger/ssh/ssh_host_ed25519_key",
                "banger/ssh/ssh_host_ed25519_key.pub",
                "banger/agent",
                "banger/auth",
                "banger/auth/pi"
            ]
        );
        assert_eq!(entries[7].mode & 0o777, 0o700);
        assert_eq!(entries[8].mode & 0o777, 0o600);
        assert_eq!(entries[4].mode & 0o777, 0o600);
        assert!(entries[4].data.ends_with(b"KEY-----\n"));
        assert_eq!(entries[5].mode & 0o777, 0o644);
        assert_eq!(entries[6].mode & 0o777, 0o755);
    }

    #[test]
    fn rejects_injection_and_bad_values() {
        let mut c = sample();
        c.hostname = "a\nip=1.2.3.4/8".into();
        assert!(c.archive().is_err());
        for bad in ["", "-x", "a..b", "x_y", &"a".repeat(64)] {
            assert!(validate_hostname(bad).is_err(), "{bad}");
        }
        let mut c = sample();
        c.authorized_keys = vec!["ssh-ed25519 A\nssh-rsa B".into()];
        assert!(c.archive().is_err());
        let mut c = sample();
        c.network.as_mut().unwrap().mac = Some("02:FC:zz:1e:00:02".into());
        let err = c.archive().unwrap_err();
        assert!(err.to_string().contains("network.mac"), "{err}");
        let mut c = sample();
        c.ssh_host_keys[0].key_type = "../x".into();
        assert!(c.archive().is_err());
    }

    #[test]
    fn combined_initrd_is_aligned_concatenation() {
        let dir = tempfile::tempdir().unwrap();
        let initramfs = dir.path().join("initramfs.img");
        fs_err::write(&initramfs, b"GZIPDATA!").unwrap(); // 9 bytes, not aligned
        let out = dir.path().join("vm.initrd");
        let cfg = GuestConfig {
            hostname: "vm".into(),
            ..GuestConfig::default()
        };
        write_vm_initrd(&initramfs, &cfg, &out).unwrap();
        let data = fs_err::read(&out).unwrap();
        assert_eq!(&data[..9], b"GZIPDATA!");
        assert_eq!(&data[9..12], &[0, 0, 0]);
        let entries = parse(&data[12..]);
        assert_eq!(entries[1].data, b"version=1\nhostname=vm\n");
    }
}
