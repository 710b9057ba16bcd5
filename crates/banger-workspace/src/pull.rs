//! Bringing the guest's work back as a host branch.
//!
//! One ssh runs `pull.sh` in the guest: it commits uncommitted changes
//! with a temporary index (the guest's HEAD, index and files stay as they
//! are), then writes a header line and `git bundle create - <tip> --not
//! <base>` to stdout. The host unbundles the objects and moves only the
//! target branch, with a compare-and-swap `git update-ref`; the host's
//! working tree, index and current branch are never touched.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use banger_host::ssh::{SshTarget, TtyMode, ssh_command};

use crate::git::{self, GitError};
use crate::plan::{DEFAULT_GUEST_PATH, PlanError, toplevel};

/// The guest-side script (`sh -c`).
const PULL_SCRIPT: &str = include_str!("pull.sh");

/// What to pull and into which branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullOptions {
    /// The VM's name (default branch `banger/<vm>`, wip commit message).
    pub vm: String,
    /// The guest repository, [`DEFAULT_GUEST_PATH`] by default.
    pub guest_path: String,
    /// Host branch to write; [`default_branch`] when `None`.
    pub branch: Option<String>,
    /// Move a custom branch even if the new tip does not descend from it.
    pub force: bool,
}

impl PullOptions {
    /// Options for `vm` with the default guest path and branch.
    pub fn new(vm: &str) -> Self {
        Self {
            vm: vm.to_owned(),
            guest_path: DEFAULT_GUEST_PATH.to_owned(),
            branch: None,
            force: false,
        }
    }
}

/// The branch banger owns for `vm`: `banger/<vm>`.
pub fn default_branch(vm: &str) -> String {
    format!("banger/{vm}")
}

/// A successful pull.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullReport {
    /// The host branch written (short name).
    pub branch: String,
    /// Its new tip.
    pub tip: String,
    /// Its previous tip, if it existed (recoverable from its reflog).
    pub old_tip: Option<String>,
    /// Whether the old tip is not an ancestor of the new one (a forced or
    /// default-branch move).
    pub rewound: bool,
    /// Commits new since the prepared base (the wip commit included).
    pub commits: u64,
    /// Whether uncommitted guest changes were committed for the pull.
    pub uncommitted_commit: bool,
}

/// What a pull did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullOutcome {
    /// The guest has no new commits and no uncommitted changes.
    NothingToPull {
        /// The prepared base commit.
        base: String,
    },
    /// The branch was written.
    Pulled(PullReport),
}

/// Why a pull failed.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// The host path is not a usable checkout.
    #[error(transparent)]
    Host(#[from] PlanError),
    /// The branch name is invalid.
    #[error("{name:?} is not a valid branch name")]
    BadBranchName {
        /// The name.
        name: String,
    },
    /// The branch is checked out in a worktree; moving it would change
    /// that worktree's HEAD under its files.
    #[error("branch {branch} is checked out in {}; pull into another branch (--branch)", worktree.display())]
    CheckedOut {
        /// The branch.
        branch: String,
        /// The worktree where it is checked out.
        worktree: PathBuf,
    },
    /// The branch exists and the pulled tip does not descend from it.
    #[error(
        "branch {branch} is at {old}, which {new} does not descend from; \
         pull into another branch or force it"
    )]
    Diverged {
        /// The branch.
        branch: String,
        /// Its current tip.
        old: String,
        /// The pulled tip.
        new: String,
    },
    /// The guest's history starts from a commit the host does not have.
    #[error(
        "the guest's work is based on {base}, which the repository at {} does not have; \
         pull into the checkout the VM was prepared from",
        repo.display()
    )]
    MissingBase {
        /// Host repository.
        repo: PathBuf,
        /// The base commit.
        base: String,
    },
    /// ssh could not be started.
    #[error("cannot run {}: {source}; install openssh-client", program.display())]
    SpawnSsh {
        /// The ssh program.
        program: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// ssh or the guest script failed.
    #[error("pulling from {guest_path} in VM {alias} failed ({status}): {stderr}")]
    Guest {
        /// The VM's ssh alias.
        alias: String,
        /// The guest path.
        guest_path: String,
        /// ssh's exit status.
        status: String,
        /// ssh's and the guest's stderr, trimmed.
        stderr: String,
    },
    /// The guest's first line was not a banger-pull header.
    #[error("unexpected reply from VM {alias}: {line:?}")]
    BadReply {
        /// The VM's ssh alias.
        alias: String,
        /// The line received.
        line: String,
    },
    /// Saving the bundle to a temporary file failed.
    #[error("cannot save the bundle from VM {alias}: {source}")]
    Bundle {
        /// The VM's ssh alias.
        alias: String,
        /// The IO error.
        source: std::io::Error,
    },
    /// The branch moved while pulling (compare-and-swap failed), or
    /// another git command failed.
    #[error(transparent)]
    Git(#[from] GitError),
}

/// Pulls the guest work of `options.vm` into the repository containing
/// `host_path`. Blocking.
pub fn pull(
    host_path: &Path,
    options: &PullOptions,
    ssh_program: &Path,
    target: &SshTarget,
) -> Result<PullOutcome, PullError> {
    let repo = toplevel(host_path)?;
    let default = default_branch(&options.vm);
    let branch = options.branch.clone().unwrap_or_else(|| default.clone());
    if !git::valid_branch_name(&repo, &branch)? {
        return Err(PullError::BadBranchName { name: branch });
    }
    let full_ref = format!("refs/heads/{branch}");
    check_not_checked_out(&repo, &branch, &full_ref)?;

    let bundle = tempfile::Builder::new()
        .prefix("banger-pull-")
        .suffix(".bundle")
        .tempfile()
        .map_err(|source| PullError::Bundle {
            alias: target.alias.clone(),
            source,
        })?;
    let header = fetch_bundle(options, ssh_program, target, bundle.path())?;
    let (tip, base, wip, commits) = match header {
        Header::Nothing { base } => return Ok(PullOutcome::NothingToPull { base }),
        Header::Bundle {
            tip,
            base,
            wip,
            commits,
        } => (tip, base, wip, commits),
    };
    if !object_exists(&repo, &format!("{base}^{{commit}}"))? {
        return Err(PullError::MissingBase { repo, base });
    }
    // Objects only: no ref, index or file of the host changes here.
    git::stdout(
        &repo,
        &[
            "bundle".as_ref(),
            "unbundle".as_ref(),
            bundle.path().as_os_str(),
        ],
    )?;
    let old_tip = resolve(&repo, &full_ref)?;
    let rewound = match &old_tip {
        Some(old) if !is_ancestor(&repo, old, &tip)? => {
            if !options.force && branch != default {
                return Err(PullError::Diverged {
                    branch,
                    old: old.clone(),
                    new: tip,
                });
            }
            true
        }
        _ => false,
    };
    // Compare-and-swap against the tip seen above (empty = must not
    // exist), so a concurrent change to the branch is never lost.
    let expected = old_tip.clone().unwrap_or_default();
    let message = format!("banger: pull from VM {}", options.vm);
    git::stdout(
        &repo,
        &[
            "update-ref".as_ref(),
            "-m".as_ref(),
            message.as_ref(),
            full_ref.as_ref(),
            tip.as_ref(),
            expected.as_ref(),
        ],
    )?;
    Ok(PullOutcome::Pulled(PullReport {
        branch,
        tip,
        old_tip,
        rewound,
        commits,
        uncommitted_commit: wip,
    }))
}

/// The guest's header line.
enum Header {
    Nothing {
        base: String,
    },
    Bundle {
        tip: String,
        base: String,
        wip: bool,
        commits: u64,
    },
}

fn parse_header(line: &str) -> Option<Header> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    match fields.as_slice() {
        ["banger-pull", "1", "nothing", base] => Some(Header::Nothing {
            base: (*base).to_owned(),
        }),
        ["banger-pull", "1", "bundle", tip, base, wip, commits] => Some(Header::Bundle {
            tip: (*tip).to_owned(),
            base: (*base).to_owned(),
            wip: *wip == "1",
            commits: commits.parse().ok()?,
        }),
        _ => None,
    }
}

/// Runs the guest script, saving the bundle (if any) to `bundle_path`.
fn fetch_bundle(
    options: &PullOptions,
    ssh_program: &Path,
    target: &SshTarget,
    bundle_path: &Path,
) -> Result<Header, PullError> {
    let remote = [
        "sh".to_owned(),
        "-c".to_owned(),
        PULL_SCRIPT.to_owned(),
        "banger-pull".to_owned(),
        options.guest_path.clone(),
        options.vm.clone(),
    ];
    let mut child = ssh_command(ssh_program, target, &remote, TtyMode::Batch)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| PullError::SpawnSsh {
            program: ssh_program.to_owned(),
            source,
        })?;
    let stderr = child.stderr.take();
    let stderr = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut stderr) = stderr {
            // Best effort: the text only decorates an error.
            let _ = stderr.read_to_string(&mut text);
        }
        text.trim().to_owned()
    });
    let bundle_error = |source| PullError::Bundle {
        alias: target.alias.clone(),
        source,
    };
    let mut line = String::new();
    let copied = match child.stdout.take() {
        Some(stdout) => {
            let mut reader = BufReader::with_capacity(1 << 20, stdout);
            reader
                .read_line(&mut line)
                .and_then(|_| {
                    let mut file = fs_err::File::create(bundle_path)?;
                    std::io::copy(&mut reader, &mut file)
                })
                .map_err(bundle_error)
        }
        None => Ok(0),
    };
    let status = child.wait().map_err(|source| PullError::SpawnSsh {
        program: ssh_program.to_owned(),
        source,
    })?;
    let stderr = stderr.join().unwrap_or_default();
    if !status.success() {
        return Err(PullError::Guest {
            alias: target.alias.clone(),
            guest_path: options.guest_path.clone(),
            status: status.to_string(),
            stderr,
        });
    }
    copied?;
    parse_header(&line).ok_or_else(|| PullError::BadReply {
        alias: target.alias.clone(),
        line: line.trim_end().to_owned(),
    })
}

/// Refuses when `branch` is checked out in any worktree of `repo`.
fn check_not_checked_out(repo: &Path, branch: &str, full_ref: &str) -> Result<(), PullError> {
    let listing = git::stdout(
        repo,
        &[
            "worktree".as_ref(),
            "list".as_ref(),
            "--porcelain".as_ref(),
            "-z".as_ref(),
        ],
    )?;
    let mut worktree = PathBuf::new();
    for field in listing.split(|b| *b == 0) {
        if let Some(path) = field.strip_prefix(b"worktree ") {
            worktree = PathBuf::from(<OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(path));
        } else if field.strip_prefix(b"branch ") == Some(full_ref.as_bytes()) {
            return Err(PullError::CheckedOut {
                branch: branch.to_owned(),
                worktree,
            });
        }
    }
    Ok(())
}

fn object_exists(repo: &Path, spec: &str) -> Result<bool, GitError> {
    let output = git::run(repo, &["cat-file".as_ref(), "-e".as_ref(), spec.as_ref()])?;
    Ok(output.status.success())
}

fn resolve(repo: &Path, full_ref: &str) -> Result<Option<String>, GitError> {
    let output = git::run(
        repo,
        &[
            "rev-parse".as_ref(),
            "--verify".as_ref(),
            "--quiet".as_ref(),
            full_ref.as_ref(),
        ],
    )?;
    Ok(output.status.success().then(|| git::line(&output.stdout)))
}

fn is_ancestor(repo: &Path, ancestor: &str, descendant: &str) -> Result<bool, GitError> {
    let output = git::run(
        repo,
        &[
            "merge-base".as_ref(),
            "--is-ancestor".as_ref(),
            ancestor.as_ref(),
            descendant.as_ref(),
        ],
    )?;
    Ok(output.status.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_parse_and_garbage_does_not() {
        assert!(matches!(
            parse_header("banger-pull 1 nothing abc\n"),
            Some(Header::Nothing { base }) if base == "abc"
        ));
        assert!(matches!(
            parse_header("banger-pull 1 bundle t b 1 3"),
            Some(Header::Bundle { tip, base, wip: true, commits: 3 }) if tip == "t" && base == "b"
        ));
        for bad in [
            "",
            "banger-pull 2 nothing abc",
            "banger-pull 1 bundle t b 1 x",
            "PGP\u{1}",
        ] {
            assert!(parse_header(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn default_branch_is_banger_slash_vm() {
        assert_eq!(default_branch("devbox"), "banger/devbox");
    }
}
