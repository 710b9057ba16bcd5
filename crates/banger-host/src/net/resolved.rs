//! Host resolver integration: making `.vm` names resolve for every program.
//!
//! Where systemd-resolved runs, banger gives the bridge link a DNS server
//! (banger's own) and the routing-only domain `~vm`, so resolved sends
//! exactly the `.vm` questions there and nothing else. This goes through
//! `resolvectl`: it is the supported interface, this is not a hot path, and
//! its error messages (polkit, unknown link) are already good ones.
//!
//! Where resolved does not run, [`manual_instructions`] says how to wire
//! `.vm` into dnsmasq or unbound by hand; `banger doctor` prints it.
//!
//! Link settings made with `resolvectl` are runtime state: they vanish when
//! the link is deleted or resolved restarts, so the daemon applies them each
//! time it creates the bridge.

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};

/// The routing-only domain set on the link: `~` means "send these names
/// here" without also adding `vm` to the search list.
pub const ROUTING_DOMAIN: &str = "~vm";

/// The first systemd version whose `DNS=`/`resolvectl dns` accept
/// `ADDRESS:PORT` (systemd 246 NEWS). Older ones only talk to port 53.
pub const PORT_SUPPORT_SINCE: u32 = 246;

/// The last systemd version known to route a link's queries to a loopback
/// server out of that link (systemd issue #25397, fixed after 252).
pub const LOOPBACK_LINK_SERVER_BROKEN_UNTIL: u32 = 252;

/// resolved's runtime directory, relative to the filesystem root.
const RUNTIME_DIR: &str = "run/systemd/resolve";

/// resolved's varlink socket (systemd 246+); a successful connect means the
/// daemon runs right now, unlike the directory, which can outlive it.
const VARLINK_SOCKET: &str = "run/systemd/resolve/io.systemd.Resolve";

/// Errors of the resolved integration.
#[derive(Debug, thiserror::Error)]
pub enum ResolvedError {
    /// `resolvectl` could not be started.
    #[error("cannot run {program}")]
    Spawn {
        /// The program that failed to start.
        program: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// `resolvectl` ran and failed (unknown link, polkit refused...).
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        /// The command line, for the user to retry by hand.
        command: String,
        /// Its exit status.
        status: ExitStatus,
        /// What it said on stderr, trimmed.
        stderr: String,
    },
    /// `resolvectl --version` printed something unexpected.
    #[error("cannot read the systemd version from `{program} --version`: {output:?}")]
    Version {
        /// The program asked.
        program: PathBuf,
        /// Its first line of output.
        output: String,
    },
    /// This resolved cannot reach a DNS server on a port other than 53.
    #[error(
        "systemd-resolved {version} cannot use DNS server {server} for link {link}: ports \
         other than 53 need systemd {PORT_SUPPORT_SINCE}; serve DNS on {ip}:53 instead \
         (needs root or CAP_NET_BIND_SERVICE)",
        ip = server.ip()
    )]
    PortUnsupported {
        /// The link being configured.
        link: String,
        /// The server asked for.
        server: SocketAddr,
        /// resolved's version.
        version: u32,
    },
    /// The link name cannot be an interface name.
    #[error("invalid link name {link:?}")]
    InvalidLink {
        /// The rejected name.
        link: String,
    },
}

/// How `.vm` names can reach every program on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Integration {
    /// systemd-resolved runs: [`Resolvectl::configure_link`] does it.
    Resolved {
        /// The `resolvectl` found on `PATH`.
        resolvectl: PathBuf,
        /// Whether `/etc/resolv.conf` points at resolved's stub (127.0.0.53),
        /// so programs that read it rather than use NSS are covered too.
        stub_resolv_conf: bool,
    },
    /// resolved is absent: integrate by hand ([`manual_instructions`]).
    Manual {
        /// Why resolved cannot be used, for `banger doctor`.
        reason: String,
    },
}

/// Finds out whether systemd-resolved runs on this host.
pub fn detect() -> Integration {
    detect_in(Path::new("/"), std::env::var_os("PATH").as_deref())
}

/// [`detect`] against another filesystem root and `PATH` (for tests).
pub fn detect_in(root: &Path, path_var: Option<&OsStr>) -> Integration {
    let Some(resolvectl) = find_program("resolvectl", path_var) else {
        return Integration::Manual {
            reason: "resolvectl is not installed (systemd-resolved absent)".into(),
        };
    };
    let running = if root.join(VARLINK_SOCKET).exists() {
        std::os::unix::net::UnixStream::connect(root.join(VARLINK_SOCKET)).is_ok()
    } else {
        // systemd before 246 has no varlink socket; its runtime directory
        // plus a working `resolvectl status` (which asks over D-Bus) will do.
        root.join(RUNTIME_DIR).is_dir()
            && Command::new(&resolvectl)
                .args(["--no-pager", "status"])
                .output()
                .is_ok_and(|out| out.status.success())
    };
    if !running {
        return Integration::Manual {
            reason: "systemd-resolved is installed but not running".into(),
        };
    }
    let stub_resolv_conf = fs_err::read_to_string(root.join("etc/resolv.conf"))
        .is_ok_and(|text| resolv_conf_uses_stub(&text));
    Integration::Resolved {
        resolvectl,
        stub_resolv_conf,
    }
}

/// Whether a resolv.conf sends queries to resolved's stub listener.
fn resolv_conf_uses_stub(text: &str) -> bool {
    text.lines()
        .filter_map(|line| line.trim().strip_prefix("nameserver"))
        .any(|rest| matches!(rest.trim(), "127.0.0.53" | "127.0.0.54"))
}

/// The first executable `name` in `PATH`.
fn find_program(name: &str, path_var: Option<&OsStr>) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    std::env::split_paths(path_var?)
        .map(|dir| dir.join(name))
        .find(|path| {
            path.metadata()
                .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        })
}

/// What [`Resolvectl::configure_link`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkConfig {
    /// The link configured (banger's bridge).
    pub link: String,
    /// The DNS server given to the link.
    pub server: SocketAddr,
    /// The routing domain set ([`ROUTING_DOMAIN`]).
    pub domain: String,
    /// The commands run, in order, as the user would type them.
    pub commands: Vec<String>,
    /// Non-fatal problems (an old resolved without `default-route`).
    pub warnings: Vec<String>,
}

/// A `resolvectl` binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolvectl {
    program: PathBuf,
}

impl Resolvectl {
    /// The `resolvectl` on `PATH`, if any.
    pub fn find() -> Option<Self> {
        find_program("resolvectl", std::env::var_os("PATH").as_deref()).map(Self::at)
    }

    /// A specific program (tests use a fake one).
    pub fn at(program: impl Into<PathBuf>) -> Self {
        Self {
            program: program.into(),
        }
    }

    /// The program run.
    pub fn program(&self) -> &Path {
        &self.program
    }

    /// The systemd version, from `resolvectl --version` (`systemd 252 (...)`).
    pub fn version(&self) -> Result<u32, ResolvedError> {
        let out = self.run(&["--version"])?;
        let first = out.lines().next().unwrap_or_default();
        first
            .strip_prefix("systemd ")
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| ResolvedError::Version {
                program: self.program.clone(),
                output: first.to_owned(),
            })
    }

    /// Sends `.vm` questions from the whole host to `server` through
    /// `link`: `resolvectl dns LINK SERVER`, `resolvectl domain LINK ~vm`
    /// and `resolvectl default-route LINK false` (so nothing else is asked
    /// there). Needs root or polkit's permission.
    ///
    /// Prefer an address on `link` itself (the bridge IP): resolved sends a
    /// link's queries out of that link, and up to systemd 252 that breaks a
    /// per-link server on 127.0.0.1 (systemd issue #25397). Ports other than
    /// 53 need systemd 246 ([`ResolvedError::PortUnsupported`]).
    pub fn configure_link(
        &self,
        link: &str,
        server: SocketAddr,
    ) -> Result<LinkConfig, ResolvedError> {
        validate_link(link)?;
        let mut config = LinkConfig {
            link: link.to_owned(),
            server,
            domain: ROUTING_DOMAIN.to_owned(),
            commands: Vec::new(),
            warnings: Vec::new(),
        };
        // The version only matters for a non-53 port or a loopback server;
        // the common bridge-IP:53 case does not need to ask.
        if server.port() != 53 || server.ip().is_loopback() {
            let version = self.version()?;
            if server.port() != 53 && version < PORT_SUPPORT_SINCE {
                return Err(ResolvedError::PortUnsupported {
                    link: link.to_owned(),
                    server,
                    version,
                });
            }
            if server.ip().is_loopback() && version <= LOOPBACK_LINK_SERVER_BROKEN_UNTIL {
                config.warnings.push(format!(
                    "systemd {version} sends {link}'s queries out of {link}, so a \
                     per-link server on loopback ({server}) may time out (systemd \
                     issue #25397); use an address on {link} instead"
                ));
            }
        }
        let dns = server_arg(server);
        for args in [["dns", link, &dns], ["domain", link, ROUTING_DOMAIN]] {
            self.run(&args)?;
            config.commands.push(self.command_line(&args));
        }
        // `default-route` exists since systemd 240; without it, the
        // routing-only domain already keeps other names off the link on
        // most versions, so a failure is worth a warning, not an error.
        let args = ["default-route", link, "false"];
        match self.run(&args) {
            Ok(_) => config.commands.push(self.command_line(&args)),
            Err(error) => config.warnings.push(error.to_string()),
        }
        tracing::info!(link, %server, "systemd-resolved routes .vm to banger");
        Ok(config)
    }

    /// Drops every per-link setting of `link` (`resolvectl revert LINK`).
    pub fn revert_link(&self, link: &str) -> Result<(), ResolvedError> {
        validate_link(link)?;
        self.run(&["revert", link]).map(drop)
    }

    fn command_line(&self, args: &[&str]) -> String {
        let mut line = self.program.display().to_string();
        for arg in args {
            line.push(' ');
            line.push_str(arg);
        }
        line
    }

    /// Runs the program and returns its stdout.
    fn run(&self, args: &[&str]) -> Result<String, ResolvedError> {
        let out = Command::new(&self.program)
            .args(args)
            .output()
            .map_err(|source| ResolvedError::Spawn {
                program: self.program.clone(),
                source,
            })?;
        if !out.status.success() {
            return Err(ResolvedError::Command {
                command: self.command_line(args),
                status: out.status,
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// The server as resolved spells it: a bare address for port 53 (which
/// every version understands), `ip:port` / `[ip6]:port` otherwise.
fn server_arg(server: SocketAddr) -> String {
    if server.port() == 53 {
        server.ip().to_string()
    } else {
        // SocketAddr's Display already brackets IPv6 (`[fd00::1]:42069`).
        server.to_string()
    }
}

/// An interface name: 1-15 bytes, no `/`, whitespace or leading `-` (which
/// resolvectl would take for an option).
fn validate_link(link: &str) -> Result<(), ResolvedError> {
    let valid = !link.is_empty()
        && link.len() <= 15
        && !link.starts_with('-')
        && !link
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control());
    if valid {
        Ok(())
    } else {
        Err(ResolvedError::InvalidLink {
            link: link.to_owned(),
        })
    }
}

/// How to make `.vm` resolve without systemd-resolved, for `banger doctor`.
/// `server` is where banger's DNS listens (`dns_listen_addr`).
pub fn manual_instructions(server: SocketAddr) -> String {
    let (ip, port) = (server.ip(), server.port());
    let mut text = String::new();
    // Writing to a String cannot fail; the results are ignored on purpose.
    let _ = writeln!(
        text,
        "systemd-resolved is not running, so banger cannot route .vm names by itself.\n\
         banger's DNS server answers on {server}; to send .vm questions there:"
    );
    let _ = writeln!(
        text,
        "  - dnsmasq (also NetworkManager with dns=dnsmasq): put\n      \
         server=/vm/{ip}#{port}\n    \
         in /etc/dnsmasq.d/banger.conf (NetworkManager: \
         /etc/NetworkManager/dnsmasq.d/banger.conf) and restart it."
    );
    let _ = writeln!(
        text,
        "  - unbound: add\n      \
         server:\n        do-not-query-localhost: no\n        domain-insecure: \"vm\"\n      \
         stub-zone:\n        name: \"vm\"\n        stub-addr: {ip}@{port}"
    );
    let _ = writeln!(
        text,
        "  - /etc/resolv.conf alone cannot do it: it has no per-domain servers and \
         always uses port 53,\n    and banger's server refuses names outside .vm, \
         so listing it there would break other lookups."
    );
    let _ = write!(
        text,
        "  - or ask directly: dig @{ip} -p {port} NAME.vm  \
         (banger's own commands, such as `banger vm ssh`, need none of this)"
    );
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_args() {
        let v4: SocketAddr = "172.16.0.1:53".parse().expect("addr");
        assert_eq!(server_arg(v4), "172.16.0.1");
        let v4: SocketAddr = "172.16.0.1:42069".parse().expect("addr");
        assert_eq!(server_arg(v4), "172.16.0.1:42069");
        let v6: SocketAddr = "[fd00::1]:42069".parse().expect("addr");
        assert_eq!(server_arg(v6), "[fd00::1]:42069");
    }

    #[test]
    fn link_names() {
        for good in ["banger0", "br-banger", "a"] {
            assert!(validate_link(good).is_ok(), "{good}");
        }
        for bad in ["", "-x", "a b", "a/b", "averyveryverylongname", "a:1"] {
            assert!(validate_link(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn stub_detection() {
        assert!(resolv_conf_uses_stub(
            "# managed\nnameserver 127.0.0.53\noptions edns0\n"
        ));
        assert!(!resolv_conf_uses_stub("nameserver 10.0.0.1\n"));
        assert!(!resolv_conf_uses_stub("# nameserver 127.0.0.53\n"));
    }

    #[test]
    fn manual_text_names_the_server() {
        let text = manual_instructions("127.0.0.1:42069".parse().expect("addr"));
        assert!(text.contains("server=/vm/127.0.0.1#42069"), "{text}");
        assert!(text.contains("stub-addr: 127.0.0.1@42069"), "{text}");
        assert!(text.contains("dig @127.0.0.1 -p 42069 NAME.vm"), "{text}");
    }
}
