//! Writing a [`Tree`] (or a subtree) into an ext4 image without root and
//! without mounting anything.
//!
//! 1. A staging directory gets the tree's directories and regular files
//!    only, each file hard-linked from its content file, under names that
//!    come from the tree (no `..`, no `/`, and no symlink is ever created, so
//!    nothing written there can land outside it). Hardlinked files share one
//!    host inode, which `mkfs.ext4 -d` turns into one ext4 inode.
//! 2. `mkfs.ext4 -d` fills the filesystem from it.
//! 3. A `debugfs -w` script sets every inode's owner, mode (setuid, setgid
//!    and sticky included) and mtime exactly as the headers said, sets
//!    xattrs, and creates symlinks, device nodes and FIFOs inside the
//!    filesystem (never on the host), with extra names via `ln` and their
//!    link counts.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::tree::{InodeId, Kind, Meta, Tree};

/// Why the image could not be written.
#[derive(Debug, thiserror::Error)]
pub enum Ext4Error {
    /// A filesystem operation on the host failed.
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
    /// A name or link target holds a newline, which debugfs scripts cannot carry.
    #[error("{path:?}: names and symlink targets with a newline are not supported")]
    UnsupportedName {
        /// The path, escaped.
        path: String,
    },
    /// `mkfs.ext4` or `debugfs` could not run or failed.
    #[error("{tool} for {image} failed: {detail}")]
    Tool {
        /// The program.
        tool: &'static str,
        /// The image.
        image: PathBuf,
        /// Exit status and stderr.
        detail: String,
    },
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Ext4Error {
    let path = path.to_owned();
    move |source| Ext4Error::Io {
        action,
        path,
        source,
    }
}

/// What to write and how.
#[derive(Debug, Clone)]
pub struct Ext4Spec<'a> {
    /// Filesystem label.
    pub label: &'a str,
    /// Whether to create a journal (disks the guest writes).
    pub journal: bool,
    /// Smallest size in bytes (the computed size may be larger).
    pub min_size: u64,
    /// Whether to fix the inode count from the tree (read-only base images),
    /// rather than mke2fs's ratio (disks that grow).
    pub fit_inodes: bool,
}

/// What was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// The image's size in bytes (apparent; the file is sparse).
    pub size: u64,
    /// Inodes written.
    pub inodes: u64,
    /// Bytes of regular files.
    pub file_bytes: u64,
}

/// Where `program` is: on PATH, else in /usr/sbin or /sbin (not on an
/// unprivileged user's PATH on Debian, but where e2fsprogs lives).
pub fn find_program(program: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
        .unwrap_or_else(|| PathBuf::from(program))
}

/// A path in the tree, as its components.
type Components = Vec<Vec<u8>>;

const BLOCK: u64 = 4096;
const MIB: u64 = 1 << 20;

/// The size for `data` bytes in `inodes` inodes: 10% + 256 B per inode +
/// 32 MiB of headroom, times 1.25, rounded up to 64 MiB (as image build
/// sizes its rootfs).
pub fn fitted_size(data: u64, inodes: u64) -> u64 {
    let needed = data + data / 10 + inodes * 256 + 32 * MIB;
    let padded = needed + needed / 4;
    padded.div_ceil(64 * MIB) * 64 * MIB
}

/// A path for debugfs: `/a/b`, double-quoted with `"` doubled.
fn quoted(components: &[Vec<u8>]) -> Result<Vec<u8>, Ext4Error> {
    let mut out = b"\"".to_vec();
    if components.is_empty() {
        out.push(b'/');
    }
    for component in components {
        out.push(b'/');
        push_quoted_bytes(&mut out, component, components)?;
    }
    out.push(b'"');
    Ok(out)
}

fn push_quoted_bytes(out: &mut Vec<u8>, bytes: &[u8], path: &[Vec<u8>]) -> Result<(), Ext4Error> {
    for byte in bytes {
        match byte {
            b'\n' | b'\r' | 0 => {
                return Err(Ext4Error::UnsupportedName {
                    path: String::from_utf8_lossy(&path.join(&b'/')).into_owned(),
                });
            }
            b'"' => out.extend_from_slice(b"\"\""),
            other => out.push(*other),
        }
    }
    Ok(())
}

fn quoted_name(name: &[u8], path: &[Vec<u8>]) -> Result<Vec<u8>, Ext4Error> {
    let mut out = b"\"".to_vec();
    push_quoted_bytes(&mut out, name, path)?;
    out.push(b'"');
    Ok(out)
}

fn type_bits(kind: &Kind) -> u32 {
    match kind {
        Kind::Dir(_) => 0o040000,
        Kind::File { .. } => 0o100000,
        Kind::Symlink(_) => 0o120000,
        Kind::Char { .. } => 0o020000,
        Kind::Block { .. } => 0o060000,
        Kind::Fifo => 0o010000,
    }
}

fn line(script: &mut Vec<u8>, parts: &[&[u8]]) {
    script.extend_from_slice(&parts.join(&b' '));
    script.push(b'\n');
}

/// Appends the commands setting `meta` on `path`.
fn set_meta(
    script: &mut Vec<u8>,
    path: &[u8],
    kind: &Kind,
    meta: &Meta,
    xattr_dir: &Path,
    xattr_count: &mut usize,
) -> Result<(), Ext4Error> {
    let mode = format!("0{:o}", type_bits(kind) | (meta.mode & 0o7777));
    line(
        script,
        &[b"sif", path, b"uid", meta.uid.to_string().as_bytes()],
    );
    line(
        script,
        &[b"sif", path, b"gid", meta.gid.to_string().as_bytes()],
    );
    line(script, &[b"sif", path, b"mode", mode.as_bytes()]);
    line(
        script,
        &[
            b"sif",
            path,
            b"mtime",
            format!("@{}", meta.mtime).as_bytes(),
        ],
    );
    for (name, value) in &meta.xattrs {
        if name
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b == b'"' || b.is_ascii_control())
        {
            continue;
        }
        *xattr_count += 1;
        let file = xattr_dir.join(xattr_count.to_string());
        fs_err::write(&file, value).map_err(io("write", &file))?;
        line(
            script,
            &[
                b"ea_set -f",
                &quoted_name(file.as_os_str().as_bytes(), &[])?,
                path,
                name.as_bytes(),
            ],
        );
    }
    Ok(())
}

/// Writes the subtree at `top` of `tree` into the new image `image`,
/// leaving out the children of `skip`; `work` is an empty directory for
/// the staging tree and the script (removed by the caller).
pub fn write_ext4(
    tree: &Tree,
    top: InodeId,
    skip: Option<InodeId>,
    work: &Path,
    image: &Path,
    spec: &Ext4Spec<'_>,
) -> Result<Written, Ext4Error> {
    let staging = work.join("staging");
    let xattr_dir = work.join("xattrs");
    for dir in [&staging, &xattr_dir] {
        fs_err::create_dir(dir).map_err(io("create", dir))?;
    }
    let names = tree.walk_names(top, skip);
    let mut first_name: HashMap<InodeId, Vec<Vec<u8>>> = HashMap::new();
    let mut extra_links: Vec<(Components, Components)> = Vec::new();
    let mut data = 0u64;
    let mut file_bytes = 0u64;
    let mut script = Vec::new();
    let mut xattr_count = 0usize;
    if let Some(node) = tree.inode(top) {
        set_meta(
            &mut script,
            b"\"/\"",
            &node.kind,
            &node.meta,
            &xattr_dir,
            &mut xattr_count,
        )?;
    }
    // Symlinks, devices and FIFOs are made after mkfs, parents first.
    let mut specials = Vec::new();
    for (components, inode) in &names {
        let Some(node) = tree.inode(*inode) else {
            continue;
        };
        let host = components.iter().fold(staging.clone(), |path, name| {
            path.join(OsStr::from_bytes(name))
        });
        if let Some(first) = first_name.get(inode) {
            match node.kind {
                Kind::File { .. } => {
                    let first = first.iter().fold(staging.clone(), |path, name| {
                        path.join(OsStr::from_bytes(name))
                    });
                    fs_err::hard_link(&first, &host).map_err(io("link", &host))?;
                }
                _ => extra_links.push((first.clone(), components.clone())),
            }
            continue;
        }
        first_name.insert(*inode, components.clone());
        data += BLOCK;
        match &node.kind {
            Kind::Dir(_) => fs_err::create_dir(&host).map_err(io("create", &host))?,
            Kind::File { size } => {
                let content = tree.content_path(*inode);
                fs_err::hard_link(&content, &host).map_err(io("link", &host))?;
                data += size.div_ceil(BLOCK) * BLOCK;
                file_bytes += size;
            }
            _ => specials.push((components.clone(), *inode)),
        }
    }
    for (components, inode) in &specials {
        let Some(node) = tree.inode(*inode) else {
            continue;
        };
        let (name, parent) = components
            .split_last()
            .map_or((&[][..], &[][..]), |(name, parent)| {
                (name.as_slice(), parent)
            });
        match &node.kind {
            Kind::Symlink(target) => {
                line(
                    &mut script,
                    &[
                        b"symlink",
                        &quoted(components)?,
                        &quoted_name(target, components)?,
                    ],
                );
            }
            Kind::Char { major, minor } | Kind::Block { major, minor } => {
                let letter: &[u8] = if matches!(node.kind, Kind::Char { .. }) {
                    b"c"
                } else {
                    b"b"
                };
                line(&mut script, &[b"cd", &quoted(parent)?]);
                line(
                    &mut script,
                    &[
                        b"mknod",
                        &quoted_name(name, components)?,
                        letter,
                        major.to_string().as_bytes(),
                        minor.to_string().as_bytes(),
                    ],
                );
            }
            Kind::Fifo => {
                line(&mut script, &[b"cd", &quoted(parent)?]);
                line(
                    &mut script,
                    &[b"mknod", &quoted_name(name, components)?, b"p"],
                );
            }
            Kind::Dir(_) | Kind::File { .. } => {}
        }
    }
    line(&mut script, &[b"cd", b"/"]);
    for (components, inode) in &names {
        let Some(node) = tree.inode(*inode) else {
            continue;
        };
        if first_name.get(inode) == Some(components) {
            set_meta(
                &mut script,
                &quoted(components)?,
                &node.kind,
                &node.meta,
                &xattr_dir,
                &mut xattr_count,
            )?;
        }
    }
    let mut link_counts: HashMap<Vec<Vec<u8>>, u32> = HashMap::new();
    for (first, extra) in &extra_links {
        line(&mut script, &[b"ln", &quoted(first)?, &quoted(extra)?]);
        *link_counts.entry(first.clone()).or_insert(1) += 1;
    }
    for (first, count) in &link_counts {
        line(
            &mut script,
            &[
                b"sif",
                &quoted(first)?,
                b"links_count",
                count.to_string().as_bytes(),
            ],
        );
    }

    let inodes = first_name.len() as u64 + 1;
    let size = fitted_size(data, inodes).max(spec.min_size);
    let file = fs_err::File::create(image).map_err(io("create", image))?;
    file.set_len(size).map_err(io("size", image))?;
    drop(file);
    let mut mkfs = Command::new(find_program("mkfs.ext4"));
    // -m 0: no blocks reserved for root; root_owner: set again by the script.
    mkfs.args([
        "-q",
        "-F",
        "-m",
        "0",
        "-E",
        "root_owner=0:0",
        "-L",
        spec.label,
    ]);
    if !spec.journal {
        mkfs.args(["-O", "^has_journal"]);
    }
    if spec.fit_inodes {
        mkfs.arg("-N").arg((inodes + inodes / 2 + 4096).to_string());
    }
    mkfs.arg("-d").arg(&staging).arg(image);
    run(mkfs, "mkfs.ext4", image)?;

    let script_path = work.join("debugfs.script");
    let mut script_file = fs_err::File::create(&script_path).map_err(io("create", &script_path))?;
    script_file
        .write_all(&script)
        .map_err(io("write", &script_path))?;
    drop(script_file);
    let mut debugfs = Command::new(find_program("debugfs"));
    debugfs.arg("-w").arg("-f").arg(&script_path).arg(image);
    let stderr = run(debugfs, "debugfs", image)?;
    // debugfs reports a failed command on stderr and still exits 0; its
    // only other stderr line is the version banner.
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|line| !line.starts_with("debugfs ") && !line.trim().is_empty())
        .take(5)
        .collect();
    if !errors.is_empty() {
        return Err(Ext4Error::Tool {
            tool: "debugfs",
            image: image.to_owned(),
            detail: errors.join("; "),
        });
    }
    Ok(Written {
        size,
        inodes,
        file_bytes,
    })
}

/// Runs `command`; returns its stderr.
fn run(mut command: Command, tool: &'static str, image: &Path) -> Result<String, Ext4Error> {
    let output = command.output().map_err(|error| Ext4Error::Tool {
        tool,
        image: image.to_owned(),
        detail: format!("cannot run it (install e2fsprogs): {error}"),
    })?;
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    if !output.status.success() {
        return Err(Ext4Error::Tool {
            tool,
            image: image.to_owned(),
            detail: format!("{}: {}", output.status, stderr.trim()),
        });
    }
    Ok(stderr)
}
