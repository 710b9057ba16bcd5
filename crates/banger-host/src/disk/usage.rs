//! What files really take on the host: allocated bytes (`st_blocks * 512`),
//! not apparent size.
//!
//! VM disks are sparse and trimmed (docs/reliability.md "Disks that give
//! space back"), so an 8 GiB work disk may hold a few MiB; `vm list`,
//! `vm show` and `system df` report what the host really spends. A tree is
//! walked without following links, and a file hard-linked several times
//! inside one tree counts once (images hard-link from the build cache).

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Reading a file's or tree's size failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the size of {path}")]
pub struct UsageError {
    /// The file or directory that could not be read.
    pub path: PathBuf,
    /// The OS error.
    #[source]
    pub source: std::io::Error,
}

/// Sizes of a file or a tree.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Apparent size: the sum of file lengths.
    pub apparent_bytes: u64,
    /// Bytes the host filesystem has allocated (`st_blocks * 512`).
    pub allocated_bytes: u64,
}

impl std::ops::AddAssign for Usage {
    fn add_assign(&mut self, other: Self) {
        self.apparent_bytes += other.apparent_bytes;
        self.allocated_bytes += other.allocated_bytes;
    }
}

fn fail(path: &Path) -> impl FnOnce(std::io::Error) -> UsageError + '_ {
    move |source| UsageError {
        path: path.to_owned(),
        source,
    }
}

fn of(metadata: &std::fs::Metadata) -> Usage {
    Usage {
        apparent_bytes: metadata.len(),
        allocated_bytes: metadata.blocks() * 512,
    }
}

/// The usage of one file (a link itself, not its target).
pub fn file_usage(path: &Path) -> Result<Usage, UsageError> {
    fs_err::symlink_metadata(path)
        .map(|metadata| of(&metadata))
        .map_err(fail(path))
}

/// The usage of `root` and everything below it; zero when `root` does not
/// exist (a cache never filled). Links are not followed; a hard-linked file
/// counts once.
pub fn tree_usage(root: &Path) -> Result<Usage, UsageError> {
    let mut total = Usage::default();
    let mut seen = HashSet::new();
    let mut pending = vec![root.to_owned()];
    while let Some(path) = pending.pop() {
        let metadata = match fs_err::symlink_metadata(&path) {
            Ok(metadata) => metadata,
            // Gone: never made, or removed while we walked (a finished
            // download's temp file).
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
            Err(error) => return Err(fail(&path)(error)),
        };
        if metadata.nlink() > 1 && !seen.insert((metadata.dev(), metadata.ino())) {
            continue;
        }
        total += of(&metadata);
        if metadata.is_dir() {
            for entry in fs_err::read_dir(&path).map_err(fail(&path))? {
                pending.push(entry.map_err(fail(&path))?.path());
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparse_files_count_what_is_allocated() {
        let dir = tempfile::tempdir().unwrap();
        let sparse = dir.path().join("sparse");
        let file = fs_err::File::create(&sparse).unwrap();
        file.set_len(1 << 30).unwrap();
        drop(file);
        let usage = file_usage(&sparse).unwrap();
        assert_eq!(usage.apparent_bytes, 1 << 30);
        assert!(usage.allocated_bytes < 1 << 20, "{usage:?}");

        fs_err::write(dir.path().join("full"), vec![7u8; 1 << 20]).unwrap();
        let full = file_usage(&dir.path().join("full")).unwrap();
        assert!(full.allocated_bytes >= 1 << 20, "{full:?}");
    }

    #[test]
    fn a_tree_counts_hard_links_once_and_follows_no_links() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("tree");
        fs_err::create_dir_all(root.join("sub")).unwrap();
        fs_err::write(root.join("sub/a"), vec![1u8; 1 << 20]).unwrap();
        fs_err::hard_link(root.join("sub/a"), root.join("b")).unwrap();
        let outside = dir.path().join("outside");
        fs_err::write(&outside, vec![2u8; 4 << 20]).unwrap();
        fs_err::os::unix::fs::symlink(&outside, root.join("link")).unwrap();
        let usage = tree_usage(&root).unwrap();
        assert!(
            (1 << 20..2 << 20).contains(&usage.allocated_bytes),
            "one MiB once, plus directories: {usage:?}"
        );
        assert_eq!(
            tree_usage(&dir.path().join("missing")).unwrap(),
            Usage::default()
        );
        let error = file_usage(&dir.path().join("missing")).unwrap_err();
        assert!(error.to_string().ends_with("missing"), "{error}");
    }
}
