//! The generated one-commit `.git` of a shallow prepare.
//!
//! Rather than `git init` + `git fetch --depth 1` (whose `index-pack`
//! re-inflates and re-hashes every object), the pack is written directly
//! by `git rev-list --objects --no-walk <commit> | git pack-objects`
//! (no delta search, existing compressed data reused), started before the
//! working tree streams so both run at once. The index comes from
//! `git read-tree` into a temporary index file; the small files (HEAD,
//! refs, config, shallow) are written into the tar stream from memory.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use tar::Builder;
use tempfile::TempDir;

use crate::git::{self, GitError};
use crate::plan::Plan;
use crate::prepare::{BASE_REF_PATH, PrepareError};
use crate::stream;

/// A shallow `.git` under construction.
pub(crate) struct Shallow {
    dir: TempDir,
    rev_list: Child,
    pack_objects: Child,
}

fn spawn_error(repo: &Path, args: &str, source: std::io::Error) -> PrepareError {
    PrepareError::Git(GitError::Spawn {
        args: args.to_owned(),
        dir: repo.to_owned(),
        source,
    })
}

impl Shallow {
    /// Starts packing `plan`'s commit and writes its index.
    pub(crate) fn start(plan: &Plan) -> Result<Self, PrepareError> {
        let repo = plan.repo_root();
        // pack-objects writes a temporary file in the repository's object
        // directory and renames it into place, so the destination must be
        // on the same filesystem: a temp dir inside the object directory.
        let objects = repo.join(git::line_path(&git::stdout(
            repo,
            &[
                "rev-parse".as_ref(),
                "--git-path".as_ref(),
                "objects".as_ref(),
            ],
        )?));
        let dir = tempfile::Builder::new()
            .prefix("banger-workspace-")
            .tempdir_in(&objects)
            .map_err(|source| PrepareError::TempDir {
                path: objects.clone(),
                source,
            })?;
        let mut rev_list = git::command(repo)
            .args(["rev-list", "--objects", "--no-walk", plan.head()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| spawn_error(repo, "rev-list", e))?;
        let objects = rev_list.stdout.take().map_or_else(Stdio::null, Stdio::from);
        let pack_objects = git::command(repo)
            // The guest's git may predate .rev files; it rebuilds them.
            // The pack is temporary: fsyncing it only waits for the disk
            // (seconds under write-back load). Older git ignores the key.
            .args([
                "-c",
                "pack.writeReverseIndex=false",
                "-c",
                "core.fsync=none",
                "-c",
                "core.fsyncObjectFiles=false",
                "pack-objects",
                "-q",
            ])
            .arg("--window=0")
            .arg(dir.path().join("pack"))
            .stdin(objects)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| spawn_error(repo, "pack-objects", e))?;
        let shallow = Self {
            dir,
            rev_list,
            pack_objects,
        };
        // Index features the guest's (possibly older) git may lack, or
        // that would write extra files next to the temporary index.
        let output = git::command(repo)
            .env("GIT_INDEX_FILE", shallow.index_path())
            .args([
                "-c",
                "core.splitIndex=false",
                "-c",
                "core.untrackedCache=false",
                "-c",
                "index.sparse=false",
                "read-tree",
                plan.head(),
            ])
            .output()
            .map_err(|e| spawn_error(repo, "read-tree", e))?;
        git::check(repo, &["read-tree".as_ref()], &output)?;
        Ok(shallow)
    }

    fn index_path(&self) -> PathBuf {
        self.dir.path().join("index")
    }

    /// Waits for the pack and appends the whole `.git` to `builder`;
    /// returns the number of entries written.
    pub(crate) fn finish<W: Write>(
        self,
        plan: &Plan,
        builder: &mut Builder<W>,
    ) -> Result<u64, PrepareError> {
        let repo = plan.repo_root();
        let index_path = self.index_path();
        let Self {
            dir,
            mut rev_list,
            pack_objects,
        } = self;
        let pack = pack_objects
            .wait_with_output()
            .map_err(|e| spawn_error(repo, "pack-objects", e))?;
        let mut rev_list_err = Vec::new();
        if let Some(mut stderr) = rev_list.stderr.take() {
            // Best effort: the text only decorates an error below.
            let _ = stderr.read_to_end(&mut rev_list_err);
        }
        let rev_status = rev_list
            .wait()
            .map_err(|e| spawn_error(repo, "rev-list", e))?;
        if !rev_status.success() {
            return Err(PrepareError::Git(GitError::Failed {
                args: format!("rev-list --objects --no-walk {}", plan.head()),
                dir: repo.to_owned(),
                status: rev_status.to_string(),
                stderr: String::from_utf8_lossy(&rev_list_err).trim().to_owned(),
            }));
        }
        git::check(repo, &["pack-objects".as_ref()], &pack)?;
        let pack_name = format!("pack-{}", git::line(&pack.stdout));

        let head_line = format!("{}\n", plan.head());
        let mut small: Vec<(String, Vec<u8>)> = vec![
            (".git/config".into(), config(plan).into_bytes()),
            (".git/shallow".into(), head_line.clone().into_bytes()),
            (BASE_REF_PATH.into(), head_line.clone().into_bytes()),
            (".git/description".into(), b"banger workspace\n".to_vec()),
        ];
        match plan.branch() {
            Some(branch) => {
                small.push((
                    ".git/HEAD".into(),
                    format!("ref: refs/heads/{branch}\n").into_bytes(),
                ));
                small.push((format!(".git/refs/heads/{branch}"), head_line.into_bytes()));
            }
            None => small.push((".git/HEAD".into(), head_line.into_bytes())),
        }
        // The host's personal ignore list keeps the guest's `git status`
        // the same as the host's.
        let exclude = git::line_path(&git::stdout(
            repo,
            &[
                "rev-parse".as_ref(),
                "--git-path".as_ref(),
                "info/exclude".as_ref(),
            ],
        )?);
        if let Ok(content) = fs_err::read(repo.join(exclude)) {
            small.push((".git/info/exclude".into(), content));
        }
        let stream_error = |source| PrepareError::Stream { source };
        let mut count = 0;
        for (name, content) in &small {
            stream::append_bytes(builder, Path::new(name), 0o644, content).map_err(stream_error)?;
            count += 1;
        }
        for dir in [".git/refs/tags", ".git/objects/info", ".git/branches"] {
            stream::append_dir(builder, Path::new(dir)).map_err(stream_error)?;
            count += 1;
        }
        let files = [
            (index_path, PathBuf::from(".git/index")),
            (
                dir.path().join(format!("{pack_name}.idx")),
                PathBuf::from(format!(".git/objects/pack/{pack_name}.idx")),
            ),
            (
                dir.path().join(format!("{pack_name}.pack")),
                PathBuf::from(format!(".git/objects/pack/{pack_name}.pack")),
            ),
        ];
        for (source, name) in files {
            if !stream::append_path(builder, &name, &source).map_err(stream_error)? {
                return Err(PrepareError::Stream {
                    source: std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        format!("git did not write {}", source.display()),
                    ),
                });
            }
            count += 1;
        }
        Ok(count)
    }
}

/// The guest repository's `.git/config`: a plain non-bare repository, the
/// host's object format, and the host's `user.name`/`user.email` so guest
/// commits carry the right author.
fn config(plan: &Plan) -> String {
    let mut out = String::from("[core]\n");
    if plan.object_format == "sha1" {
        out.push_str("\trepositoryformatversion = 0\n");
    } else {
        out.push_str("\trepositoryformatversion = 1\n");
    }
    out.push_str("\tfilemode = true\n\tbare = false\n\tlogallrefupdates = true\n");
    if plan.object_format != "sha1" {
        out.push_str(&format!(
            "[extensions]\n\tobjectformat = {}\n",
            plan.object_format
        ));
    }
    if plan.user_name.is_some() || plan.user_email.is_some() {
        out.push_str("[user]\n");
        if let Some(name) = &plan.user_name {
            out.push_str(&format!("\tname = {}\n", config_value(name)));
        }
        if let Some(email) = &plan.user_email {
            out.push_str(&format!("\temail = {}\n", config_value(email)));
        }
    }
    out
}

/// A git config value in double quotes, `\\` and `"` escaped.
fn config_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("\\n"),
            _ => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_values_are_quoted_for_git() {
        assert_eq!(config_value("Ann O'Neil"), "\"Ann O'Neil\"");
        assert_eq!(config_value("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(config_value("x; y # z"), "\"x; y # z\"");
    }
}
