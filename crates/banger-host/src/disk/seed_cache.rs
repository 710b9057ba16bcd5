//! Grown work seeds, prepared once per (seed, size) and then sparse-cloned.
//!
//! Growing with `resize2fs` costs 50–200 ms here no matter how little it
//! writes, because e2fsprogs `fsync`s the image several times (each one a
//! disk cache flush on this VM), and right after a copy that also forces
//! the copied data to disk. Doing that per VM would put it on every
//! `vm create`. Instead the first VM asking for a (seed, size) pair builds
//! a grown copy of the seed in a cache directory, and every VM (that one
//! included) gets a plain sparse clone of it: no fsync, no e2fsprogs, cost
//! proportional to the seed's data only.
//!
//! Entries are keyed by the seed's identity (device, inode, size,
//! modification time), so a rebuilt seed never reuses a stale entry; each
//! entry costs about the seed's data in disk space. Removing entries of
//! images that no longer exist is the caller's job ([`prune`]; the daemon
//! prunes after every image delete).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::disk::clone::{CloneError, CloneReport, clone_file};

/// The prefix of every cache entry's file name.
const ENTRY_PREFIX: &str = "grown-";

/// Preparing or cloning a grown seed failed.
#[derive(Debug, thiserror::Error)]
pub enum SeedCacheError {
    /// The seed or the cache directory could not be inspected or created.
    #[error("seed cache: cannot {op} {path}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Cloning or growing failed.
    #[error(transparent)]
    Clone(#[from] CloneError),
}

/// The cache file for `seed` grown to `size` (whether or not it exists).
pub fn entry_path(cache_dir: &Path, seed: &Path, size: u64) -> Result<PathBuf, SeedCacheError> {
    Ok(cache_dir.join(format!("{}{size}.ext4", entry_name_prefix(seed)?)))
}

/// The start of the file name of every entry for `seed` (any size).
fn entry_name_prefix(seed: &Path) -> Result<String, SeedCacheError> {
    let metadata = fs_err::metadata(seed).map_err(|source| SeedCacheError::Io {
        op: "stat",
        path: seed.to_owned(),
        source,
    })?;
    Ok(format!(
        "{ENTRY_PREFIX}{:x}-{:x}-{:x}-{}.{}-",
        metadata.dev(),
        metadata.ino(),
        metadata.size(),
        metadata.mtime(),
        metadata.mtime_nsec(),
    ))
}

/// Returns the cached copy of `seed` grown to `size`, building it first if
/// needed. Refuses sizes below the seed's (as [`clone::clone_work_seed`]
/// does). Concurrent callers are safe: each builds a private temporary file
/// and renames it into place.
///
/// [`clone::clone_work_seed`]: crate::disk::clone::clone_work_seed
pub fn prepare_grown_seed(
    cache_dir: &Path,
    seed: &Path,
    size: u64,
) -> Result<PathBuf, SeedCacheError> {
    let seed_size = fs_err::metadata(seed)
        .map_err(|source| SeedCacheError::Io {
            op: "stat",
            path: seed.to_owned(),
            source,
        })?
        .len();
    if size == seed_size {
        // Nothing to grow: clone the seed itself.
        return Ok(seed.to_owned());
    }
    let entry = entry_path(cache_dir, seed, size)?;
    if entry.is_file() {
        return Ok(entry);
    }
    let io = |op: &'static str, path: &Path| {
        let path = path.to_owned();
        move |source| SeedCacheError::Io { op, path, source }
    };
    fs_err::create_dir_all(cache_dir).map_err(io("create", cache_dir))?;
    let staging_dir = tempfile::Builder::new()
        .prefix(".grow-")
        .tempdir_in(cache_dir)
        .map_err(io("create a temporary directory in", cache_dir))?;
    let staging = staging_dir.path().join("seed.ext4");
    // The checks (shrink refused, sizes aligned) happen in here.
    crate::disk::clone::clone_work_seed(seed, &staging, size)?;
    fs_err::rename(&staging, &entry).map_err(io("rename into place", &entry))?;
    Ok(entry)
}

/// Creates the VM work disk `dest` (must not exist) from `seed` grown to
/// `size`, through the cache in `cache_dir`. The first call per (seed,
/// size) pays for the grow; later calls cost one sparse clone.
pub fn clone_work_seed_cached(
    cache_dir: &Path,
    seed: &Path,
    dest: &Path,
    size: u64,
) -> Result<CloneReport, SeedCacheError> {
    let grown = prepare_grown_seed(cache_dir, seed, size)?;
    match clone_file(&grown, dest) {
        // Pruned between the two steps (another daemon sharing this cache
        // deleted an image and pruned what its own images do not use):
        // make it again, once.
        Err(_) if grown != seed && !grown.exists() && !dest.exists() => {
            let grown = prepare_grown_seed(cache_dir, seed, size)?;
            Ok(clone_file(&grown, dest)?)
        }
        result => Ok(result?),
    }
}

/// Deletes every cache entry in `cache_dir` except those (of any size)
/// for the seeds in `keep`: entries of seeds that were deleted or rebuilt
/// are never used again. Returns the deleted paths. Files that are not
/// cache entries are left alone.
pub fn prune(cache_dir: &Path, keep: &[&Path]) -> Result<Vec<PathBuf>, SeedCacheError> {
    // A seed that vanished has no entry worth keeping.
    let wanted: Vec<String> = keep
        .iter()
        .filter_map(|seed| entry_name_prefix(seed).ok())
        .collect();
    let entries = match fs_err::read_dir(cache_dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(SeedCacheError::Io {
                op: "list",
                path: cache_dir.to_owned(),
                source,
            });
        }
    };
    let mut deleted = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let file_name = entry.file_name();
        let Some(name) = file_name.to_str() else {
            continue;
        };
        let is_entry = name.starts_with(ENTRY_PREFIX) && name.ends_with(".ext4");
        let kept = wanted
            .iter()
            .any(|prefix| name.starts_with(prefix.as_str()));
        if is_entry && !kept {
            fs_err::remove_file(&path).map_err(|source| SeedCacheError::Io {
                op: "remove",
                path: path.clone(),
                source,
            })?;
            deleted.push(path);
        }
    }
    Ok(deleted)
}
