//! Sending a planned copy into the guest: one tar stream into one ssh.
//!
//! The tar stream is built in-process and written straight into the stdin
//! of a single `ssh ... sh -c <prepare.sh>` that checks the destination
//! is absent or empty, says `ready`, and runs `tar -x`. Nothing is staged
//! on the host except the shallow `.git`'s pack and index.

use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Stdio};
use std::time::{Duration, Instant};

use banger_host::ssh::{SshTarget, TtyMode, ssh_command};
use tar::Builder;

use crate::git::GitError;
use crate::plan::{Mode, Plan, Source};
use crate::shallow::Shallow;
use crate::stream::{self, Counting, Progress};

/// Paths the guest writes with `git checkout-index` after unpacking (the
/// files identical to the commit), NUL-separated; the script deletes it.
pub(crate) const CHECKOUT_LIST_PATH: &str = ".git/banger-checkout";

/// The guest-side script (`sh -c`): check, `echo ready`, `tar -x`.
const PREPARE_SCRIPT: &str = include_str!("prepare.sh");

/// The script's exit status when the destination is not empty.
const EXIT_NOT_EMPTY: i32 = 17;

/// Exit status of the guest script when a shallow copy finds no git.
const EXIT_NO_GIT: i32 = 18;

/// The ref recording the commit the guest copy was made from; `pull`
/// bundles everything after it.
pub const BASE_REF: &str = "refs/banger/base";

/// [`BASE_REF`] as a path in the tar stream.
pub(crate) const BASE_REF_PATH: &str = ".git/refs/banger/base";

/// Write buffer in front of ssh's stdin: large writes, few syscalls.
const BUFFER: usize = 1 << 20;

/// What a finished prepare sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrepareReport {
    /// Tar entries sent (files, symlinks, directories, `.git` files).
    pub files: u64,
    /// Bytes of tar stream sent.
    pub bytes: u64,
    /// Wall time from start to the guest's `tar` finishing.
    pub elapsed: Duration,
    /// Where the copy is in the guest.
    pub guest_path: String,
    /// The commit the copy is based on.
    pub head: String,
    /// The guest checkout's branch; `None` for a detached HEAD.
    pub branch: Option<String>,
}

/// Why a prepare failed.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// The guest path exists and is not empty; guest work is never
    /// overwritten.
    #[error(
        "{guest_path} in VM {alias} already exists and is not empty; pull its work first \
         (`banger vm workspace pull`) or choose another --guest-path"
    )]
    GuestNotEmpty {
        /// The VM's ssh alias (`<name>.vm`).
        alias: String,
        /// The guest path.
        guest_path: String,
    },
    /// ssh could not be started.
    #[error("cannot run {}: {source}; install openssh-client", program.display())]
    SpawnSsh {
        /// The ssh program.
        program: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// ssh or the guest side failed.
    #[error("copying into {guest_path} in VM {alias} failed ({status}): {stderr}")]
    Guest {
        /// The VM's ssh alias.
        alias: String,
        /// The guest path.
        guest_path: String,
        /// ssh's exit status as text.
        status: String,
        /// What ssh and the guest printed on stderr, trimmed.
        stderr: String,
    },
    /// The temporary directory for the shallow `.git` could not be made.
    #[error("cannot create a temporary directory in {} for the shallow .git: {source}", path.display())]
    TempDir {
        /// Where it was to be created (the repository's object directory).
        path: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
    /// Reading a host file or writing the stream failed.
    #[error("sending the workspace failed: {source}")]
    Stream {
        /// The IO error (names the file when a host read failed).
        source: std::io::Error,
    },
    /// A host git command failed.
    #[error(transparent)]
    Git(#[from] GitError),
    /// The guest has no git, which a shallow copy needs to write its files.
    #[error("VM {alias} has no git; install it in the guest, or use --mode full_copy")]
    NoGuestGit {
        /// The VM's ssh alias.
        alias: String,
    },
}

/// Sends `plan` into the guest at `plan.options().guest_path`, calling
/// `progress` as entries go out. Blocking; the CLI runs it off its async
/// runtime.
pub fn prepare(
    plan: &Plan,
    ssh_program: &Path,
    target: &SshTarget,
    progress: &mut dyn FnMut(Progress),
) -> Result<PrepareReport, PrepareError> {
    let started = Instant::now();
    let guest_path = plan.options().guest_path.clone();
    // Packing runs in git processes while this thread streams files.
    let shallow = match plan.options().mode {
        Mode::Shallow => Some(Shallow::start(plan)?),
        Mode::FullCopy => None,
    };
    let readonly = if plan.options().readonly {
        "readonly"
    } else {
        "writable"
    };
    let remote = [
        "sh".to_owned(),
        "-c".to_owned(),
        PREPARE_SCRIPT.to_owned(),
        "banger-prepare".to_owned(),
        guest_path.clone(),
        readonly.to_owned(),
        plan.options().mode.as_str().to_owned(),
    ];
    let mut child = ssh_command(ssh_program, target, &remote, TtyMode::Batch)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| PrepareError::SpawnSsh {
            program: ssh_program.to_owned(),
            source,
        })?;
    let stderr = drain_stderr(&mut child);
    let ready = wait_ready(&mut child);
    let sent = match (ready, child.stdin.take()) {
        (true, Some(stdin)) => send(plan, shallow, stdin, progress).map(Some),
        _ => Ok(None),
    };
    let status = child.wait().map_err(|source| PrepareError::SpawnSsh {
        program: ssh_program.to_owned(),
        source,
    })?;
    let stderr = stderr.join().unwrap_or_default();
    if status.code() == Some(EXIT_NO_GIT) {
        return Err(PrepareError::NoGuestGit {
            alias: target.alias.clone(),
        });
    }
    if status.code() == Some(EXIT_NOT_EMPTY) {
        return Err(PrepareError::GuestNotEmpty {
            alias: target.alias.clone(),
            guest_path,
        });
    }
    if !status.success() {
        return Err(PrepareError::Guest {
            alias: target.alias.clone(),
            guest_path,
            status: status.to_string(),
            stderr,
        });
    }
    let Some(sent) = sent? else {
        return Err(PrepareError::Guest {
            alias: target.alias.clone(),
            guest_path,
            status: status.to_string(),
            stderr: "the guest exited before receiving the files".to_owned(),
        });
    };
    Ok(PrepareReport {
        files: sent.files_sent,
        bytes: sent.bytes_sent,
        elapsed: started.elapsed(),
        guest_path,
        head: plan.head().to_owned(),
        branch: plan.branch().map(str::to_owned),
    })
}

/// Reads the child's stderr on a thread (so a chatty guest cannot block
/// on a full pipe while we write its stdin).
fn drain_stderr(child: &mut Child) -> std::thread::JoinHandle<String> {
    let stderr = child.stderr.take();
    std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut stderr) = stderr {
            // Best effort: the text only decorates an error.
            let _ = stderr.read_to_string(&mut text);
        }
        text.trim().to_owned()
    })
}

/// Whether the guest script printed `ready` (its checks passed). The
/// rest of its stdout is drained on a thread rather than closed, so a
/// guest command that prints something never dies of SIGPIPE.
fn wait_ready(child: &mut Child) -> bool {
    let Some(stdout) = child.stdout.take() else {
        return false;
    };
    let mut reader = BufReader::new(stdout);
    let mut line = String::new();
    let ok = reader.read_line(&mut line).is_ok();
    std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
    ok && line.trim_end() == "ready"
}

/// Writes every entry and the `.git` into ssh's stdin, then closes it.
fn send(
    plan: &Plan,
    shallow: Option<Shallow>,
    stdin: ChildStdin,
    progress: &mut dyn FnMut(Progress),
) -> Result<Progress, PrepareError> {
    let stream_error = |source| PrepareError::Stream { source };
    let streamed = plan
        .entries
        .iter()
        .filter(|entry| entry.source != Source::Checkout)
        .count();
    let counting = Counting::new(
        BufWriter::with_capacity(BUFFER, stdin),
        streamed as u64,
        progress,
    );
    let mut builder = Builder::new(counting);
    builder.follow_symlinks(false);
    let root = plan.repo_root();
    // NUL-separated paths for the guest's `git checkout-index -z --stdin`.
    let mut checkout = Vec::new();
    for entry in &plan.entries {
        let sent = match &entry.source {
            Source::WorkTree => {
                stream::append_path(&mut builder, &entry.path, &root.join(&entry.path)).map_err(
                    |source| PrepareError::Stream {
                        source: std::io::Error::new(
                            source.kind(),
                            format!("{}: {source}", root.join(&entry.path).display()),
                        ),
                    },
                )?
            }
            Source::Dir => stream::append_path(&mut builder, &entry.path, &root.join(&entry.path))
                .map_err(stream_error)?,
            Source::Checkout => {
                checkout.extend_from_slice(entry.path.as_os_str().as_bytes());
                checkout.push(0);
                false
            }
        };
        if sent {
            builder.get_mut().entry_done();
        }
    }
    match shallow {
        Some(shallow) => {
            // The `.git` joins the total only now that its pack exists.
            let mut count = shallow.finish(plan, &mut builder)?;
            if !checkout.is_empty() {
                stream::append_bytes(
                    &mut builder,
                    Path::new(CHECKOUT_LIST_PATH),
                    0o600,
                    &checkout,
                )
                .map_err(stream_error)?;
                count += 1;
            }
            builder.get_mut().add_total(count);
            for _ in 0..count {
                builder.get_mut().entry_done();
            }
        }
        None => {
            // A full copy keeps the host's `.git`; only the base ref is added.
            let head = format!("{}\n", plan.head());
            stream::append_bytes(
                &mut builder,
                Path::new(BASE_REF_PATH),
                0o644,
                head.as_bytes(),
            )
            .map_err(stream_error)?;
            builder.get_mut().add_total(1);
            builder.get_mut().entry_done();
        }
    }
    let counting = builder.into_inner().map_err(stream_error)?;
    let sent = counting.progress();
    let mut writer = counting.into_inner();
    writer.flush().map_err(stream_error)?;
    // Dropping the writer closes ssh's stdin: the guest tar sees EOF.
    drop(writer);
    Ok(sent)
}
