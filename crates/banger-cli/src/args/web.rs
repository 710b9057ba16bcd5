//! Arguments of `banger web`, the web UI's address.

use clap::Args;

/// `banger web`: prints the web UI's URL, which carries this daemon's
/// secret (opening it logs the browser in), and opens it in the desktop's
/// browser when there is a desktop.
#[derive(Debug, Args)]
pub struct WebArgs {
    /// Only print the URL; do not start a browser.
    #[arg(long)]
    pub no_open: bool,
}
