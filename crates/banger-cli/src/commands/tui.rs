//! `banger tui`: connects (starting the daemon if needed) and hands the
//! terminal to banger_tui, which does the rest.

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Context;
use banger_config::Paths;

use crate::args::TuiArgs;

pub async fn run(_args: TuiArgs) -> anyhow::Result<ExitCode> {
    if !std::io::stdin().is_terminal() || !std::io::stdout().is_terminal() {
        anyhow::bail!(
            "banger tui needs a terminal on stdin and stdout; for scripts use `banger vm list --json` or `banger daemon events`"
        );
    }
    let paths = Paths::from_env()?;
    let client = super::connect(&paths).await?;
    // ssh and session attach run this same binary, so they see the same
    // environment (state dirs, socket) as the TUI.
    let banger = std::env::current_exe().context("cannot find the banger executable")?;
    banger_tui::run(client, banger_tui::runtime::Options { banger }).await?;
    Ok(ExitCode::SUCCESS)
}
