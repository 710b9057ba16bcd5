//! banger's system install: the supported way to run banger as a developer.
//!
//! `sudo banger system install` puts `banger`, `bangerd` and `bangerd-root`
//! into a root-owned directory (`/usr/local/bin` by default) and the guest
//! agent into `/usr/local/lib/banger`, writes the install metadata
//! (`/etc/banger/install.toml`) that the root helper trusts, gives the owner
//! the groups and subordinate ids VMs and image builds need, and runs two
//! services: `bangerd-root` (root, network plumbing only) and `bangerd` (the
//! owner). With systemd as PID 1 they are hardened units; without it (a
//! container) the helper is started detached and `bangerd` is started by the
//! CLI as the owner, as in development.
//!
//! The CLI is glue: every step lives here. Modules:
//! [`layout`] (where things go, and the check that nothing root runs is in a
//! user-writable path), [`owner`] (whose banger this is), [`account`]
//! (groups, devices, subordinate ids), [`units`] (the two unit files),
//! [`files`] (atomic replacement), [`service`] (systemd or the detached
//! helper), [`shell_files`] (completions and man pages), and the
//! operations [`install`], [`status`], [`restart`] and
//! [`uninstall`].

pub mod account;
pub mod files;
pub mod install;
pub mod layout;
pub mod owner;
pub mod process;
pub mod restart;
pub mod service;
pub mod shell_files;
pub mod status;
pub mod uninstall;
pub mod units;

pub use install::{InstallError, InstallOptions, InstallReport, install};
pub use layout::{Binary, Layout, LayoutError};
pub use owner::{Owner, OwnerError};
pub use restart::{RestartError, restart};
pub use status::{SystemStatus, status};
pub use uninstall::{UninstallError, UninstallOptions, UninstallReport, uninstall};

/// The banger version these binaries are.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Reports one step of a long operation (the CLI prints it on stderr).
pub type Progress<'a> = &'a mut dyn FnMut(&str);

/// An operation that changes the system was started without root.
#[derive(Debug, thiserror::Error)]
#[error(
    "`banger system {verb}` changes the system and needs root: run `sudo banger system {verb}`"
)]
pub struct NotRoot {
    /// The verb (`install`, `restart`, `uninstall`).
    pub verb: &'static str,
}

/// Refuses to go on unless the effective uid is root.
pub fn require_root(verb: &'static str) -> Result<(), NotRoot> {
    if rustix::process::geteuid().is_root() {
        Ok(())
    } else {
        Err(NotRoot { verb })
    }
}

/// Whether systemd runs as PID 1 here (the test `sd_booted(3)` uses).
pub fn systemd_is_pid1() -> bool {
    std::path::Path::new("/run/systemd/system").is_dir()
}
