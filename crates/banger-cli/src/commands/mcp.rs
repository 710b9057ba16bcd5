//! `banger mcp`: serve the Model Context Protocol on stdin/stdout
//! (banger_mcp does the work; stdout carries only protocol messages), and
//! `banger mcp install`, which writes or prints a client's entry.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use banger_config::Paths;
use banger_mcp::install::{Client, Launch};
use banger_mcp::{AllowedRoots, Server, ServerOptions};

use crate::args::{McpArgs, McpClient, McpCommand, McpInstallArgs, McpServerArgs};
use crate::output;

pub async fn run(args: McpArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        Some(McpCommand::Install(install_args)) => install(install_args),
        None => serve(args.server).await,
    }
}

async fn serve(args: McpServerArgs) -> anyhow::Result<ExitCode> {
    let paths = Paths::from_env()?;
    let dirs = if args.allow_paths.is_empty() {
        vec![std::env::current_dir().context("cannot find the current directory")?]
    } else {
        args.allow_paths
    };
    let roots = AllowedRoots::new(&dirs)?;
    eprintln!(
        "banger mcp: serving the Model Context Protocol on stdin/stdout; host paths allowed under {}",
        roots.describe()
    );
    let server = Arc::new(Server::new(ServerOptions {
        roots,
        allow_delete_any: args.allow_delete_any,
        paths,
        daemon_binary: super::daemon_binary(),
    }));
    banger_mcp::serve_stdio(server).await?;
    Ok(ExitCode::SUCCESS)
}

fn install(args: McpInstallArgs) -> anyhow::Result<ExitCode> {
    let command = std::env::current_exe().context("cannot find the running banger binary")?;
    let mut launch_args = vec!["mcp".to_owned()];
    for dir in &args.server.allow_paths {
        // The client starts the server elsewhere: paths must be absolute.
        launch_args.push("--allow-path".to_owned());
        launch_args.push(super::absolute(dir)?.display().to_string());
    }
    if args.server.allow_delete_any {
        launch_args.push("--allow-delete-any".to_owned());
    }
    let launch = Launch {
        command,
        args: launch_args,
    };
    let client = match args.client {
        McpClient::Claude => Client::Claude,
        McpClient::Opencode => Client::Opencode,
        McpClient::Codex => Client::Codex,
    };
    let project = std::env::current_dir().context("cannot find the current directory")?;
    let path = client.config_path(&project, &codex_home()?);
    if args.print {
        let (text, _) = client.merge(&path, None, &launch)?;
        output::line(text.trim_end())?;
        eprintln!("add this to {}", path.display());
        return Ok(ExitCode::SUCCESS);
    }
    let installed = banger_mcp::install::install(client, &path, &launch)?;
    eprintln!(
        "{} the banger MCP server in {}",
        if installed.replaced {
            "updated"
        } else {
            "added"
        },
        installed.path.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Codex's directory: `CODEX_HOME`, else `~/.codex`.
fn codex_home() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("CODEX_HOME").filter(|dir| !dir.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    let home = std::env::var_os("HOME")
        .filter(|home| !home.is_empty())
        .context("HOME is not set; set CODEX_HOME to Codex's directory")?;
    Ok(PathBuf::from(home).join(".codex"))
}
