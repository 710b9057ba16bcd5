//! `banger web`: the web UI's URL with the daemon's secret, from
//! `GET /v1/daemon/status` (the API socket is owner-only, so only this
//! user learns it), printed on stdout and opened with `xdg-open` when a
//! desktop session is present (`$DISPLAY` or `$WAYLAND_DISPLAY`).

use std::process::{ExitCode, Stdio};

use banger_config::Paths;

use crate::args::WebArgs;
use crate::output;

/// Why `banger web` cannot give a URL.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// The daemon does not serve the UI.
    #[error(
        "bangerd does not serve the web UI (web_listen_addr {addr}); set web_listen_addr (see `banger config show`) and restart the daemon with `banger daemon stop`, or see bangerd.log for why it could not listen"
    )]
    NotServed {
        /// The configured address (`""` when disabled).
        addr: String,
    },
}

/// True when a graphical session is there to show a browser.
fn has_desktop() -> bool {
    ["DISPLAY", "WAYLAND_DISPLAY"]
        .iter()
        .any(|name| std::env::var_os(name).is_some_and(|value| !value.is_empty()))
}

pub async fn run(args: WebArgs) -> anyhow::Result<ExitCode> {
    let paths = Paths::from_env()?;
    let client = super::connect(&paths).await?;
    let status = client.status().await?;
    let Some(url) = status.web_url else {
        let addr = if status.web.listen_addr.is_empty() {
            "is empty: disabled".to_owned()
        } else {
            status.web.listen_addr
        };
        return Err(WebError::NotServed { addr }.into());
    };
    output::line(&url)?;
    if !args.no_open && has_desktop() {
        // The browser outlives this command; its output is not ours.
        let opened = std::process::Command::new("xdg-open")
            .arg(&url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        if let Err(error) = opened {
            eprintln!("banger: cannot run xdg-open ({error}); open the URL above yourself");
        }
    }
    Ok(ExitCode::SUCCESS)
}
