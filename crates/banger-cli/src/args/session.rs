//! Arguments of `banger vm session ...`.

use banger_api::{SessionName, VmName};
use clap::{Args, Subcommand, ValueEnum};

/// `banger vm session ...`
#[derive(Debug, Subcommand)]
pub enum SessionCommand {
    /// Start a long-lived process in a VM, managed by the daemon and the guest agent.
    Start(SessionStartArgs),
    /// List a VM's sessions.
    List(SessionListArgs),
    /// Show one session.
    Show(SessionShowArgs),
    /// Print a session's output (stdout by default).
    Logs(SessionLogsArgs),
    /// Stop a session (SIGTERM to its process group).
    Stop(SessionRef),
    /// Kill a session (SIGKILL to its process group).
    Kill(SessionRef),
    /// Forget an exited session and delete its logs.
    Rm(SessionRef),
    /// Attach to a pipe-mode session: your input goes to its stdin, its output to your terminal.
    /// Detach with Ctrl-] (followed by Enter on a terminal) or at end of input; the session keeps running.
    Attach(SessionRef),
}

/// What a session's stdin is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StdinModeArg {
    /// /dev/null.
    Detached,
    /// A pipe kept open by the guest agent; write to it with `vm session attach`.
    Pipe,
}

/// Options of `banger vm session start`.
#[derive(Debug, Args)]
pub struct SessionStartArgs {
    /// The VM (must be running).
    pub vm: VmName,
    /// The session's name (lowercase letters, digits, `-`).
    #[arg(long)]
    pub name: SessionName,
    /// Working directory in the guest (default: /root/repo when it exists, else /root).
    #[arg(long)]
    pub cwd: Option<String>,
    /// What the session's stdin is.
    #[arg(long, value_enum, default_value_t = StdinModeArg::Detached)]
    pub stdin_mode: StdinModeArg,
    /// A command that must be on the guest PATH before launching (repeatable).
    #[arg(long = "require-command", value_name = "CMD")]
    pub require_commands: Vec<String>,
    /// Print the session as JSON.
    #[arg(long)]
    pub json: bool,
    /// The command and its arguments (after `--`).
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

/// Options of `banger vm session list`.
#[derive(Debug, Args)]
pub struct SessionListArgs {
    /// The VM.
    pub vm: VmName,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Options of `banger vm session show`.
#[derive(Debug, Args)]
pub struct SessionShowArgs {
    /// The VM.
    pub vm: VmName,
    /// The session.
    pub session: SessionName,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Which output stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogStreamArg {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// Options of `banger vm session logs`.
#[derive(Debug, Args)]
pub struct SessionLogsArgs {
    /// The VM.
    pub vm: VmName,
    /// The session.
    pub session: SessionName,
    /// Which stream.
    #[arg(long, value_enum, default_value_t = LogStreamArg::Stdout)]
    pub stream: LogStreamArg,
    /// Keep printing new output until the session exits.
    #[arg(long, short = 'f')]
    pub follow: bool,
}

/// A VM and one of its sessions.
#[derive(Debug, Args)]
pub struct SessionRef {
    /// The VM.
    pub vm: VmName,
    /// The session.
    pub session: SessionName,
}
