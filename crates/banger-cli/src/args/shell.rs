//! Arguments of `banger completions` and `banger man`: shell integration
//! generated from this very grammar, so it never drifts from the binary.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

/// A shell `banger completions` writes a script for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompletionShell {
    /// Bash (bash-completion).
    Bash,
    /// Zsh (a `_banger` completion function).
    Zsh,
    /// Fish.
    Fish,
}

/// Options of `banger completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to write the completion script for.
    pub shell: CompletionShell,
}

/// Options of `banger man`.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write banger.1 and one page per subcommand (banger-vm.1, banger-vm-create.1, ...) into DIR and print their paths, instead of printing banger.1.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
}
