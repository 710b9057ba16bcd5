//! banger's own SSH server, for images that have no `sshd`.
//!
//! The initramfs starts the agent with `--ssh` when the image has no SSH
//! server (docs/boot-chain.md). It listens on TCP port 22 with the host keys
//! banger put into `/etc/ssh/ssh_host_*_key` and accepts only `root` with a
//! key listed in `/root/.ssh/authorized_keys` (both written by the initramfs
//! from the per-VM config), so the host's strict known_hosts check and
//! `vm ssh`, `vm run`, workspaces and sessions work as with OpenSSH.
//!
//! Supported: `exec` (through the user's shell, `shell -c COMMAND`, with the
//! exit status), `shell` (a login shell), `pty-req` and `window-change`,
//! `env` (only `LANG`, `LC_*` and `TERM`), stdin/stdout/stderr with EOF.
//! Not supported: port forwarding, X11, agent forwarding, subsystems (SFTP),
//! passwords and other users. Built on `russh` (pure Rust, ring crypto).

mod process;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use russh::keys::{PrivateKey, PublicKey};
use russh::server::{Auth, ChannelOpenHandle, Msg, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, MethodKind, MethodSet};
use thiserror::Error;

use process::{ChannelIo, Launch, PtySize};

/// Where banger puts the per-VM host keys (`ssh_host_<type>_key`).
pub const HOST_KEY_DIR: &str = "/etc/ssh";
/// The owner's key, written by the initramfs.
pub const AUTHORIZED_KEYS: &str = "/root/.ssh/authorized_keys";
/// The only user that may log in (banger's `SshTarget::user`).
pub const USER: &str = "root";

/// Why the SSH server could not start.
#[derive(Debug, Error)]
pub enum SshdError {
    /// The host key directory could not be read.
    #[error("cannot read the host keys in {path}")]
    KeyDir {
        /// The directory.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// No usable `ssh_host_*_key` was found.
    #[error("no usable SSH host key in {path}")]
    NoHostKey {
        /// The directory.
        path: PathBuf,
    },
    /// Binding the listening socket failed.
    #[error("cannot listen on {address}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The server stopped with an error.
    #[error("the SSH server on {address} stopped")]
    Serve {
        /// The address.
        address: SocketAddr,
        /// Underlying error.
        source: std::io::Error,
    },
}

/// Reads every private host key `ssh_host_*_key` in `dir` (unreadable or
/// malformed ones are reported on stderr and skipped).
pub fn load_host_keys(dir: &Path) -> Result<Vec<PrivateKey>, SshdError> {
    let entries = fs_err::read_dir(dir).map_err(|source| SshdError::KeyDir {
        path: dir.to_owned(),
        source,
    })?;
    let mut paths: Vec<PathBuf> = entries
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with("ssh_host_") && name.ends_with("_key"))
        })
        .collect();
    paths.sort();
    let mut keys = Vec::new();
    for path in paths {
        match fs_err::read_to_string(&path)
            .map_err(|error| error.to_string())
            .and_then(|text| PrivateKey::from_openssh(text).map_err(|error| error.to_string()))
        {
            Ok(key) => keys.push(key),
            Err(error) => eprintln!(
                "banger-vsock-agent: ssh: skipping host key {}: {error}",
                path.display()
            ),
        }
    }
    if keys.is_empty() {
        return Err(SshdError::NoHostKey {
            path: dir.to_owned(),
        });
    }
    Ok(keys)
}

/// Whether `key` is listed in the authorized_keys text (options before the
/// key type are not supported: banger writes plain lines).
pub fn is_authorized(authorized_keys: &str, key: &PublicKey) -> bool {
    authorized_keys
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| PublicKey::from_openssh(line).ok())
        .any(|listed| listed.key_data() == key.key_data())
}

/// Raised when the host keys on disk changed (a fork's new identity):
/// [`serve`] then loads them again.
static HOST_KEYS_CHANGED: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// Tells a running [`serve`] (if any) to load its host keys again; open
/// sessions continue, new connections see the new keys.
pub fn reload_host_keys() {
    HOST_KEYS_CHANGED.notify_one();
}

/// Serves SSH on `address` until the process ends. Host keys come from
/// `key_dir` (again after [`reload_host_keys`]); the authorized keys are
/// read again at every login, so a key the initramfs rewrote is picked up
/// without a restart.
pub async fn serve(
    address: SocketAddr,
    key_dir: &Path,
    authorized_keys: PathBuf,
) -> Result<(), SshdError> {
    use russh::server::Server as _;
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|source| SshdError::Bind { address, source })?;
    eprintln!("banger-vsock-agent: ssh server listening on {address}");
    loop {
        let keys = load_host_keys(key_dir)?;
        let config = russh::server::Config {
            methods: MethodSet::from(&[MethodKind::PublicKey][..]),
            auth_rejection_time: Duration::from_millis(500),
            auth_rejection_time_initial: Some(Duration::ZERO),
            keys,
            // The host's ssh sends keepalives (ServerAliveInterval); a dead
            // client is noticed by TCP.
            inactivity_timeout: None,
            nodelay: true,
            ..Default::default()
        };
        let mut server = Server {
            authorized_keys: authorized_keys.clone(),
        };
        // Connections run in tasks of their own: ending this accept loop
        // to reload the keys leaves them running.
        tokio::select! {
            served = server.run_on_socket(Arc::new(config), &listener) => {
                return served.map_err(|source| SshdError::Serve { address, source });
            }
            () = HOST_KEYS_CHANGED.notified() => {
                eprintln!("banger-vsock-agent: ssh host keys changed; reloading them");
            }
        }
    }
}

/// Makes one [`Handler`] per connection.
struct Server {
    authorized_keys: PathBuf,
}

impl russh::server::Server for Server {
    type Handler = Handler;

    fn new_client(&mut self, peer: Option<SocketAddr>) -> Handler {
        Handler {
            authorized_keys: self.authorized_keys.clone(),
            peer,
            channels: HashMap::new(),
        }
    }

    fn handle_session_error(&mut self, error: russh::Error) {
        eprintln!("banger-vsock-agent: ssh session ended: {error}");
    }
}

/// What a session channel asked for before its program starts.
#[derive(Default)]
struct PendingChannel {
    pty: Option<PtySize>,
    term: Option<String>,
    env: Vec<(String, String)>,
    /// Set once the program runs.
    io: Option<ChannelIo>,
}

/// One SSH connection.
struct Handler {
    authorized_keys: PathBuf,
    peer: Option<SocketAddr>,
    channels: HashMap<ChannelId, PendingChannel>,
}

impl Handler {
    fn key_allowed(&self, user: &str, key: &PublicKey) -> bool {
        if user != USER {
            return false;
        }
        match fs_err::read_to_string(&self.authorized_keys) {
            Ok(text) => is_authorized(&text, key),
            Err(error) => {
                eprintln!("banger-vsock-agent: ssh: {error}");
                false
            }
        }
    }

    /// Starts `command` (None: a login shell) on `channel`.
    fn launch(
        &mut self,
        channel: ChannelId,
        command: Option<String>,
        session: &mut Session,
    ) -> Result<(), russh::Error> {
        let Some(pending) = self.channels.get_mut(&channel) else {
            return session.channel_failure(channel);
        };
        if pending.io.is_some() {
            return session.channel_failure(channel);
        }
        let launch = Launch {
            command,
            pty: pending.pty,
            term: pending.term.clone(),
            env: pending.env.clone(),
            peer: self.peer,
        };
        match process::start(launch, channel, session.handle()) {
            Ok(io) => {
                pending.io = Some(io);
                session.channel_success(channel)
            }
            Err(error) => {
                eprintln!("banger-vsock-agent: ssh: cannot start the program: {error}");
                session.channel_failure(channel)
            }
        }
    }
}

impl russh::server::Handler for Handler {
    type Error = russh::Error;

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: russh::server::PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(if self.key_allowed(user, offer.public_key) {
            Auth::Accept
        } else {
            Auth::reject()
        })
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(if self.key_allowed(user, key.public_key) {
            Auth::Accept
        } else {
            Auth::reject()
        })
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.channels
            .insert(channel.id(), PendingChannel::default());
        reply.accept().await;
        Ok(())
    }

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        term: &str,
        col_width: u32,
        row_height: u32,
        pix_width: u32,
        pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        match self.channels.get_mut(&channel) {
            Some(pending) if pending.io.is_none() => {
                pending.pty = Some(PtySize::new(col_width, row_height, pix_width, pix_height));
                pending.term = Some(term.to_owned());
                session.channel_success(channel)
            }
            _ => session.channel_failure(channel),
        }
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        value: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let allowed = name == "LANG" || name == "TERM" || name.starts_with("LC_");
        match self.channels.get_mut(&channel) {
            Some(pending) if allowed && pending.io.is_none() && !value.contains('\0') => {
                pending.env.push((name.to_owned(), value.to_owned()));
                session.channel_success(channel)
            }
            _ => session.channel_failure(channel),
        }
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.launch(channel, None, session)
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        match String::from_utf8(data.to_vec()) {
            Ok(command) if !command.contains('\0') => self.launch(channel, Some(command), session),
            _ => session.channel_failure(channel),
        }
    }

    async fn data(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(io) = self.channels.get(&channel).and_then(|p| p.io.as_ref()) {
            io.stdin(data.to_vec()).await;
        }
        Ok(())
    }

    async fn channel_eof(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(io) = self.channels.get_mut(&channel).and_then(|p| p.io.as_mut()) {
            io.close_stdin();
        }
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        // Dropping the channel's IO hangs its program up (SIGHUP on a PTY,
        // EOF on stdin); the program itself is not killed, as with OpenSSH.
        self.channels.remove(&channel);
        Ok(())
    }

    async fn window_change_request(
        &mut self,
        channel: ChannelId,
        col_width: u32,
        row_height: u32,
        pix_width: u32,
        pix_height: u32,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(io) = self.channels.get(&channel).and_then(|p| p.io.as_ref()) {
            io.resize(PtySize::new(col_width, row_height, pix_width, pix_height));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHfcpz2ARlqJ3TuIWyQj8dMdff4OGsux6vdsBZjBWVyR banger";
    const OTHER: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA4APQzXf/BvvyB7Kfz5eimWDNgoZORHpCQRDQguMo1M other";

    #[test]
    fn authorized_keys_match_on_key_data_only() {
        let key = PublicKey::from_openssh(KEY).unwrap();
        let other = PublicKey::from_openssh(OTHER).unwrap();
        assert!(is_authorized(&format!("# comment\n\n{KEY}\n"), &key));
        let without_comment = KEY.rsplit_once(' ').unwrap().0;
        assert!(is_authorized(without_comment, &key));
        assert!(!is_authorized("", &key));
        assert!(!is_authorized("garbage line\n", &key));
        assert!(!is_authorized(KEY, &other));
        assert!(is_authorized(&format!("{KEY}\n{OTHER}\n"), &other));
    }

    #[test]
    fn host_keys_are_loaded_and_a_dir_without_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            load_host_keys(dir.path()),
            Err(SshdError::NoHostKey { .. })
        ));
        let status = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(dir.path().join("ssh_host_ed25519_key"))
            .status();
        if !status.is_ok_and(|status| status.success()) {
            banger_testkit::skip_or_fail("ssh-keygen is not installed");
            return;
        }
        fs_err::write(dir.path().join("ssh_host_rsa_key"), "not a key").unwrap();
        let keys = load_host_keys(dir.path()).unwrap();
        assert_eq!(keys.len(), 1);
    }
}
