//! Copying disk images cheaply, and growing a VM's work disk.
//!
//! [`clone_file`] first tries a reflink (`FICLONE`): on btrfs, XFS with
//! reflink, bcachefs, ... that shares extents and costs nothing. This host's
//! ext4 has no reflink (FACTS.md), so it falls back to a sparse copy that
//! walks the source's data extents with `SEEK_DATA`/`SEEK_HOLE` and copies
//! each with `copy_file_range` (in-kernel, no user-space buffer). Holes are
//! never read, so the cost follows the data in the seed (~100 MiB), not its
//! apparent size (8 GiB or 32 GiB); the destination gets the same length
//! and stays sparse.
//!
//! [`clone_work_seed`] clones the image's work seed into the VM's `vdc` and
//! grows it to `--disk-size` with `resize2fs` (growing an unmounted ext4
//! only writes new group metadata). Shrinking is refused: a work disk holds
//! the user's data.

use fs_err::os::unix::fs::OpenOptionsExt;
use fs_err::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use rustix::fs::SeekFrom;
use rustix::io::Errno;

use crate::tools::find_program;

/// A copy or grow that failed.
#[derive(Debug, thiserror::Error)]
pub enum CloneError {
    /// Opening, creating, sizing or copying a file failed.
    #[error("cannot {op} {path}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The destination already exists; clones never overwrite.
    #[error("{path} already exists; refusing to overwrite it")]
    Exists {
        /// The destination.
        path: PathBuf,
    },
    /// The requested size is smaller than the disk.
    #[error("refusing to shrink {path} from {current} bytes to {requested} bytes")]
    Shrink {
        /// The disk.
        path: PathBuf,
        /// Its current size.
        current: u64,
        /// The requested size.
        requested: u64,
    },
    /// The requested size is not a whole number of KiB (resize2fs works in
    /// filesystem blocks; a ragged tail would be wasted and confusing).
    #[error("size {requested} for {path} is not a multiple of 4096 bytes")]
    UnalignedSize {
        /// The disk.
        path: PathBuf,
        /// The requested size.
        requested: u64,
    },
    /// `resize2fs` is not installed.
    #[error("resize2fs not found on PATH (install e2fsprogs) to grow {path}")]
    NoResize2fs {
        /// The disk.
        path: PathBuf,
    },
    /// `resize2fs` ran and failed.
    #[error("resize2fs {path} failed ({status}): {stderr}")]
    Resize {
        /// The disk.
        path: PathBuf,
        /// Its exit status.
        status: String,
        /// What it said.
        stderr: String,
    },
}

/// How a file was cloned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CloneMethod {
    /// Extents shared with `FICLONE`.
    Reflink,
    /// Data extents copied, holes skipped.
    SparseCopy,
}

/// What a clone did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct CloneReport {
    /// Reflink or sparse copy.
    pub method: CloneMethod,
    /// Bytes of data copied (0 for a reflink).
    pub bytes_copied: u64,
    /// The apparent size of the copy.
    pub apparent_size: u64,
}

fn io_error(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> CloneError + use<> {
    let path = path.to_owned();
    move |source| CloneError::Io { op, path, source }
}

/// Copies `source` to the new file `dest` (created 0600; must not exist):
/// reflink when the filesystem supports it, else a sparse copy of the data
/// extents only. On failure `dest` is removed.
pub fn clone_file(source: &Path, dest: &Path) -> Result<CloneReport, CloneError> {
    let input = File::open(source).map_err(io_error("open", source))?;
    let output = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dest)
        .map_err(|error| {
            if error.kind() == io::ErrorKind::AlreadyExists {
                CloneError::Exists {
                    path: dest.to_owned(),
                }
            } else {
                CloneError::Io {
                    op: "create",
                    path: dest.to_owned(),
                    source: error,
                }
            }
        })?;
    let result = copy_contents(&input, source, &output, dest);
    if result.is_err() {
        // Never leave a half-copied disk that a later step could mistake
        // for a complete one.
        drop(output);
        let _ = fs_err::remove_file(dest);
    }
    result
}

fn copy_contents(
    input: &File,
    source: &Path,
    output: &File,
    dest: &Path,
) -> Result<CloneReport, CloneError> {
    let length = input.metadata().map_err(io_error("stat", source))?.len();
    match rustix::fs::ioctl_ficlone(output, input) {
        Ok(()) => {
            return Ok(CloneReport {
                method: CloneMethod::Reflink,
                bytes_copied: 0,
                apparent_size: length,
            });
        }
        // Not supported by this filesystem, or across filesystems: copy.
        Err(
            Errno::OPNOTSUPP
            | Errno::XDEV
            | Errno::INVAL
            | Errno::NOTTY
            | Errno::NOSYS
            | Errno::PERM,
        ) => {}
        Err(errno) => return Err(io_error("reflink into", dest)(errno.into())),
    }
    output.set_len(length).map_err(io_error("size", dest))?;
    let bytes_copied = copy_data_extents(input, source, output, dest, length)?;
    Ok(CloneReport {
        method: CloneMethod::SparseCopy,
        bytes_copied,
        apparent_size: length,
    })
}

/// Copies every data extent of `input` to the same offset in `output`.
fn copy_data_extents(
    input: &File,
    source: &Path,
    output: &File,
    dest: &Path,
    length: u64,
) -> Result<u64, CloneError> {
    let mut copied = 0u64;
    let mut offset = 0u64;
    while offset < length {
        let start = match rustix::fs::seek(input, SeekFrom::Data(offset)) {
            Ok(start) => start,
            // ENXIO: no data at or after `offset`; the rest is a hole.
            Err(Errno::NXIO) => break,
            Err(errno) => return Err(io_error("seek data in", source)(errno.into())),
        };
        let end = match rustix::fs::seek(input, SeekFrom::Hole(start)) {
            Ok(end) => end.min(length),
            Err(errno) => return Err(io_error("seek hole in", source)(errno.into())),
        };
        let mut in_offset = start;
        let mut out_offset = start;
        while in_offset < end {
            let chunk = usize::try_from(end - in_offset)
                .unwrap_or(usize::MAX)
                .min(1 << 30);
            let written = match rustix::fs::copy_file_range(
                input,
                Some(&mut in_offset),
                output,
                Some(&mut out_offset),
                chunk,
            ) {
                Ok(written) => written,
                // Between filesystems of different types (refused since
                // Linux 5.19: an image on ext4, the state dir on tmpfs), or
                // where the filesystem cannot: copy through a buffer.
                Err(Errno::XDEV | Errno::NOSYS | Errno::OPNOTSUPP) => {
                    let written =
                        copy_through_buffer(input, source, output, dest, in_offset, chunk)?;
                    in_offset += written as u64;
                    out_offset += written as u64;
                    written
                }
                Err(errno) => return Err(io_error("copy data into", dest)(errno.into())),
            };
            if written == 0 {
                // The source shrank under us: what we have is not a copy.
                return Err(io_error("copy data into", dest)(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("{} shrank while being copied", source.display()),
                )));
            }
            copied += written as u64;
        }
        offset = end;
    }
    Ok(copied)
}

/// Copies up to `len` bytes at `offset` of `input` to the same offset of
/// `output` through a buffer (at most 1 MiB at a time); returns how many
/// (0 at the end of `input`).
fn copy_through_buffer(
    input: &File,
    source: &Path,
    output: &File,
    dest: &Path,
    offset: u64,
    len: usize,
) -> Result<usize, CloneError> {
    let mut buffer = vec![0u8; len.min(1 << 20)];
    let read = rustix::io::pread(input, &mut buffer[..], offset)
        .map_err(|errno| io_error("read", source)(errno.into()))?;
    let mut done = 0;
    while done < read {
        let written = rustix::io::pwrite(output, &buffer[done..read], offset + done as u64)
            .map_err(|errno| io_error("copy data into", dest)(errno.into()))?;
        if written == 0 {
            return Err(io_error("copy data into", dest)(
                io::ErrorKind::WriteZero.into(),
            ));
        }
        done += written;
    }
    Ok(read)
}

/// Grows the ext4 image `path` to `size` bytes: extends the file (sparse)
/// and runs `resize2fs`. Same size is a no-op; smaller is refused.
pub fn grow_ext4(path: &Path, size: u64) -> Result<(), CloneError> {
    if size % 4096 != 0 {
        return Err(CloneError::UnalignedSize {
            path: path.to_owned(),
            requested: size,
        });
    }
    let current = fs_err::metadata(path)
        .map_err(io_error("stat", path))?
        .len();
    if size < current {
        return Err(CloneError::Shrink {
            path: path.to_owned(),
            current,
            requested: size,
        });
    }
    if size == current {
        return Ok(());
    }
    let resize2fs =
        find_program(Path::new("resize2fs")).ok_or_else(|| CloneError::NoResize2fs {
            path: path.to_owned(),
        })?;
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io_error("open", path))?;
    file.set_len(size).map_err(io_error("extend", path))?;
    drop(file);
    // No size argument: resize2fs grows the filesystem to fill the file.
    let output = Command::new(&resize2fs)
        .arg(path)
        .env("LC_ALL", "C")
        .output()
        .map_err(io_error("run resize2fs on", path))?;
    if !output.status.success() {
        return Err(CloneError::Resize {
            path: path.to_owned(),
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(())
}

/// Clones the work seed `seed` into the new file `dest` and grows it to
/// `size` bytes (refusing sizes below the seed's). On failure `dest` is
/// removed.
pub fn clone_work_seed(seed: &Path, dest: &Path, size: u64) -> Result<CloneReport, CloneError> {
    let seed_size = fs_err::metadata(seed)
        .map_err(io_error("stat", seed))?
        .len();
    // Check before copying, so a bad size costs nothing.
    if size < seed_size {
        return Err(CloneError::Shrink {
            path: seed.to_owned(),
            current: seed_size,
            requested: size,
        });
    }
    let report = clone_file(seed, dest)?;
    if let Err(error) = grow_ext4(dest, size) {
        let _ = fs_err::remove_file(dest);
        return Err(error);
    }
    Ok(CloneReport {
        apparent_size: size,
        ..report
    })
}
