//! Arguments of `banger mcp`: the Model Context Protocol server for coding
//! agents, and `mcp install`, which adds it to an agent's configuration.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

/// `banger mcp [OPTIONS]` serves; `banger mcp install` configures a client.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct McpArgs {
    /// Configure a coding agent instead of serving.
    #[command(subcommand)]
    pub command: Option<McpCommand>,
    #[command(flatten)]
    pub server: McpServerArgs,
}

/// `banger mcp ...`
#[derive(Debug, Subcommand)]
pub enum McpCommand {
    /// Add `banger mcp` to a coding agent's MCP configuration (other entries are kept), or print the entry.
    Install(McpInstallArgs),
}

/// Options of the server (also written into a client's entry by `mcp install`).
#[derive(Debug, Args)]
pub struct McpServerArgs {
    /// A host directory the tools may read checkouts from and write branches to (workspace_prepare, workspace_pull, vm_run PATH); repeatable [default: the current directory].
    #[arg(long = "allow-path", value_name = "DIR")]
    pub allow_paths: Vec<PathBuf>,
    /// Let vm_delete delete any VM, not only the ones this server created.
    #[arg(long)]
    pub allow_delete_any: bool,
}

/// Options of `banger mcp install`.
#[derive(Debug, Args)]
pub struct McpInstallArgs {
    /// The coding agent: claude (the project's .mcp.json), opencode (the project's opencode.json) or codex ($CODEX_HOME/config.toml, default ~/.codex).
    #[arg(long, value_enum)]
    pub client: McpClient,
    /// Print the entry on stdout instead of writing the file.
    #[arg(long)]
    pub print: bool,
    #[command(flatten)]
    pub server: McpServerArgs,
}

/// A coding agent `mcp install` can configure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum McpClient {
    /// Claude Code.
    Claude,
    /// opencode.
    Opencode,
    /// OpenAI Codex CLI.
    Codex,
}
