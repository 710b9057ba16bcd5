//! Arguments of `banger image prune` and `banger kernel prune`.

use clap::Args;

/// Options of `banger image prune` and `banger kernel prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Say what would be removed and how much space it would give back, but remove nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Also remove the default (the image named by `default_image_name`, or the catalog's default kernel) when nothing uses it.
    #[arg(long)]
    pub all: bool,
    /// Also list what was kept and why.
    #[arg(long, short)]
    pub verbose: bool,
    /// Print the report as JSON (removed, kept with reasons, freed bytes).
    #[arg(long)]
    pub json: bool,
}
