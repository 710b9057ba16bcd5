//! Pack a kernel's modules tree into a read-only ext4 disk image, and format the
//! plain ext4 images the boot chain uses.
//!
//! Guest images do not carry modules for banger's kernel, so every VM gets the
//! kernel's whole `lib/modules/<version>` tree as a small disk (`vdd`) that
//! `/init` mounts read-only at `/lib/modules/<version>`; the image can then load
//! netfilter, vsock or filesystem modules with its own `modprobe`. One image is
//! built per kernel and shared by all VMs.
//!
//! `mkfs.ext4 -d` (e2fsprogs) fills the filesystem from a directory without
//! mounting anything, so no root and no loop device is needed. The image is a
//! sparse file; a journal is left out because the disk is never written.

use std::path::{Path, PathBuf};
use std::process::Command;

use thiserror::Error;

/// Why an ext4 image could not be made.
#[derive(Debug, Error)]
pub enum ModulesDiskError {
    /// A filesystem operation failed.
    #[error("{path}")]
    Io {
        /// Path that failed.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The tree holds a symlink whose target is outside the tree.
    #[error(
        "{link}: symlink to {target} points outside the modules tree; banger never packs such links into a guest disk"
    )]
    EscapingSymlink {
        /// The symlink.
        link: PathBuf,
        /// What it points to.
        target: PathBuf,
    },
    /// `mkfs.ext4` could not run or failed.
    #[error("mkfs.ext4 for {path} failed: {detail}")]
    Mkfs {
        /// Image being created.
        path: PathBuf,
        /// Exit status and stderr.
        detail: String,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ModulesDiskError + '_ {
    move |source| ModulesDiskError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Options for [`mkfs_ext4`].
#[derive(Debug, Clone, Default)]
pub struct Ext4Options<'a> {
    /// Directory whose contents become the filesystem's root (`mkfs.ext4 -d`).
    pub populate_from: Option<&'a Path>,
    /// Filesystem label.
    pub label: Option<&'a str>,
    /// Create a journal (wanted for disks the guest writes, not for read-only ones).
    pub journal: bool,
}

/// Creates (or truncates) the sparse file `image` of `size_bytes` and formats it
/// as ext4 with `mkfs.ext4`.
pub fn mkfs_ext4(
    image: &Path,
    size_bytes: u64,
    opts: &Ext4Options<'_>,
) -> Result<(), ModulesDiskError> {
    {
        let f = fs_err::File::create(image).map_err(io_err(image))?;
        f.set_len(size_bytes).map_err(io_err(image))?;
    }
    let mut cmd = Command::new("mkfs.ext4");
    // -F: the target is a regular file; -m 0: no blocks reserved for root on a
    // data-only disk; root_owner: the root directory belongs to root even when
    // the host side runs unprivileged.
    cmd.args(["-q", "-F", "-m", "0", "-E", "root_owner=0:0"]);
    if !opts.journal {
        cmd.args(["-O", "^has_journal"]);
    }
    if let Some(label) = opts.label {
        cmd.arg("-L").arg(label);
    }
    if let Some(dir) = opts.populate_from {
        cmd.arg("-d").arg(dir);
    }
    cmd.arg(image);
    let out = cmd.output().map_err(|e| ModulesDiskError::Mkfs {
        path: image.to_owned(),
        detail: format!("cannot run mkfs.ext4 (install e2fsprogs): {e}"),
    })?;
    if !out.status.success() {
        return Err(ModulesDiskError::Mkfs {
            path: image.to_owned(),
            detail: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(())
}

/// Bytes needed to hold the files under `dir`, each rounded up to 4 KiB blocks,
/// plus one block per directory and symlink.
pub fn tree_size(dir: &Path) -> Result<u64, ModulesDiskError> {
    let mut total = 0u64;
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        total += 4096;
        for entry in fs_err::read_dir(&d).map_err(io_err(&d))? {
            let entry = entry.map_err(io_err(&d))?;
            let path = entry.path();
            let meta = fs_err::symlink_metadata(&path).map_err(io_err(&path))?;
            if meta.is_dir() {
                stack.push(path);
            } else {
                total += meta.len().div_ceil(4096).max(1) * 4096;
            }
        }
    }
    Ok(total)
}

/// Whether the symlink `link`, somewhere under `root`, points outside
/// `root`: an absolute target, a `..` that climbs above `root`, or a target
/// that really resolves (through other links) outside it. A dangling or
/// looping link counts as outside: it cannot be shown to stay inside.
pub fn symlink_escapes(root: &Path, link: &Path) -> Result<bool, ModulesDiskError> {
    use std::path::Component;
    let target = fs_err::read_link(link).map_err(io_err(link))?;
    let Some(parent) = link
        .parent()
        .and_then(|parent| parent.strip_prefix(root).ok())
    else {
        return Ok(true);
    };
    // Lexically, from the link's directory.
    let mut depth = 0usize;
    for component in parent.components().chain(target.components()) {
        match component {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => match depth.checked_sub(1) {
                Some(up) => depth = up,
                None => return Ok(true),
            },
            Component::RootDir | Component::Prefix(_) => return Ok(true),
        }
    }
    // Really, through whatever links the path crosses.
    let (Ok(root), Ok(resolved)) = (fs_err::canonicalize(root), fs_err::canonicalize(link)) else {
        return Ok(true);
    };
    Ok(!resolved.starts_with(&root))
}

/// Every symlink under `root` that [`symlink_escapes`] it, with its target.
pub fn escaping_symlinks(root: &Path) -> Result<Vec<(PathBuf, PathBuf)>, ModulesDiskError> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in fs_err::read_dir(&dir).map_err(io_err(&dir))? {
            let entry = entry.map_err(io_err(&dir))?;
            let path = entry.path();
            let kind = entry.file_type().map_err(io_err(&path))?;
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_symlink() && symlink_escapes(root, &path)? {
                let target = fs_err::read_link(&path).map_err(io_err(&path))?;
                found.push((path, target));
            }
        }
    }
    found.sort();
    Ok(found)
}

/// Removes every symlink under `root` that points outside it (for trees
/// banger extracted itself, such as a kernel package's `build` and `source`
/// links to header directories). Returns the removed links.
pub fn remove_escaping_symlinks(root: &Path) -> Result<Vec<PathBuf>, ModulesDiskError> {
    let mut removed = Vec::new();
    for (link, _) in escaping_symlinks(root)? {
        fs_err::remove_file(&link).map_err(io_err(&link))?;
        removed.push(link);
    }
    Ok(removed)
}

/// Packs `modules_dir` (`.../lib/modules/<version>`) into the read-only ext4
/// image `image` labelled `banger-modules`, sized to the tree plus headroom for
/// ext4 metadata. Returns the image size in bytes.
///
/// A symlink in the tree that points outside it is refused
/// ([`ModulesDiskError::EscapingSymlink`]): nothing outside a kernel's
/// modules tree reaches a guest through it.
pub fn build_modules_disk(modules_dir: &Path, image: &Path) -> Result<u64, ModulesDiskError> {
    if let Some((link, target)) = escaping_symlinks(modules_dir)?.into_iter().next() {
        return Err(ModulesDiskError::EscapingSymlink { link, target });
    }
    let data = tree_size(modules_dir)?;
    // 25% + 16 MiB covers inode tables, bitmaps and group descriptors for a
    // tree of ~1000-5000 small files; round to whole MiB.
    let size = (data + data / 4 + (16 << 20)).div_ceil(1 << 20) * (1 << 20);
    let tmp = image.with_extension("tmp");
    mkfs_ext4(
        &tmp,
        size,
        &Ext4Options {
            populate_from: Some(modules_dir),
            label: Some("banger-modules"),
            journal: false,
        },
    )?;
    fs_err::rename(&tmp, image).map_err(io_err(image))?;
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn debugfs(image: &Path, request: &str) -> String {
        let out = Command::new("debugfs")
            .arg("-R")
            .arg(request)
            .arg(image)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    #[test]
    fn packs_tree_into_ext4() {
        if Command::new("mkfs.ext4").arg("-V").output().is_err() {
            banger_testkit::skip_or_fail("e2fsprogs not installed");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("lib/modules/9.9.9");
        fs_err::create_dir_all(tree.join("kernel/fs")).unwrap();
        fs_err::write(tree.join("modules.dep"), "kernel/fs/x.ko:\n").unwrap();
        fs_err::write(tree.join("kernel/fs/x.ko"), vec![7u8; 10_000]).unwrap();
        let image = dir.path().join("modules.ext4");
        let size = build_modules_disk(&tree, &image).unwrap();
        assert_eq!(fs_err::metadata(&image).unwrap().len(), size);
        assert_eq!(debugfs(&image, "cat /modules.dep"), "kernel/fs/x.ko:\n");
        let stats = debugfs(&image, "stats");
        assert!(stats.contains("banger-modules"), "{stats}");
        assert!(!stats.contains("has_journal"), "{stats}");
    }

    #[test]
    fn symlinks_leaving_the_tree_are_found_and_refused() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("secret");
        fs_err::write(&outside, "host secret").unwrap();
        let tree = dir.path().join("lib/modules/9.9.9");
        fs_err::create_dir_all(tree.join("kernel/fs")).unwrap();
        fs_err::write(tree.join("kernel/fs/x.ko"), b"module").unwrap();
        let link = |target: &str, at: &str| {
            fs_err::os::unix::fs::symlink(target, tree.join(at)).unwrap();
        };
        // Inside: kept.
        link("x.ko", "kernel/fs/same.ko");
        link("../fs/x.ko", "kernel/fs/up-and-back.ko");
        link("kernel", "kernel-dir");
        // Outside: absolute, climbing out, dangling, and through a link.
        link("/etc/passwd", "kernel/fs/abs.ko");
        link("../../../../../secret", "kernel/fs/climb.ko");
        link("missing.ko", "kernel/fs/dangling.ko");
        link(".", "here");
        link("here/../../../../secret", "sneaky.ko");
        link("here/..", "through-here");
        let found: Vec<PathBuf> = escaping_symlinks(&tree)
            .unwrap()
            .into_iter()
            .map(|(link, _)| link.strip_prefix(&tree).unwrap().to_owned())
            .collect();
        assert_eq!(
            found,
            [
                "kernel/fs/abs.ko",
                "kernel/fs/climb.ko",
                "kernel/fs/dangling.ko",
                "sneaky.ko",
                "through-here"
            ]
            .map(PathBuf::from)
        );
        let image = dir.path().join("modules.ext4");
        let error = build_modules_disk(&tree, &image).unwrap_err();
        assert!(
            matches!(error, ModulesDiskError::EscapingSymlink { .. }),
            "{error:?}"
        );
        assert!(
            error
                .to_string()
                .contains("points outside the modules tree")
        );
        assert!(!image.exists());
        let removed = remove_escaping_symlinks(&tree).unwrap();
        assert_eq!(removed.len(), 5);
        assert!(escaping_symlinks(&tree).unwrap().is_empty());
        assert!(tree.join("kernel/fs/same.ko").exists());
        assert_eq!(fs_err::read_to_string(&outside).unwrap(), "host secret");
    }

    #[test]
    fn mkfs_failure_names_image() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("tiny.ext4");
        // 4 KiB is too small for any ext4.
        let err = mkfs_ext4(&image, 4096, &Ext4Options::default()).unwrap_err();
        assert!(err.to_string().contains("tiny.ext4"), "{err}");
    }
}
