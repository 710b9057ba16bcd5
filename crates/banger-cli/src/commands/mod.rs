//! Command glue: one file per verb group, each turning parsed arguments into
//! library calls and printing the result. Behaviour lives in the libraries.

mod config;
mod daemon;
mod doctor;
mod image;
mod kernel;
mod mcp;
mod shell;
mod space;
mod system;
mod tui;
mod vm;
mod web;

use std::path::PathBuf;
use std::process::ExitCode;

use banger_client::DaemonClient;
use banger_config::Paths;

use crate::args::Command;

/// Runs one top-level command.
pub async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Daemon(command) => daemon::run(command).await,
        Command::Config(command) => config::run(command),
        Command::Doctor(args) => doctor::run(&args).await,
        Command::Kernel(command) => kernel::run(command).await,
        Command::Image(command) => image::run(command).await,
        Command::Vm(command) => vm::run(command).await,
        Command::System(command) => system::run(command).await,
        Command::Mcp(args) => mcp::run(args).await,
        Command::Tui(args) => tui::run(args).await,
        Command::Web(args) => web::run(args).await,
        Command::Completions(args) => shell::completions(&args),
        Command::Man(args) => shell::man(&args),
    }
}

/// The daemon binary: `BANGER_DAEMON_BIN`, else `bangerd` next to this
/// executable, else `bangerd` on PATH.
fn daemon_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("BANGER_DAEMON_BIN").filter(|value| !value.is_empty()) {
        return PathBuf::from(path);
    }
    if let Ok(current) = std::env::current_exe() {
        if let Some(sibling) = current.parent().map(|dir| dir.join("bangerd")) {
            if sibling.exists() {
                return sibling;
            }
        }
    }
    PathBuf::from("bangerd")
}

/// An absolute form of a path the user typed, for the daemon (whose working
/// directory is not the user's).
fn absolute(path: &std::path::Path) -> anyhow::Result<PathBuf> {
    Ok(std::path::absolute(path)?)
}

/// A client for a running daemon, starting one if needed.
async fn connect(paths: &Paths) -> anyhow::Result<DaemonClient> {
    Ok(banger_client::connect_or_start(paths, &daemon_binary()).await?)
}
