//! The VM's serial console, copied into a bounded log file by a small
//! separate process.
//!
//! Both VMMs write the guest's serial console to their stdout. Pointing that
//! at a file would let a chatty guest fill the host's disk, and pointing it at
//! a pipe read by the daemon would hand the VMM EPIPE (and a dead console) the
//! moment the daemon is killed. So the stdout goes into a pipe read by a
//! *copier process* started alongside the VMM, in its own session: it lives
//! exactly as long as the VMM (it exits at end of file) and keeps the log
//! within bounds by rotating `console.log` to `console.log.1` whenever the
//! next bytes would push it past the cap. At most `2 * max_bytes` are on disk.
//!
//! The copier is [`run_console_copier`]; which executable runs it is the
//! caller's choice ([`CopierCommand`]): the daemon re-executes itself as
//! `bangerd console-copier --path P --max-bytes N`, tests use their own binary.

use std::ffi::OsString;
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use thiserror::Error;

use crate::process::{ProcessError, ProcessIdentity, spawn_detached};

/// Failures of the console copier or of starting a VMM with it.
#[derive(Debug, Error)]
pub enum ConsoleError {
    /// Reading, writing or rotating the log failed.
    #[error("console log {path}")]
    Io {
        /// The file that failed.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// Reading the VMM's output failed.
    #[error("reading console input for {path}")]
    Input {
        /// The log being written.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The copier's command line was wrong.
    #[error("console-copier: {problem} (usage: --path FILE --max-bytes N)")]
    Usage {
        /// What is wrong with it (part of this message, not a cause).
        problem: UsageProblem,
    },
    /// Creating the pipe between VMM and copier failed.
    #[error("cannot create the console pipe")]
    Pipe(#[source] std::io::Error),
    /// Starting the copier or the VMM failed.
    #[error(transparent)]
    Process(#[from] ProcessError),
}

/// What is wrong with a `console-copier` command line.
#[derive(Debug, Error)]
pub enum UsageProblem {
    /// An option is the last argument, without its value.
    #[error("{} needs a value", .option.to_string_lossy())]
    MissingValue {
        /// The option.
        option: OsString,
    },
    /// `--max-bytes` is not a number.
    #[error("--max-bytes: {value:?} is not a number")]
    NotANumber {
        /// The value given.
        value: OsString,
    },
    /// An argument the copier does not know.
    #[error("unknown argument {}", .argument.to_string_lossy())]
    UnknownArgument {
        /// The argument.
        argument: OsString,
    },
    /// A required option is absent.
    #[error("{option} is required")]
    Required {
        /// The option (`--path` or `--max-bytes`).
        option: &'static str,
    },
}

impl From<UsageProblem> for ConsoleError {
    fn from(problem: UsageProblem) -> Self {
        Self::Usage { problem }
    }
}

/// The program that runs [`run_console_copier`], e.g. `bangerd` with
/// `args = ["console-copier"]`. `--path FILE --max-bytes N` are appended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopierCommand {
    /// Executable.
    pub program: PathBuf,
    /// Arguments before `--path`.
    pub args: Vec<OsString>,
}

/// Name of the rotated copy: `console.log` -> `console.log.1`.
pub fn rotated_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".1");
    PathBuf::from(name)
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> ConsoleError + '_ {
    move |source| ConsoleError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn open_append(path: &Path) -> Result<(fs_err::File, u64), ConsoleError> {
    use fs_err::os::unix::fs::OpenOptionsExt;
    let file = fs_err::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(io_error(path))?;
    let len = file.metadata().map_err(io_error(path))?.len();
    Ok((file, len))
}

/// Copies `input` into `path` until end of file, keeping `path` at most
/// `max_bytes` long by renaming it to `path.1` (replacing an older one) when
/// the next bytes would not fit. Appends to an existing log (VM restarts).
pub fn run_console_copier(
    mut input: impl Read,
    path: &Path,
    max_bytes: u64,
) -> Result<(), ConsoleError> {
    let max_bytes = max_bytes.max(1);
    let (mut file, mut len) = open_append(path)?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(error) if error.kind() == ErrorKind::Interrupted => continue,
            Err(source) => {
                return Err(ConsoleError::Input {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        let mut chunk = &buf[..n];
        while !chunk.is_empty() {
            if len >= max_bytes {
                // Rename first: a reader holding the old file keeps the old
                // inode, and the new file starts empty.
                fs_err::rename(path, rotated_path(path)).map_err(io_error(path))?;
                (file, len) = open_append(path)?;
            }
            let room = usize::try_from(max_bytes - len).unwrap_or(usize::MAX);
            let take = chunk.len().min(room);
            file.write_all(&chunk[..take]).map_err(io_error(path))?;
            len += take as u64;
            chunk = &chunk[take..];
        }
    }
}

/// Entry point for a `console-copier --path FILE --max-bytes N` command:
/// parses the arguments (without the program name) and copies stdin.
pub fn copier_main(args: impl IntoIterator<Item = OsString>) -> Result<(), ConsoleError> {
    let mut path = None;
    let mut max_bytes = None;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let Some(value) = args.next() else {
            return Err(UsageProblem::MissingValue { option: arg }.into());
        };
        match arg.to_str() {
            Some("--path") => path = Some(PathBuf::from(value)),
            Some("--max-bytes") => {
                let Some(number) = value.to_str().and_then(|v| v.parse::<u64>().ok()) else {
                    return Err(UsageProblem::NotANumber { value }.into());
                };
                max_bytes = Some(number);
            }
            _ => return Err(UsageProblem::UnknownArgument { argument: arg }.into()),
        }
    }
    let path = path.ok_or(UsageProblem::Required { option: "--path" })?;
    let max_bytes = max_bytes.ok_or(UsageProblem::Required {
        option: "--max-bytes",
    })?;
    run_console_copier(std::io::stdin().lock(), &path, max_bytes)
}

/// The two processes behind a running VMM's console.
#[derive(Debug, Clone)]
pub struct ConsoleProcesses {
    /// The VMM.
    pub vmm: ProcessIdentity,
    /// Its console copier.
    pub copier: ProcessIdentity,
}

/// Starts the copier, then `vmm` with stdout and stderr into the copier's
/// pipe and stdin from /dev/null; both detached (see [`spawn_detached`]).
/// Used by both backends; public so other long-running guests of the daemon
/// (and tests) can get the same bounded, daemon-independent console.
pub fn spawn_with_console(
    mut vmm: Command,
    copier: &CopierCommand,
    log: &Path,
    max_bytes: u64,
) -> Result<ConsoleProcesses, ConsoleError> {
    // CLOEXEC: no other process the daemon starts may inherit the write end,
    // or the copier would never see end of file.
    let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| ConsoleError::Pipe(e.into()))?;
    let mut copier_cmd = Command::new(&copier.program);
    copier_cmd
        .args(&copier.args)
        .arg("--path")
        .arg(log)
        .arg("--max-bytes")
        .arg(max_bytes.to_string())
        .stdin(Stdio::from(read))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let copier_id = spawn_detached(copier_cmd)?;
    let write_err = write.try_clone().map_err(ConsoleError::Pipe)?;
    vmm.stdin(Stdio::null())
        .stdout(Stdio::from(write))
        .stderr(Stdio::from(write_err));
    let vmm_id = match spawn_detached(vmm) {
        Ok(id) => id,
        Err(error) => {
            // The copier would exit at EOF anyway (the command owning the
            // write end is dropped here); kill it so nothing lingers.
            let _ = copier_id.signal(crate::process::Signal::KILL);
            return Err(error.into());
        }
    };
    Ok(ConsoleProcesses {
        vmm: vmm_id,
        copier: copier_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader producing `total` bytes of numbered lines in odd-sized reads.
    struct Chatty {
        left: usize,
        line: u64,
    }

    impl Read for Chatty {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.left == 0 {
                return Ok(0);
            }
            let text = format!("guest line {} {}\n", self.line, "x".repeat(61));
            self.line += 1;
            let n = text.len().min(buf.len()).min(self.left);
            buf[..n].copy_from_slice(&text.as_bytes()[..n]);
            self.left -= n;
            Ok(n)
        }
    }

    #[test]
    fn log_stays_within_bounds_and_keeps_the_latest_output() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("console.log");
        let max = 10_000;
        run_console_copier(
            Chatty {
                left: 1_000_000,
                line: 0,
            },
            &log,
            max,
        )
        .unwrap();
        let current = fs_err::metadata(&log).unwrap().len();
        let rotated = fs_err::metadata(rotated_path(&log)).unwrap().len();
        assert!(current <= max && rotated <= max, "{current} {rotated}");
        assert_eq!(rotated, max, "rotated file is full");
        // The last line the guest wrote is at the end of the current file.
        let text = fs_err::read_to_string(&log).unwrap();
        let last = text.lines().last().unwrap();
        assert!(last.starts_with("guest line "), "{last}");
        let total: u64 = 1_000_000;
        assert_eq!(
            (total - current) % max,
            0,
            "bytes are neither lost nor duplicated"
        );
    }

    #[test]
    fn one_huge_write_is_split_and_existing_log_is_appended() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("console.log");
        fs_err::write(&log, b"previous boot\n").unwrap();
        run_console_copier(&b"abc"[..], &log, 100).unwrap();
        assert_eq!(fs_err::read(&log).unwrap(), b"previous boot\nabc");
        run_console_copier(&[b'z'; 1000][..], &log, 100).unwrap();
        assert!(fs_err::metadata(&log).unwrap().len() <= 100);
        assert_eq!(fs_err::metadata(rotated_path(&log)).unwrap().len(), 100);
    }

    #[test]
    fn copier_arguments_are_checked() {
        let args = |list: &[&str]| list.iter().map(OsString::from).collect::<Vec<_>>();
        assert!(matches!(
            copier_main(args(&["--path"])),
            Err(ConsoleError::Usage {
                problem: UsageProblem::MissingValue { .. }
            })
        ));
        let error = copier_main(args(&["--path", "/x", "--max-bytes", "many"])).unwrap_err();
        assert!(
            matches!(
                &error,
                ConsoleError::Usage {
                    problem: UsageProblem::NotANumber { .. }
                }
            ),
            "{error}"
        );
        assert_eq!(
            error.to_string(),
            "console-copier: --max-bytes: \"many\" is not a number (usage: --path FILE --max-bytes N)"
        );
        assert!(matches!(
            copier_main(args(&["--bogus", "1"])),
            Err(ConsoleError::Usage {
                problem: UsageProblem::UnknownArgument { .. }
            })
        ));
        assert!(matches!(
            copier_main(args(&["--max-bytes", "1"])),
            Err(ConsoleError::Usage {
                problem: UsageProblem::Required { option: "--path" }
            })
        ));
    }
}
