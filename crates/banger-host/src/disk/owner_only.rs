//! Making a finished artifact directory owner-only before it is published.
//!
//! Files banger copies or hard-links in from elsewhere keep their source's
//! mode: a Debian kernel package's modules are 0644, a cached image build
//! may be too. The daemon's umask only covers what it creates itself, so a
//! kernel or image directory is tightened as a whole (files keep only their
//! owner bits, directories become 0700) before it is renamed into place.
//! Symbolic links are never followed (their own mode means nothing).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Tightening a directory tree failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot make {path} owner-only")]
pub struct OwnerOnlyError {
    /// The file or directory that could not be read or changed.
    pub path: PathBuf,
    /// The OS error.
    #[source]
    pub source: std::io::Error,
}

/// Removes group and other permission bits from `root` and everything
/// below it (directories end up 0700, files 0600 or 0700), without
/// following links.
pub fn restrict_tree(root: &Path) -> Result<(), OwnerOnlyError> {
    let fail = |path: &Path| {
        let path = path.to_owned();
        move |source: std::io::Error| OwnerOnlyError { path, source }
    };
    let mut pending = vec![root.to_owned()];
    while let Some(path) = pending.pop() {
        let metadata = fs_err::symlink_metadata(&path).map_err(fail(&path))?;
        if metadata.file_type().is_symlink() {
            continue;
        }
        let mode = metadata.permissions().mode() & 0o7777;
        let wanted = if metadata.is_dir() {
            0o700
        } else {
            mode & 0o700
        };
        if mode != wanted {
            fs_err::set_permissions(&path, std::fs::Permissions::from_mode(wanted))
                .map_err(fail(&path))?;
        }
        if metadata.is_dir() {
            for entry in fs_err::read_dir(&path).map_err(fail(&path))? {
                pending.push(entry.map_err(fail(&path))?.path());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs_err::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn tree_becomes_owner_only_and_links_are_not_followed() {
        let temp = tempfile::tempdir().unwrap();
        let outside = temp.path().join("outside");
        fs_err::write(&outside, b"not ours").unwrap();
        fs_err::set_permissions(&outside, std::fs::Permissions::from_mode(0o644)).unwrap();
        let root = temp.path().join("kernel");
        fs_err::create_dir_all(root.join("modules/sub")).unwrap();
        fs_err::set_permissions(root.join("modules"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        let module = root.join("modules/sub/a.ko");
        fs_err::write(&module, b"module").unwrap();
        fs_err::set_permissions(&module, std::fs::Permissions::from_mode(0o644)).unwrap();
        let script = root.join("run.sh");
        fs_err::write(&script, b"#!/bin/sh").unwrap();
        fs_err::set_permissions(&script, std::fs::Permissions::from_mode(0o4755)).unwrap();
        fs_err::os::unix::fs::symlink(&outside, root.join("modules/link")).unwrap();

        restrict_tree(&root).unwrap();

        assert_eq!(mode(&root), 0o700);
        assert_eq!(mode(&root.join("modules")), 0o700);
        assert_eq!(mode(&root.join("modules/sub")), 0o700);
        assert_eq!(mode(&module), 0o600);
        assert_eq!(mode(&script), 0o700, "owner exec kept, setuid dropped");
        assert_eq!(mode(&outside), 0o644, "the link's target is not touched");
    }

    #[test]
    fn a_missing_tree_names_the_path() {
        let temp = tempfile::tempdir().unwrap();
        let missing = temp.path().join("missing");
        let error = restrict_tree(&missing).unwrap_err();
        assert_eq!(error.path, missing);
    }
}
