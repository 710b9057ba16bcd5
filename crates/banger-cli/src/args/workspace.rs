//! Arguments of `banger vm workspace ...` and `banger vm acp`.

use std::path::PathBuf;

use banger_api::VmName;
use clap::{Args, Subcommand, ValueEnum};

/// `banger vm workspace ...`
#[derive(Debug, Subcommand)]
pub enum WorkspaceCommand {
    /// Copy a git checkout into a running VM (one streamed transfer).
    Prepare(WorkspacePrepareArgs),
    /// Bring the guest's commits and uncommitted changes back as a branch of the host repository.
    Pull(WorkspacePullArgs),
}

/// How much of the checkout is copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WorkspaceMode {
    /// Shallow git metadata (the current commit only) plus the tracked files as they are in the working tree.
    Shallow,
    /// The whole checkout directory as it is: full history, submodules, untracked and ignored files.
    #[value(name = "full_copy", alias = "full-copy")]
    FullCopy,
}

/// Options of `banger vm workspace prepare`.
#[derive(Debug, Args)]
pub struct WorkspacePrepareArgs {
    /// The VM (must be running).
    pub vm: VmName,
    /// A directory inside the git checkout to copy.
    pub path: PathBuf,
    /// Where the copy goes in the guest; must not exist or be empty.
    #[arg(long, default_value = "/root/repo")]
    pub guest_path: String,
    /// What is copied.
    #[arg(long, value_enum, default_value_t = WorkspaceMode::Shallow)]
    pub mode: WorkspaceMode,
    /// Also copy untracked files that are not ignored.
    #[arg(long)]
    pub include_untracked: bool,
    /// Make the guest copy read-only.
    #[arg(long)]
    pub readonly: bool,
    /// Print the files that would be sent (one per line) and send nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Options of `banger vm workspace pull`.
#[derive(Debug, Args)]
pub struct WorkspacePullArgs {
    /// The VM (must be running).
    pub vm: VmName,
    /// A directory inside the host repository (default: the current directory).
    pub path: Option<PathBuf>,
    /// Branch to create or update in the host repository (default: banger/<vm>).
    #[arg(long)]
    pub branch: Option<String>,
    /// Where the copy is in the guest.
    #[arg(long, default_value = "/root/repo")]
    pub guest_path: String,
    /// Move an existing branch even when the guest's work does not descend from it.
    #[arg(long)]
    pub force: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Options of `banger vm acp`.
#[derive(Debug, Args)]
pub struct VmAcpArgs {
    /// The VM (must be running).
    pub vm: VmName,
    /// Working directory in the guest (default: /root/repo when it exists, else /root).
    #[arg(long)]
    pub cwd: Option<String>,
}

/// Options of `banger vm opencode`.
#[derive(Debug, Args)]
pub struct VmOpencodeArgs {
    /// The VM (running, or paused with `auto_resume`).
    pub vm: VmName,
    /// Print the server's URL and password (two lines) instead of attaching.
    #[arg(long)]
    pub print: bool,
    /// More arguments for `opencode attach` (after `--`).
    #[arg(last = true)]
    pub args: Vec<std::ffi::OsString>,
}
