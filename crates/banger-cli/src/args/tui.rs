//! Arguments of `banger tui`, the terminal UI.

use clap::Args;

/// `banger tui`: a live view of the daemon's VMs, images and kernels, with
/// actions on them. Colours follow `NO_COLOR`; `?` in the TUI lists the keys.
#[derive(Debug, Args)]
pub struct TuiArgs {}
