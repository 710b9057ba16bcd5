//! Planning a prepare: which repository, which commit, which files.
//!
//! [`plan`] only reads the host repository; nothing is sent. Its
//! [`Plan::files`] is the `--dry-run` output, and [`crate::prepare`]
//! streams exactly the planned entries (minus files deleted meanwhile).

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::git::{self, GitError};

/// Where the copy goes in the guest when no `--guest-path` is given.
pub const DEFAULT_GUEST_PATH: &str = "/root/repo";

/// Files that make the CLI start a background `mise install` in the guest.
pub const TOOL_FILES: &[&str] = &[".mise.toml", "mise.toml", ".tool-versions"];

/// What to copy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Mode {
    /// The working tree's tracked files plus a generated one-commit
    /// (shallow) `.git`.
    #[default]
    Shallow,
    /// The checkout directory as it is, `.git` and all.
    FullCopy,
}

impl Mode {
    /// The CLI spelling: `shallow` or `full_copy`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Shallow => "shallow",
            Self::FullCopy => "full_copy",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `--mode` value that is neither `shallow` nor `full_copy`.
#[derive(Debug, thiserror::Error)]
#[error("unknown workspace mode {0:?}; use shallow or full_copy")]
pub struct ModeError(pub String);

impl FromStr for Mode {
    type Err = ModeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "shallow" => Ok(Self::Shallow),
            "full_copy" | "full-copy" => Ok(Self::FullCopy),
            other => Err(ModeError(other.to_owned())),
        }
    }
}

/// What `prepare` should send and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrepareOptions {
    /// Destination directory in the guest; must be absent or empty.
    pub guest_path: String,
    /// Shallow (default) or full copy.
    pub mode: Mode,
    /// Shallow mode: also send untracked, non-ignored files.
    pub include_untracked: bool,
    /// `chmod -R a-w` the guest copy after extraction.
    pub readonly: bool,
    /// Put the guest checkout on this new branch (shallow mode only).
    pub branch: Option<String>,
    /// Send the committed tree of this ref instead of the working tree
    /// (shallow mode only).
    pub from: Option<String>,
}

impl Default for PrepareOptions {
    fn default() -> Self {
        Self {
            guest_path: DEFAULT_GUEST_PATH.to_owned(),
            mode: Mode::Shallow,
            include_untracked: false,
            readonly: false,
            branch: None,
            from: None,
        }
    }
}

/// Why a prepare could not be planned.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// `path` is not inside a git working tree.
    #[error("{} is not inside a git checkout; pass a directory of a git checkout", path.display())]
    NotACheckout {
        /// The path given.
        path: PathBuf,
    },
    /// The repository has no commit to base the guest copy on.
    #[error("the repository at {} has no commits yet; commit something first", repo.display())]
    NoCommits {
        /// Repository top level.
        repo: PathBuf,
    },
    /// `--from` names nothing that resolves to a commit.
    #[error("unknown ref {reference:?} in {}", repo.display())]
    UnknownRef {
        /// Repository top level.
        repo: PathBuf,
        /// The ref as given.
        reference: String,
    },
    /// `--branch` is not a valid branch name.
    #[error("{name:?} is not a valid branch name")]
    BadBranchName {
        /// The name as given.
        name: String,
    },
    /// `--branch`/`--from` with `--mode full_copy`.
    #[error("{option} needs --mode shallow (a full copy sends the checkout as it is)")]
    NeedsShallow {
        /// The offending option.
        option: &'static str,
    },
    /// Shallow mode on a repository with submodules.
    #[error("{} has submodules, which shallow mode cannot copy; use --mode full_copy", repo.display())]
    Submodules {
        /// Repository top level.
        repo: PathBuf,
    },
    /// Full copy of a linked worktree, whose `.git` is a file pointing
    /// at a host path the guest does not have.
    #[error("{} is a linked worktree (its .git is a file); use --mode shallow", repo.display())]
    LinkedWorktree {
        /// Worktree top level.
        repo: PathBuf,
    },
    /// Reading the checkout directory failed.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
    /// A git command failed.
    #[error(transparent)]
    Git(#[from] GitError),
}

/// Where an entry's content comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    /// The file or symlink in the host working tree, read when sent.
    WorkTree,
    /// A directory (full copy only), sent to keep empty ones and modes.
    Dir,
    /// Identical to the commit's blob: not streamed, but written in the
    /// guest by `git checkout-index` from the shallow pack, which carries
    /// every blob anyway (the bytes would otherwise cross twice).
    Checkout,
}

/// One path to send, relative to the repository top level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) path: PathBuf,
    pub(crate) source: Source,
}

/// A planned prepare: the repository, the commit and the file list.
#[derive(Debug, Clone)]
pub struct Plan {
    pub(crate) repo_root: PathBuf,
    pub(crate) head: String,
    pub(crate) branch: Option<String>,
    pub(crate) options: PrepareOptions,
    pub(crate) entries: Vec<Entry>,
    pub(crate) object_format: String,
    pub(crate) user_name: Option<String>,
    pub(crate) user_email: Option<String>,
}

impl Plan {
    /// The repository's top level on the host.
    pub fn repo_root(&self) -> &Path {
        &self.repo_root
    }

    /// The commit the guest copy is based on (HEAD, or `--from`'s commit).
    pub fn head(&self) -> &str {
        &self.head
    }

    /// The branch the guest checkout will be on; `None` for a detached HEAD.
    pub fn branch(&self) -> Option<&str> {
        self.branch.as_deref()
    }

    /// The options this plan was made with.
    pub fn options(&self) -> &PrepareOptions {
        &self.options
    }

    /// The `--dry-run` list: every path that would be sent, relative to
    /// the repository, sorted bytewise. Directories end in `/`. In shallow
    /// mode the generated metadata is the single line `.git/`; a full copy
    /// lists each `.git/...` file, plus `.git/refs/banger/base`.
    pub fn files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = self
            .entries
            .iter()
            .map(|entry| match entry.source {
                Source::Dir => with_slash(&entry.path),
                Source::WorkTree | Source::Checkout => entry.path.clone(),
            })
            .collect();
        match self.options.mode {
            Mode::Shallow => files.push(PathBuf::from(".git/")),
            Mode::FullCopy => files.push(PathBuf::from(crate::prepare::BASE_REF_PATH)),
        }
        files.sort_by(|a, b| a.as_os_str().as_bytes().cmp(b.as_os_str().as_bytes()));
        files.dedup();
        files
    }

    /// [`Plan::files`] as lines for a terminal: each path through
    /// [`banger_host::text::escape_for_terminal`], so a file name holding a
    /// newline or an escape sequence shows as one escaped line and cannot
    /// forge entries or drive the terminal.
    pub fn listing(&self) -> Vec<String> {
        self.files()
            .iter()
            .map(|file| banger_host::text::escape_for_terminal(&file.to_string_lossy()))
            .collect()
    }

    /// Whether the copy has a mise/asdf tool file at its top level
    /// (see [`TOOL_FILES`]).
    pub fn has_tool_files(&self) -> bool {
        self.entries
            .iter()
            .any(|entry| TOOL_FILES.iter().any(|name| entry.path == Path::new(name)))
    }
}

/// Free-function form of [`Plan::has_tool_files`].
pub fn has_tool_files(plan: &Plan) -> bool {
    plan.has_tool_files()
}

fn with_slash(path: &Path) -> PathBuf {
    let mut bytes = path.as_os_str().as_bytes().to_vec();
    bytes.push(b'/');
    PathBuf::from(OsString::from_vec(bytes))
}

/// Inspects the checkout containing `host_path` and lists what a prepare
/// with `options` would send.
pub fn plan(host_path: &Path, options: &PrepareOptions) -> Result<Plan, PlanError> {
    let repo_root = toplevel(host_path)?;
    if options.mode == Mode::FullCopy {
        if options.branch.is_some() {
            return Err(PlanError::NeedsShallow { option: "--branch" });
        }
        if options.from.is_some() {
            return Err(PlanError::NeedsShallow { option: "--from" });
        }
    }
    if let Some(name) = &options.branch {
        if !git::valid_branch_name(&repo_root, name)? {
            return Err(PlanError::BadBranchName { name: name.clone() });
        }
    }
    let head = match &options.from {
        Some(reference) => {
            resolve_commit(&repo_root, reference)?.ok_or_else(|| PlanError::UnknownRef {
                repo: repo_root.clone(),
                reference: reference.clone(),
            })?
        }
        None => resolve_commit(&repo_root, "HEAD")?.ok_or_else(|| PlanError::NoCommits {
            repo: repo_root.clone(),
        })?,
    };
    let branch = match (&options.branch, &options.from) {
        (Some(name), _) => Some(name.clone()),
        (None, Some(reference)) => local_branch(&repo_root, reference)?,
        (None, None) => current_branch(&repo_root)?,
    };
    let mut entries = match (options.mode, &options.from) {
        (Mode::FullCopy, _) => full_copy_entries(&repo_root)?,
        (Mode::Shallow, Some(_)) => commit_entries(&repo_root, &head)?,
        (Mode::Shallow, None) => work_tree_entries(&repo_root, options.include_untracked)?,
    };
    entries.sort_by(|a, b| {
        a.path
            .as_os_str()
            .as_bytes()
            .cmp(b.path.as_os_str().as_bytes())
    });
    entries.dedup_by(|a, b| a.path == b.path);
    let object_format = git::line(&git::stdout(
        &repo_root,
        &["rev-parse".as_ref(), "--show-object-format".as_ref()],
    )?);
    Ok(Plan {
        user_name: git::config(&repo_root, "user.name")?,
        user_email: git::config(&repo_root, "user.email")?,
        repo_root,
        head,
        branch,
        options: options.clone(),
        entries,
        object_format,
    })
}

/// The top level of the working tree containing `path` (where a pull
/// writes its branch; callers that restrict host paths check it too).
pub fn toplevel(path: &Path) -> Result<PathBuf, PlanError> {
    let not_a_checkout = || PlanError::NotACheckout {
        path: path.to_owned(),
    };
    if !path.is_dir() {
        return Err(not_a_checkout());
    }
    let output = git::run(path, &["rev-parse".as_ref(), "--show-toplevel".as_ref()])?;
    if !output.status.success() || output.stdout.is_empty() {
        return Err(not_a_checkout());
    }
    Ok(git::line_path(&output.stdout))
}

/// `reference^{commit}` as a full object id, `None` if it does not resolve.
fn resolve_commit(repo: &Path, reference: &str) -> Result<Option<String>, GitError> {
    let spec = format!("{reference}^{{commit}}");
    let output = git::run(
        repo,
        &[
            "rev-parse".as_ref(),
            "--verify".as_ref(),
            "--quiet".as_ref(),
            "--end-of-options".as_ref(),
            spec.as_ref(),
        ],
    )?;
    Ok(output
        .status
        .success()
        .then(|| git::line(&output.stdout))
        .filter(|oid| !oid.is_empty()))
}

/// `Some(name)` if `name` is a local branch.
fn local_branch(repo: &Path, name: &str) -> Result<Option<String>, GitError> {
    let full = format!("refs/heads/{name}");
    let output = git::run(
        repo,
        &[
            "show-ref".as_ref(),
            "--verify".as_ref(),
            "--quiet".as_ref(),
            full.as_ref(),
        ],
    )?;
    Ok(output.status.success().then(|| name.to_owned()))
}

/// The checked-out branch, `None` when HEAD is detached.
fn current_branch(repo: &Path) -> Result<Option<String>, GitError> {
    let output = git::run(
        repo,
        &["symbolic-ref".as_ref(), "--quiet".as_ref(), "HEAD".as_ref()],
    )?;
    if !output.status.success() {
        return Ok(None);
    }
    Ok(git::line(&output.stdout)
        .strip_prefix("refs/heads/")
        .map(str::to_owned))
}

fn split_nul(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    bytes.split(|b| *b == 0).filter(|record| !record.is_empty())
}

fn os_path(bytes: &[u8]) -> PathBuf {
    PathBuf::from(OsStr::from_bytes(bytes))
}

/// Tracked files present in the working tree (plus untracked ones when
/// asked); refuses submodules.
fn work_tree_entries(repo: &Path, include_untracked: bool) -> Result<Vec<Entry>, PlanError> {
    let staged = git::stdout(repo, &["ls-files".as_ref(), "-z".as_ref(), "-s".as_ref()])?;
    let mut paths = Vec::new();
    for record in split_nul(&staged) {
        // `<mode> <oid> <stage>\t<path>`
        let Some(tab) = record.iter().position(|b| *b == b'\t') else {
            continue;
        };
        let path = &record[tab + 1..];
        if record.starts_with(b"160000 ") || path == b".gitmodules" {
            return Err(PlanError::Submodules {
                repo: repo.to_owned(),
            });
        }
        paths.push(os_path(path));
    }
    if repo.join(".gitmodules").exists() {
        return Err(PlanError::Submodules {
            repo: repo.to_owned(),
        });
    }
    let tracked: HashSet<PathBuf> = paths.iter().cloned().collect();
    if include_untracked {
        let others = git::stdout(
            repo,
            &[
                "ls-files".as_ref(),
                "-z".as_ref(),
                "--others".as_ref(),
                "--exclude-standard".as_ref(),
            ],
        )?;
        // A trailing `/` is a nested repository git does not descend into.
        paths.extend(
            split_nul(&others)
                .filter(|path| !path.ends_with(b"/"))
                .map(os_path),
        );
    }
    let changed = changed_paths(repo)?;
    let mut entries = Vec::with_capacity(paths.len());
    for path in paths {
        match fs_err::symlink_metadata(repo.join(&path)) {
            // Tracked but deleted (or replaced by a directory): not sent,
            // so the guest's `git status` shows it deleted as on the host.
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(PlanError::Read {
                    path: repo.join(&path),
                    source,
                });
            }
            Ok(meta) if meta.is_file() || meta.is_symlink() => {
                let source = if tracked.contains(&path) && !changed.contains(&path) {
                    Source::Checkout
                } else {
                    Source::WorkTree
                };
                entries.push(Entry { path, source });
            }
            Ok(_) => {}
        }
    }
    Ok(entries)
}

/// Tracked paths whose working-tree or index state differs from HEAD
/// (`git status`, which re-hashes files whose stat data is stale, so
/// "unchanged" is exact). `--no-optional-locks`: the host's index is never
/// rewritten by a prepare.
fn changed_paths(repo: &Path) -> Result<HashSet<PathBuf>, PlanError> {
    let status = git::stdout(
        repo,
        &[
            "--no-optional-locks".as_ref(),
            "status".as_ref(),
            "--porcelain=v1".as_ref(),
            "-z".as_ref(),
            "--untracked-files=no".as_ref(),
            "--no-renames".as_ref(),
        ],
    )?;
    // `XY <path>`: two status letters and a space before the path.
    Ok(split_nul(&status)
        .filter_map(|record| record.get(3..))
        .map(os_path)
        .collect())
}

/// Every path of `commit`'s tree, all checked out in the guest; refuses
/// submodules.
fn commit_entries(repo: &Path, commit: &str) -> Result<Vec<Entry>, PlanError> {
    let listing = git::stdout(
        repo,
        &[
            "ls-tree".as_ref(),
            "-r".as_ref(),
            "-z".as_ref(),
            "--full-tree".as_ref(),
            commit.as_ref(),
        ],
    )?;
    let mut entries = Vec::new();
    for record in split_nul(&listing) {
        // `<mode> SP <type> SP <oid> TAB <path>`
        let Some(tab) = record.iter().position(|b| *b == b'\t') else {
            continue;
        };
        let path = &record[tab + 1..];
        // Skip the mode; the type says whether it is a submodule.
        let kind = record[..tab]
            .split(|b| *b == b' ')
            .nth(1)
            .unwrap_or_default();
        if kind == b"commit" || path == b".gitmodules" {
            return Err(PlanError::Submodules {
                repo: repo.to_owned(),
            });
        }
        entries.push(Entry {
            path: os_path(path),
            source: Source::Checkout,
        });
    }
    Ok(entries)
}

/// Everything under `root` (files, symlinks, directories), not following
/// symlinks; sockets, FIFOs and devices are skipped.
fn full_copy_entries(root: &Path) -> Result<Vec<Entry>, PlanError> {
    if !root.join(".git").is_dir() {
        return Err(PlanError::LinkedWorktree {
            repo: root.to_owned(),
        });
    }
    let mut entries = Vec::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(dir) = pending.pop() {
        let absolute = root.join(&dir);
        let read = |source| PlanError::Read {
            path: absolute.clone(),
            source,
        };
        for item in fs_err::read_dir(&absolute).map_err(read)? {
            let item = item.map_err(read)?;
            let path = dir.join(item.file_name());
            let kind = item.file_type().map_err(read)?;
            if kind.is_dir() {
                entries.push(Entry {
                    path: path.clone(),
                    source: Source::Dir,
                });
                pending.push(path);
            } else if kind.is_file() || kind.is_symlink() {
                entries.push(Entry {
                    path,
                    source: Source::WorkTree,
                });
            }
        }
    }
    Ok(entries)
}
