//! Arguments of `banger system ...`: the system install (root-owned
//! binaries, the root helper and the owner's daemon as services), and
//! `system df`.

use std::path::PathBuf;

use clap::{Args, Subcommand};

/// `banger system ...`
#[derive(Debug, Subcommand)]
pub enum SystemCommand {
    /// Install banger for a user: binaries in a root-owned prefix, the root helper (bangerd-root) and the user's daemon as services (needs root; run again to upgrade).
    Install(SystemInstallArgs),
    /// Show the installed services, versions, sockets and owner, and whether the running binaries are the installed ones.
    Status(SystemStatusArgs),
    /// Restart bangerd-root and bangerd (needs root).
    Restart,
    /// Remove the services, binaries and metadata; the owner's VMs, images and config stay unless --purge (needs root).
    Uninstall(SystemUninstallArgs),
    /// Show the host disk space banger really uses (allocated bytes) per VM, image, kernel and cache, with a total.
    Df(SystemDfArgs),
}

/// Options of `banger system df`.
#[derive(Debug, Args)]
pub struct SystemDfArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Options of `banger system install`.
#[derive(Debug, Args)]
pub struct SystemInstallArgs {
    /// The user who owns this banger (default: the user who ran sudo).
    #[arg(long, value_name = "USER")]
    pub owner: Option<String>,
    /// Install prefix: binaries go to PREFIX/bin, the guest agent to PREFIX/lib/banger.
    #[arg(long, value_name = "DIR", default_value = "/usr/local")]
    pub prefix: PathBuf,
    /// The static guest agent to install (default: found next to banger or in the cargo target dir).
    #[arg(long, value_name = "PATH")]
    pub agent: Option<PathBuf>,
    /// vhost-device-vsock to install into PREFIX/lib/banger (default: found on PATH or in ~/.cargo/bin of the sudo user or root).
    #[arg(long, value_name = "PATH")]
    pub vhost_vsock: Option<PathBuf>,
    /// Install and enable, but do not start or restart anything.
    #[arg(long)]
    pub no_start: bool,
}

/// Options of `banger system status`.
#[derive(Debug, Args)]
pub struct SystemStatusArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Options of `banger system uninstall`.
#[derive(Debug, Args)]
pub struct SystemUninstallArgs {
    /// Also delete the owner's banger config, state (VMs, images) and cache directories.
    #[arg(long)]
    pub purge: bool,
}
