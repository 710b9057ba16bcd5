//! Per-VM overlay (upper) disks: sparse, freshly formatted ext4.
//!
//! The guest's `/init` mounts `vdb` as the overlay's upper layer and creates
//! `upper/` and `work/` on it (boot-chain.md), so all banger needs is an
//! empty ext4 filesystem of the requested size. Running `mkfs.ext4` per VM
//! costs tens of milliseconds and grows with the size (group descriptors,
//! bitmaps, inode tables); instead one template per size is formatted once
//! into `template_dir` and every VM gets a sparse clone of it
//! ([`super::clone::clone_file`]), which copies only the few MiB of metadata.
//!
//! Every clone of one template has the same filesystem UUID. The guest
//! mounts each disk by device name, never by UUID, so that is harmless; the
//! label is `banger-upper`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::disk::clone::{CloneError, CloneReport, clone_file};
use crate::tools::find_program;

/// Overlay sizes must be whole MiB, which keeps the template cache small and
/// the filesystem geometry sensible.
const SIZE_UNIT: u64 = 1 << 20;
/// Smallest overlay disk (ext4 with a journal needs a few MiB).
pub const MIN_OVERLAY_BYTES: u64 = 16 << 20;

/// Creating an overlay disk failed.
#[derive(Debug, thiserror::Error)]
pub enum OverlayError {
    /// The size is below the minimum or not whole MiB.
    #[error(
        "overlay disk {path}: size {size} bytes must be a multiple of 1 MiB and at least {MIN_OVERLAY_BYTES}"
    )]
    BadSize {
        /// The disk that was to be created.
        path: PathBuf,
        /// The refused size.
        size: u64,
    },
    /// `mkfs.ext4` is not installed.
    #[error("mkfs.ext4 not found on PATH (install e2fsprogs) to format {path}")]
    NoMkfs {
        /// The template being formatted.
        path: PathBuf,
    },
    /// Creating the template failed.
    #[error("cannot {op} {path}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// `mkfs.ext4` ran and failed.
    #[error("mkfs.ext4 {path} failed ({status}): {stderr}")]
    Mkfs {
        /// The template.
        path: PathBuf,
        /// Its exit status.
        status: String,
        /// What it said.
        stderr: String,
    },
    /// Cloning the template failed.
    #[error(transparent)]
    Clone(#[from] CloneError),
}

/// The template file for `size` in `template_dir`.
pub fn template_path(template_dir: &Path, size: u64) -> PathBuf {
    template_dir.join(format!("upper-{}m.ext4", size / SIZE_UNIT))
}

/// Creates the overlay disk `dest` (must not exist) of `size` bytes: a
/// sparse clone of the template for that size in `template_dir`, formatted
/// first if missing.
pub fn create_overlay_disk(
    template_dir: &Path,
    dest: &Path,
    size: u64,
) -> Result<CloneReport, OverlayError> {
    if size < MIN_OVERLAY_BYTES || size % SIZE_UNIT != 0 {
        return Err(OverlayError::BadSize {
            path: dest.to_owned(),
            size,
        });
    }
    let template = ensure_template(template_dir, size)?;
    Ok(clone_file(&template, dest)?)
}

/// Formats the template for `size` unless it exists; returns its path.
///
/// Concurrent callers are safe: each formats a private temporary file and
/// renames it into place, so the template path only ever names a complete
/// filesystem (the loser's rename just replaces an identical template).
pub fn ensure_template(template_dir: &Path, size: u64) -> Result<PathBuf, OverlayError> {
    let template = template_path(template_dir, size);
    if template.is_file() {
        return Ok(template);
    }
    let io = |op: &'static str, path: &Path| {
        let path = path.to_owned();
        move |source| OverlayError::Io { op, path, source }
    };
    fs_err::create_dir_all(template_dir).map_err(io("create", template_dir))?;
    let mkfs = find_program(Path::new("mkfs.ext4")).ok_or_else(|| OverlayError::NoMkfs {
        path: template.clone(),
    })?;
    let staging = tempfile::Builder::new()
        .prefix(".upper-")
        .suffix(".ext4.tmp")
        .tempfile_in(template_dir)
        .map_err(io("create a temporary file in", template_dir))?;
    staging
        .as_file()
        .set_len(size)
        .map_err(io("size", staging.path()))?;
    let output = Command::new(&mkfs)
        // -F: it is a file, not a device. -m 0: no root reserve on a
        // single-user upper layer. Lazy init: the zeroed regions of a sparse
        // file already read as zeros, so writing them would only allocate.
        .args(["-q", "-F", "-t", "ext4", "-m", "0", "-L", "banger-upper"])
        .args(["-E", "lazy_itable_init=1,lazy_journal_init=1,nodiscard"])
        .arg(staging.path())
        .env("LC_ALL", "C")
        .output()
        .map_err(io("run mkfs.ext4 on", staging.path()))?;
    if !output.status.success() {
        return Err(OverlayError::Mkfs {
            path: template,
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    staging
        .persist(&template)
        .map_err(|error| OverlayError::Io {
            op: "rename into place",
            path: template.clone(),
            source: error.error,
        })?;
    Ok(template)
}
