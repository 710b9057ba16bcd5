//! Running the host's `git` with a clean environment.
//!
//! banger may itself run inside a git hook or an editor that exports
//! `GIT_DIR`/`GIT_INDEX_FILE`; those would silently redirect every command
//! to another repository or index, so they are removed from each child.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Variables that would point git at another repository, index or tree.
const REDIRECTING_VARS: &[&str] = &[
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
    "GIT_CEILING_DIRECTORIES",
];

/// A `git` command that could not be run or failed.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// The `git` program could not be started.
    #[error("cannot run `git {args}` in {}: {source}; is git installed?", dir.display())]
    Spawn {
        /// The arguments, space-joined.
        args: String,
        /// The directory it ran in.
        dir: PathBuf,
        /// Why it could not start.
        source: std::io::Error,
    },
    /// git exited unsuccessfully.
    #[error("`git {args}` in {} failed ({status}): {stderr}", dir.display())]
    Failed {
        /// The arguments, space-joined.
        args: String,
        /// The directory it ran in.
        dir: PathBuf,
        /// The exit status as text.
        status: String,
        /// What git printed on stderr, trimmed.
        stderr: String,
    },
}

/// `git -C dir` with the redirecting variables removed.
pub(crate) fn command(dir: &Path) -> Command {
    let mut command = Command::new("git");
    command.arg("-C").arg(dir);
    for var in REDIRECTING_VARS {
        command.env_remove(var);
    }
    command
}

fn describe(args: &[&OsStr]) -> String {
    args.iter()
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `git -C dir args...`, returning its output whatever the status.
pub(crate) fn run(dir: &Path, args: &[&OsStr]) -> Result<Output, GitError> {
    command(dir)
        .args(args)
        .output()
        .map_err(|source| GitError::Spawn {
            args: describe(args),
            dir: dir.to_owned(),
            source,
        })
}

/// Runs `git -C dir args...` and returns stdout; a failure is an error.
pub(crate) fn stdout(dir: &Path, args: &[&OsStr]) -> Result<Vec<u8>, GitError> {
    let output = run(dir, args)?;
    check(dir, args, &output)?;
    Ok(output.stdout)
}

/// Turns an unsuccessful `output` of `git args` into [`GitError::Failed`].
pub(crate) fn check(dir: &Path, args: &[&OsStr], output: &Output) -> Result<(), GitError> {
    if output.status.success() {
        Ok(())
    } else {
        Err(GitError::Failed {
            args: describe(args),
            dir: dir.to_owned(),
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

/// The first line of `bytes`, without its newline, as text.
pub(crate) fn line(bytes: &[u8]) -> String {
    let end = bytes
        .iter()
        .position(|b| *b == b'\n')
        .unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// The first line of `bytes` as a path (non-UTF-8 bytes kept).
pub(crate) fn line_path(bytes: &[u8]) -> PathBuf {
    let end = bytes
        .iter()
        .position(|b| *b == b'\n')
        .unwrap_or(bytes.len());
    PathBuf::from(OsString::from_vec(bytes[..end].to_vec()))
}

/// `git config --get key` in `dir`; `None` when unset.
pub(crate) fn config(dir: &Path, key: &str) -> Result<Option<String>, GitError> {
    let args: [&OsStr; 3] = ["config".as_ref(), "--get".as_ref(), key.as_ref()];
    let output = run(dir, &args)?;
    // `git config --get` exits 1 when the key is not set.
    if output.status.code() == Some(1) {
        return Ok(None);
    }
    check(dir, &args, &output)?;
    Ok(Some(line(&output.stdout)))
}

/// Whether `name` is a valid new branch name (`git check-ref-format
/// --branch`, and not `-`-prefixed or an `@{-N}` shorthand).
pub(crate) fn valid_branch_name(dir: &Path, name: &str) -> Result<bool, GitError> {
    if name.is_empty() || name.starts_with('-') || name.contains("@{") {
        return Ok(false);
    }
    let output = run(
        dir,
        &[
            "check-ref-format".as_ref(),
            "--branch".as_ref(),
            name.as_ref(),
        ],
    )?;
    Ok(output.status.success() && line(&output.stdout) == name)
}
