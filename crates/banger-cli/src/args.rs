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
