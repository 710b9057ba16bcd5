//! Replacing installed files atomically: the new content is written to a
//! temporary file in the same directory, given its mode, synced, and renamed
//! over the old one, then the directory is synced. A running service keeps
//! the old inode; nobody ever sees a half-written binary, unit or metadata
//! file, and an interrupted install leaves the previous version in place.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Writing an installed file failed.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// Reading the source failed.
    #[error("cannot read {path}")]
    Read {
        /// The source.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Writing, syncing or renaming into place failed.
    #[error("cannot write {path}")]
    Write {
        /// The destination.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Creating a directory failed.
    #[error("cannot create directory {path}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Removing a file failed.
    #[error("cannot remove {path}")]
    Remove {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// Copies `source` to `dest` atomically with `mode`.
pub fn install_file(source: &Path, dest: &Path, mode: u32) -> Result<(), FileError> {
    let bytes = fs_err::read(source).map_err(|error| FileError::Read {
        path: source.to_owned(),
        source: error,
    })?;
    write_file(dest, &bytes, mode)
}

/// Writes `bytes` to `dest` atomically with `mode`.
pub fn write_file(dest: &Path, bytes: &[u8], mode: u32) -> Result<(), FileError> {
    let write_error = |source: std::io::Error| FileError::Write {
        path: dest.to_owned(),
        source,
    };
    let dir = dest.parent().unwrap_or(Path::new("/"));
    let name = dest
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut temp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".new")
        .tempfile_in(dir)
        .map_err(write_error)?;
    temp.write_all(bytes).map_err(write_error)?;
    temp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(write_error)?;
    temp.as_file().sync_all().map_err(write_error)?;
    temp.persist(dest)
        .map_err(|error| write_error(error.error))?;
    sync_dir(dir).map_err(write_error)
}

/// Creates `dir` and missing parents with `mode` (existing ones are left as
/// they are).
pub fn create_dir(dir: &Path, mode: u32) -> Result<(), FileError> {
    use std::os::unix::fs::DirBuilderExt;
    #[allow(
        clippy::disallowed_types,
        reason = "fs-err has no DirBuilder; the error is mapped with the path"
    )]
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(dir)
        .map_err(|source| FileError::CreateDir {
            path: dir.to_owned(),
            source,
        })
}

/// Removes `path` if it exists; returns whether it did.
pub fn remove_file(path: &Path) -> Result<bool, FileError> {
    match fs_err::remove_file(path) {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(FileError::Remove {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Removes `dir` if it exists and is empty; returns whether it did.
pub fn remove_empty_dir(dir: &Path) -> bool {
    fs_err::remove_dir(dir).is_ok()
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    fs_err::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    #[test]
    fn replacing_a_file_swaps_its_inode_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("bin");
        write_file(&dest, b"old", 0o755).unwrap();
        let before = fs_err::metadata(&dest).unwrap();
        // A running process keeps the old inode open.
        let held = fs_err::File::open(&dest).unwrap();
        let source = dir.path().join("src");
        fs_err::write(&source, b"new").unwrap();
        install_file(&source, &dest, 0o755).unwrap();
        let after = fs_err::metadata(&dest).unwrap();
        assert_ne!(before.ino(), after.ino());
        assert_eq!(after.mode() & 0o7777, 0o755);
        assert_eq!(fs_err::read(&dest).unwrap(), b"new");
        assert_eq!(held.metadata().unwrap().ino(), before.ino());
        let names: Vec<_> = fs_err::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(remove_file(&dest).unwrap());
        assert!(!remove_file(&dest).unwrap());
    }
}
