//! Blobs cached by digest: `<cache>/oci/blobs/sha256/<hex>`.
//!
//! A blob is streamed into `<cache>/oci/tmp/<hex>.<pid>.<n>` while its sha256
//! is computed, and renamed to its digest's name only when digest and size
//! match, so every file under `blobs/` is verified content and an interrupted
//! download leaves at most a temporary file, which the next pull removes once
//! the process that wrote it is gone.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::digest::{Digest, HashingReader, limit_of};

/// Why a blob could not be cached.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// A filesystem operation failed.
    #[error("cannot {action} {path}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Reading the blob's source failed.
    #[error("cannot read blob {digest}")]
    Read {
        /// The blob.
        digest: Digest,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The content is not what the descriptor says.
    #[error(
        "blob {expected} does not match its digest (got {actual}, {bytes} bytes); it was discarded"
    )]
    DigestMismatch {
        /// The digest asked for.
        expected: Digest,
        /// The digest of what arrived.
        actual: Digest,
        /// Bytes that arrived.
        bytes: u64,
    },
    /// The blob is larger than its descriptor says (or than a limit).
    #[error(
        "blob {digest} is larger than {limit} bytes (its declared size or the limit); it was discarded"
    )]
    TooLarge {
        /// The blob.
        digest: Digest,
        /// The limit.
        limit: u64,
    },
}

/// The blob cache.
#[derive(Debug, Clone)]
pub struct BlobCache {
    root: PathBuf,
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> CacheError {
    let path = path.to_owned();
    move |source| CacheError::Io {
        action,
        path,
        source,
    }
}

impl BlobCache {
    /// The cache under `root` (`<cache dir>/oci`); created on first write.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// Where blob `digest` lives once cached.
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs").join("sha256").join(digest.hex())
    }

    fn temp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// The cached blob, if present with the expected size.
    pub fn get(&self, digest: &Digest, size: u64) -> Option<PathBuf> {
        let path = self.path(digest);
        let metadata = fs_err::symlink_metadata(&path).ok()?;
        (metadata.is_file() && metadata.len() == size).then_some(path)
    }

    /// Streams `reader` into the cache as blob `digest` of exactly `size`
    /// bytes; `progress(bytes so far)` is called as data arrives.
    pub fn store(
        &self,
        digest: &Digest,
        size: u64,
        reader: impl Read,
        progress: &mut dyn FnMut(u64),
    ) -> Result<PathBuf, CacheError> {
        let temp_dir = self.temp_dir();
        let final_path = self.path(digest);
        for dir in [&temp_dir, &self.root.join("blobs").join("sha256")] {
            fs_err::create_dir_all(dir).map_err(io("create", dir))?;
        }
        let temp = temp_dir.join(format!(
            "{}.{}.{}",
            digest.hex(),
            std::process::id(),
            TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let result = (|| {
            let mut file = fs_err::File::create_new(&temp).map_err(io("create", &temp))?;
            let mut reader = HashingReader::new(reader, size);
            let mut buffer = vec![0u8; 256 * 1024];
            loop {
                let read = match reader.read(&mut buffer) {
                    Ok(read) => read,
                    Err(error) if limit_of(&error).is_some() => {
                        return Err(CacheError::TooLarge {
                            digest: digest.clone(),
                            limit: size,
                        });
                    }
                    Err(source) => {
                        return Err(CacheError::Read {
                            digest: digest.clone(),
                            source,
                        });
                    }
                };
                if read == 0 {
                    break;
                }
                file.write_all(&buffer[..read])
                    .map_err(io("write", &temp))?;
                progress(reader.count());
            }
            let (actual, bytes) = reader.finish().map_err(|source| CacheError::Read {
                digest: digest.clone(),
                source,
            })?;
            if &actual != digest || bytes != size {
                return Err(CacheError::DigestMismatch {
                    expected: digest.clone(),
                    actual,
                    bytes,
                });
            }
            file.sync_all().map_err(io("sync", &temp))?;
            fs_err::rename(&temp, &final_path).map_err(io("rename into", &final_path))
        })();
        if result.is_err() {
            let _ = fs_err::remove_file(&temp);
        }
        result.map(|()| final_path)
    }

    /// Removes temporary files left by processes that no longer run (a
    /// killed daemon); files of running processes are left alone.
    pub fn clean_stale_temps(&self) {
        let dir = self.temp_dir();
        let Ok(entries) = fs_err::read_dir(&dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let pid = name
                .to_str()
                .and_then(|name| name.split('.').nth(1))
                .and_then(|pid| pid.parse::<u32>().ok());
            // A live writer keeps its file; a dead one (even a zombie not yet
            // reaped: it writes nothing more) leaves it to us.
            if !pid.is_some_and(banger_host::process::alive) {
                let _ = fs_err::remove_file(entry.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_only_verified_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let cache = BlobCache::new(dir.path());
        let data = b"layer bytes";
        let digest = Digest::of(data);
        let mut seen = 0;
        let path = cache
            .store(&digest, data.len() as u64, &data[..], &mut |n| seen = n)
            .unwrap();
        assert_eq!(fs_err::read(&path).unwrap(), data);
        assert_eq!(seen, data.len() as u64);
        assert_eq!(cache.get(&digest, data.len() as u64), Some(path));

        let wrong = Digest::of(b"other");
        let error = cache.store(&wrong, data.len() as u64, &data[..], &mut |_| {});
        assert!(matches!(error, Err(CacheError::DigestMismatch { .. })));
        let error = cache.store(&digest, 3, &data[..], &mut |_| {});
        assert!(matches!(error, Err(CacheError::TooLarge { .. })));
        assert!(cache.get(&wrong, data.len() as u64).is_none());
        assert_eq!(fs_err::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn a_blob_that_does_not_fit_fails_naming_the_file_and_leaves_nothing() {
        let Some(tmpfs) = banger_testkit::tmpfs::SmallTmpfs::mount("1m") else {
            return;
        };
        let cache = BlobCache::new(tmpfs.path().join("oci"));
        let data = vec![7u8; 3 << 20];
        let digest = Digest::of(&data);
        let error = cache
            .store(&digest, data.len() as u64, &data[..], &mut |_| {})
            .expect_err("3 MiB into a 1 MiB filesystem");
        assert!(
            matches!(&error, CacheError::Io { action: "write", path, source }
                if path.starts_with(tmpfs.path()) && source.kind() == std::io::ErrorKind::StorageFull),
            "{error:?}"
        );
        assert!(cache.get(&digest, data.len() as u64).is_none());
        let left: Vec<_> = fs_err::read_dir(tmpfs.path().join("oci/tmp"))
            .unwrap()
            .flatten()
            .map(|entry| entry.path())
            .collect();
        assert!(left.is_empty(), "half-written temp files: {left:?}");
    }

    #[test]
    fn cleans_temps_of_dead_processes_only() {
        let dir = tempfile::tempdir().unwrap();
        let cache = BlobCache::new(dir.path());
        let tmp = dir.path().join("tmp");
        fs_err::create_dir_all(&tmp).unwrap();
        let ours = tmp.join(format!("abc.{}.0", std::process::id()));
        let dead = tmp.join("abc.999999999.0");
        fs_err::write(&ours, b"x").unwrap();
        fs_err::write(&dead, b"x").unwrap();
        cache.clean_stale_temps();
        assert!(ours.exists());
        assert!(!dead.exists());
    }
}
