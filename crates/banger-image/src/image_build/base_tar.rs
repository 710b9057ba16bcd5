//! Packing a dumped base image into the tar a `--from-image` build starts
//! from, with every entry's owner and mode taken from the image itself.
//!
//! `debugfs rdump` can keep owners only when it runs as root, and its chown
//! clears setuid and setgid bits even then. So the owners and modes are not
//! read back from the dumped tree: [`Listing::read`] asks debugfs for every
//! directory's listing (`ls -p`: inode, mode, uid, gid, name) and [`pack`]
//! writes each dumped file into the tar with the listed values. The dumped
//! tree supplies only contents, link targets and times, so an unprivileged
//! daemon (whose dump belongs to itself) builds the same tar as root.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use super::base::BaseImageError;

/// One inode's owner and mode as the image records them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    /// Type and permission bits (`st_mode`).
    pub mode: u32,
    /// Owning user id.
    pub uid: u64,
    /// Owning group id.
    pub gid: u64,
}

/// Owners and modes by path relative to the tree's root (`""` is the root).
#[derive(Debug, Default)]
pub struct Listing {
    entries: HashMap<PathBuf, Owner>,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> BaseImageError + '_ {
    move |source| BaseImageError::Io {
        path: path.to_owned(),
        source,
    }
}

impl Listing {
    /// Reads the listings of `dirs` (relative directory names) in the ext4
    /// `image`, recording them under `prefix` (relative, `""` for the tree's
    /// root). `script` is a scratch file for debugfs's commands.
    pub fn read(
        &mut self,
        image: &Path,
        dirs: &[String],
        prefix: &Path,
        script: &Path,
    ) -> Result<(), BaseImageError> {
        let commands: String = dirs
            .iter()
            .map(|rel| format!("ls -p \"/{rel}\"\n"))
            .collect();
        fs_err::write(script, commands).map_err(io_err(script))?;
        let out = Command::new(super::run::find_program("debugfs"))
            .arg("-f")
            .arg(script)
            .arg(image)
            .output();
        let _ = fs_err::remove_file(script);
        let out = out.map_err(|source| BaseImageError::Debugfs {
            action: "ls -p".into(),
            path: image.to_owned(),
            detail: format!("cannot run debugfs (Debian package e2fsprogs): {source}"),
        })?;
        if !out.status.success() {
            return Err(BaseImageError::Debugfs {
                action: "ls -p".into(),
                path: image.to_owned(),
                detail: format!(
                    "{}: {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            });
        }
        self.parse(&out.stdout, prefix);
        Ok(())
    }

    /// Records the entries of debugfs's `ls -p` output (commands echoed as
    /// `debugfs: ls -p "/DIR"`, then one `/ino/mode/uid/gid/name/size/` line
    /// per entry, `.` being the directory itself).
    fn parse(&mut self, stdout: &[u8], prefix: &Path) {
        let mut current: Option<PathBuf> = None;
        for line in stdout.split(|b| *b == b'\n') {
            if let Some(rest) = line.strip_prefix(b"debugfs: ls -p \"/") {
                let dir = rest.strip_suffix(b"\"").unwrap_or(rest);
                current = Some(prefix.join(OsStr::from_bytes(dir)));
                continue;
            }
            let Some(dir) = &current else { continue };
            let fields: Vec<&[u8]> = line.split(|b| *b == b'/').collect();
            let [_, _, mode, uid, gid, name, _, _] = fields.as_slice() else {
                continue;
            };
            let number = |field: &[u8], radix| {
                std::str::from_utf8(field)
                    .ok()
                    .and_then(|text| u64::from_str_radix(text, radix).ok())
            };
            let (Some(mode), Some(uid), Some(gid)) =
                (number(mode, 8), number(uid, 10), number(gid, 10))
            else {
                continue;
            };
            let Ok(mode) = u32::try_from(mode) else {
                continue;
            };
            let path = match *name {
                b"." => dir.clone(),
                b".." => continue,
                name => dir.join(OsStr::from_bytes(name)),
            };
            self.entries.insert(path, Owner { mode, uid, gid });
        }
    }

    /// Records (or replaces) one entry.
    pub fn set(&mut self, path: PathBuf, owner: Owner) {
        self.entries.insert(path, owner);
    }

    /// The recorded owner and mode of `path` (relative to the tree's root).
    pub fn get(&self, path: &Path) -> Option<Owner> {
        self.entries.get(path).copied()
    }
}

/// Every directory under `dir` (relative, `""` for `dir` itself) whose name
/// debugfs commands can carry (UTF-8, no double quote or newline). Opens
/// each one for its owner first: an unprivileged dump keeps the image's
/// modes, so a `0555` or `0700` directory would otherwise stop the walk
/// (or the removal of the tree afterwards).
pub fn directories(dir: &Path) -> Result<Vec<String>, BaseImageError> {
    let mut out = vec![String::new()];
    let mut next = 0;
    while next < out.len() {
        let rel = out[next].clone();
        next += 1;
        let here = dir.join(&rel);
        let mode = fs_err::symlink_metadata(&here)
            .map_err(io_err(&here))?
            .permissions()
            .mode();
        if mode & 0o700 != 0o700 {
            fs_err::set_permissions(&here, std::fs::Permissions::from_mode(mode | 0o700))
                .map_err(io_err(&here))?;
        }
        for entry in fs_err::read_dir(&here).map_err(io_err(&here))? {
            let entry = entry.map_err(io_err(&here))?;
            let kind = entry.file_type().map_err(io_err(&entry.path()))?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if kind.is_dir() && !name.contains(['"', '\n']) {
                out.push(if rel.is_empty() {
                    name
                } else {
                    format!("{rel}/{name}")
                });
            }
        }
    }
    Ok(out)
}

/// Writes the tree under `tree` to the new tar file `tar`, entries in name
/// order, each with the owner and mode `listing` has for it. An entry the
/// listing lacks (a name debugfs commands cannot carry) keeps its dumped
/// mode and is owned by root.
pub fn pack(tree: &Path, listing: &Listing, tar: &Path) -> Result<(), BaseImageError> {
    let file = fs_err::File::create(tar).map_err(io_err(tar))?;
    let mut builder = tar::Builder::new(std::io::BufWriter::new(file));
    builder.follow_symlinks(false);
    let mut pending = vec![PathBuf::new()];
    while let Some(rel) = pending.pop() {
        let here = tree.join(&rel);
        let mut names: Vec<_> = fs_err::read_dir(&here)
            .map_err(io_err(&here))?
            .map(|entry| entry.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(io_err(&here))?;
        names.sort();
        // Directories are visited after this one's entries, in name order.
        let mut subdirs = Vec::new();
        for name in names {
            let rel = rel.join(&name);
            let path = tree.join(&rel);
            if append(&mut builder, &path, &rel, listing, tar)? {
                subdirs.push(rel);
            }
        }
        pending.extend(subdirs.into_iter().rev());
    }
    let writer = builder.into_inner().map_err(io_err(tar))?;
    writer
        .into_inner()
        .map_err(|e| io_err(tar)(e.into_error()))?
        .sync_all()
        .map_err(io_err(tar))
}

/// Appends one dumped entry; true when it is a directory to descend into.
fn append(
    builder: &mut tar::Builder<std::io::BufWriter<fs_err::File>>,
    path: &Path,
    rel: &Path,
    listing: &Listing,
    tar: &Path,
) -> Result<bool, BaseImageError> {
    let meta = fs_err::symlink_metadata(path).map_err(io_err(path))?;
    let owner = listing.get(rel).unwrap_or(Owner {
        mode: meta.mode(),
        uid: 0,
        gid: 0,
    });
    let mut header = tar::Header::new_gnu();
    header.set_mode(owner.mode & 0o7777);
    header.set_uid(owner.uid);
    header.set_gid(owner.gid);
    header.set_mtime(u64::try_from(meta.mtime()).unwrap_or(0));
    let kind = meta.file_type();
    if kind.is_dir() {
        if meta.mode() & 0o700 != 0o700 {
            fs_err::set_permissions(path, std::fs::Permissions::from_mode(meta.mode() | 0o700))
                .map_err(io_err(path))?;
        }
        header.set_entry_type(tar::EntryType::Directory);
        header.set_size(0);
        builder
            .append_data(&mut header, rel, std::io::empty())
            .map_err(io_err(tar))?;
        Ok(true)
    } else if kind.is_symlink() {
        let target = fs_err::read_link(path).map_err(io_err(path))?;
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        builder
            .append_link(&mut header, rel, &target)
            .map_err(io_err(tar))?;
        Ok(false)
    } else if kind.is_file() {
        // An unprivileged dump keeps the image's modes: a file its owner
        // may not read (`0000`, `0200`) is opened for reading first.
        if meta.mode() & 0o400 == 0 {
            fs_err::set_permissions(path, std::fs::Permissions::from_mode(meta.mode() | 0o400))
                .map_err(io_err(path))?;
        }
        let file = fs_err::File::open(path).map_err(io_err(path))?;
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(meta.len());
        builder
            .append_data(&mut header, rel, file)
            .map_err(io_err(tar))?;
        Ok(false)
    } else {
        // rdump writes no special files; anything else is not carried.
        Ok(false)
    }
}
