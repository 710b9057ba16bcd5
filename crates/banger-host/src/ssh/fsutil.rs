//! File helpers shared by the SSH modules: private directories and atomic
//! replacement (temp file in the same directory, fsync, rename, fsync dir).

use fs_err::{self as fs, File};
use std::fs::Permissions;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

use tempfile::NamedTempFile;

/// Creates `dir` (and missing parents) with mode 0700. An existing
/// directory is left as it is.
#[allow(
    clippy::disallowed_types,
    reason = "fs-err has no DirBuilder; every caller's error names the directory"
)]
pub(crate) fn create_private_dir(dir: &Path) -> io::Result<()> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// The directory `path` lives in (`.` for a bare file name).
pub(crate) fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// Writes `contents` into a fresh temp file next to `path`, with `mode`,
/// flushed to disk. The caller decides how to move it into place.
fn temp_with(path: &Path, contents: &[u8], mode: u32) -> io::Result<NamedTempFile> {
    let mut temp = tempfile::Builder::new()
        .prefix(".banger-tmp-")
        .tempfile_in(parent_of(path))?;
    temp.as_file()
        .set_permissions(Permissions::from_mode(mode))?;
    temp.write_all(contents)?;
    temp.as_file().sync_all()?;
    Ok(temp)
}

/// Replaces `path` with `contents` atomically: readers see the old or the
/// new file, never a partial one.
pub(crate) fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    let temp = temp_with(path, contents, mode)?;
    temp.persist(path).map_err(|error| error.error)?;
    sync_dir(parent_of(path));
    Ok(())
}

/// Creates `path` with `contents` atomically, failing with
/// [`io::ErrorKind::AlreadyExists`] if something is already there (so two
/// concurrent creators cannot overwrite each other).
pub(crate) fn create_atomic(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    let temp = temp_with(path, contents, mode)?;
    temp.persist_noclobber(path).map_err(|error| error.error)?;
    sync_dir(parent_of(path));
    Ok(())
}

/// Best-effort fsync of a directory so a rename survives a crash.
fn sync_dir(dir: &Path) {
    if let Ok(handle) = File::open(dir) {
        let _ = handle.sync_all();
    }
}

/// Reads `path` as UTF-8, `None` if it does not exist.
pub(crate) fn read_optional(path: &Path) -> io::Result<Option<String>> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error),
    }
}
