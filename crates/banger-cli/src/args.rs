//! The command-line grammar. Clap types live only here; doc comments are the
//! help text users see.

use clap::{Args, Parser, Subcommand};

/// banger: persistent, one-command development sandboxes on microVMs.
#[derive(Debug, Parser)]
#[command(
    name = "banger",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Control and inspect the bangerd daemon.
    #[command(subcommand)]
    Daemon(DaemonCommand),
    /// Inspect banger's configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Check this host for everything banger needs, with a fix for each problem.
    Doctor(DoctorArgs),
    /// Manage guest kernels.
    #[command(subcommand)]
    Kernel(KernelCommand),
}

/// `banger kernel ...`
#[derive(Debug, Subcommand)]
pub enum KernelCommand {
    /// List installed kernels, or with --available the catalog.
    List(KernelListArgs),
    /// Install a kernel from the catalog (see `kernel list --available`).
    Pull(KernelNameArg),
    /// Show an installed kernel.
    Show(KernelShowArgs),
    /// Delete an installed kernel (refused while an image uses it).
    Delete(KernelNameArg),
    /// Import a kernel file from this host.
    Import(KernelImportArgs),
}

/// Options of `banger kernel list`.
#[derive(Debug, Args)]
pub struct KernelListArgs {
    /// List the catalog instead of installed kernels.
    #[arg(long)]
    pub available: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// A kernel name.
#[derive(Debug, Args)]
pub struct KernelNameArg {
    /// The kernel's name.
    pub name: String,
}

/// Options of `banger kernel show`.
#[derive(Debug, Args)]
pub struct KernelShowArgs {
    /// The kernel's name.
    pub name: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Options of `banger kernel import`.
#[derive(Debug, Args)]
pub struct KernelImportArgs {
    /// Name to install it under.
    #[arg(long)]
    pub name: String,
    /// A bzImage or ELF vmlinux.
    #[arg(long)]
    pub kernel: std::path::PathBuf,
    /// Its modules tree (a `lib/modules/<version>` directory), if it has modules.
    #[arg(long)]
    pub modules: Option<std::path::PathBuf>,
}

/// `banger daemon ...`
#[derive(Debug, Subcommand)]
pub enum DaemonCommand {
    /// Show the daemon's pid, version, paths, listeners and uptime (starts it if needed).
    Status(JsonFlag),
    /// Start the daemon if it is not running.
    Start,
    /// Stop the daemon gracefully and wait until it has exited.
    Stop,
    /// Print the path of the daemon's API socket.
    Socket,
    /// Run an integrity check of the state database.
    Check(JsonFlag),
}

/// `banger config ...`
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration and where each value came from.
    Show(JsonFlag),
    /// Print the path of config.toml.
    Path,
}

/// Options of `banger doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// A lone `--json` flag.
#[derive(Debug, Args)]
pub struct JsonFlag {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}
