//! Workspaces: copy a host git checkout into a running VM over ssh, and
//! bring the guest's work back as a branch.
//!
//! - [`plan`] inspects the checkout and lists what would be sent
//!   ([`Plan::files`] is the `--dry-run` output).
//! - [`prepare`] streams it as one tar into one `ssh ... tar -x`.
//! - [`pull`] bundles the guest's commits (plus a commit of uncommitted
//!   changes) and stores them as a host branch without touching the host's
//!   working tree, index or current branch.
//!
//! `docs/workspaces.md` describes the modes, safety rules and benchmark.

mod git;
mod plan;
mod prepare;
mod pull;
mod shallow;
mod stream;

pub use git::GitError;
pub use plan::{
    DEFAULT_GUEST_PATH, Mode, ModeError, Plan, PlanError, PrepareOptions, TOOL_FILES,
    has_tool_files, plan, toplevel,
};
pub use prepare::{BASE_REF, PrepareError, PrepareReport, prepare};
pub use pull::{PullError, PullOptions, PullOutcome, PullReport, default_branch, pull};
pub use stream::Progress;
