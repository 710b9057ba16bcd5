//! The payload tar: every verified npm tarball re-rooted under
//! `/usr/local/lib/banger/tools/<tool>/`, the `/usr/local/bin` links, and
//! banger's own files (tmux plugin, opencode unit, mise activation). Every
//! entry is owned by root (uid/gid 0) with a normalised mode, so mmdebstrap's
//! `tar-in` gives the tree the same files in root and unshare mode.

use std::collections::BTreeSet;
use std::path::{Component, Path};

use flate2::read::GzDecoder;

use super::{Plan, ProvisionError, ProvisionRecord, io};

/// Where tools are unpacked in the image.
pub const TOOLS_DIR: &str = "usr/local/lib/banger/tools";

/// banger's own files: (path in the image, mode, contents).
const FILES: &[(&str, u32, &str)] = &[
    (
        "usr/local/share/banger/tmux-banger-persist/banger-persist.tmux",
        0o755,
        include_str!("../../../../images/tmux-banger-persist/banger-persist.tmux"),
    ),
    (
        "usr/local/share/banger/tmux-banger-persist/scripts/banger-tmux.sh",
        0o755,
        include_str!("../../../../images/tmux-banger-persist/scripts/banger-tmux.sh"),
    ),
    (
        "usr/local/share/banger/tmux-banger-persist/README.md",
        0o644,
        include_str!("../../../../images/tmux-banger-persist/README.md"),
    ),
    (
        "etc/systemd/system/opencode.service",
        0o644,
        include_str!("../../../../images/guest/opencode.service"),
    ),
    (
        "usr/local/lib/banger/opencode-serve",
        0o755,
        include_str!("../../../../images/guest/opencode-serve"),
    ),
    (
        "etc/profile.d/banger-mise.sh",
        0o644,
        include_str!("../../../../images/guest/banger-mise.sh"),
    ),
];

/// Links: (path in the image, target).
const LINKS: &[(&str, &str)] = &[
    (
        "usr/local/bin/banger-tmux",
        "/usr/local/share/banger/tmux-banger-persist/scripts/banger-tmux.sh",
    ),
    (
        "etc/systemd/system/multi-user.target.wants/opencode.service",
        "/etc/systemd/system/opencode.service",
    ),
];

struct Writer {
    builder: tar::Builder<fs_err::File>,
    dirs: BTreeSet<String>,
    path: std::path::PathBuf,
}

impl Writer {
    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_uid(0);
        header.set_gid(0);
        header.set_size(size);
        // A fixed time: the payload of a pin is the same every build.
        header.set_mtime(499_162_500);
        header
    }

    /// Adds every missing parent directory of `path` (0755, root).
    fn parents(&mut self, path: &str) -> Result<(), ProvisionError> {
        let mut prefix = String::new();
        let parts: Vec<&str> = path.split('/').collect();
        for part in &parts[..parts.len().saturating_sub(1)] {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            if self.dirs.insert(prefix.clone()) {
                let mut header = Self::header(tar::EntryType::Directory, 0o755, 0);
                self.builder
                    .append_data(&mut header, format!("{prefix}/"), std::io::empty())
                    .map_err(io("write", &self.path))?;
            }
        }
        Ok(())
    }

    fn file(
        &mut self,
        path: &str,
        mode: u32,
        size: u64,
        data: impl std::io::Read,
    ) -> Result<(), ProvisionError> {
        self.parents(path)?;
        let mut header = Self::header(tar::EntryType::Regular, mode, size);
        self.builder
            .append_data(&mut header, path, data)
            .map_err(io("write", &self.path))
    }

    fn link(&mut self, path: &str, target: &str) -> Result<(), ProvisionError> {
        self.parents(path)?;
        let mut header = Self::header(tar::EntryType::Symlink, 0o777, 0);
        self.builder
            .append_link(&mut header, path, target)
            .map_err(io("write", &self.path))
    }
}

/// The package-relative path of a tarball entry: npm tarballs keep their
/// files under one top directory (usually `package/`), which is dropped.
/// None for the top directory itself; an error for anything that would
/// leave the package.
fn inside_package(package: &str, entry: &Path) -> Result<Option<String>, ProvisionError> {
    let mut parts = Vec::new();
    for component in entry.components().skip(1) {
        match component {
            Component::Normal(part) => parts.push(part.to_string_lossy().into_owned()),
            Component::CurDir => {}
            _ => {
                return Err(ProvisionError::UnsafeEntry {
                    package: package.to_owned(),
                    entry: entry.display().to_string(),
                });
            }
        }
    }
    if entry.is_absolute() || entry.components().next().is_none() {
        return Err(ProvisionError::UnsafeEntry {
            package: package.to_owned(),
            entry: entry.display().to_string(),
        });
    }
    Ok((!parts.is_empty()).then(|| parts.join("/")))
}

/// Writes the payload tar to `out`: the tools of `plan` from `tarballs`
/// (as returned by [`super::fetch`]), the links, banger's files and the
/// record at `/etc/banger/provision.json`. `progress` hears per tool.
pub fn stage(
    plan: &Plan,
    tarballs: &[std::path::PathBuf],
    record: &ProvisionRecord,
    out: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<(), ProvisionError> {
    let file = fs_err::File::create(out).map_err(io("create", out))?;
    let mut writer = Writer {
        builder: tar::Builder::new(file),
        dirs: BTreeSet::new(),
        path: out.to_owned(),
    };
    let mut tarball = tarballs.iter();
    for tool in &plan.tools {
        let root = format!("{TOOLS_DIR}/{}", tool.name);
        let wanted: BTreeSet<String> = tool.bins.values().map(|t| format!("{root}/{t}")).collect();
        let mut seen = BTreeSet::new();
        let mut skipped = 0usize;
        for package in &tool.packages {
            let Some(path) = tarball.next() else {
                break;
            };
            let id = package.id();
            let read_error = |source| ProvisionError::Tarball {
                package: id.clone(),
                path: path.clone(),
                source,
            };
            let gz = fs_err::File::open(path).map_err(read_error)?;
            let mut archive = tar::Archive::new(GzDecoder::new(gz));
            for entry in archive.entries().map_err(read_error)? {
                let entry = entry.map_err(read_error)?;
                let entry_path = entry.path().map_err(read_error)?.into_owned();
                let Some(relative) = inside_package(&id, &entry_path)? else {
                    continue;
                };
                let kind = entry.header().entry_type();
                if kind.is_dir() {
                    continue;
                }
                if !(kind.is_file() || kind == tar::EntryType::Continuous) {
                    // npm never packs links or devices; nothing runs them.
                    skipped += 1;
                    continue;
                }
                let full = format!("{root}/{}/{relative}", package.path);
                let executable = entry.header().mode().map_err(read_error)? & 0o111 != 0;
                let mode = if executable || wanted.contains(&full) {
                    0o755
                } else {
                    0o644
                };
                let size = entry.header().size().map_err(read_error)?;
                seen.insert(full.clone());
                writer.file(&full, mode, size, entry)?;
            }
        }
        for (command, target) in &tool.bins {
            let full = format!("{root}/{target}");
            if !seen.contains(&full) {
                return Err(ProvisionError::MissingBin {
                    tool: tool.name.clone(),
                    bin: command.clone(),
                    target: target.clone(),
                });
            }
            writer.link(&format!("usr/local/bin/{command}"), &format!("/{full}"))?;
        }
        progress(&format!(
            "staged {} {} ({} packages{})",
            tool.name,
            tool.version,
            tool.packages.len(),
            if skipped > 0 {
                format!(", {skipped} link entries skipped")
            } else {
                String::new()
            }
        ));
    }
    for (path, mode, text) in FILES {
        writer.file(path, *mode, text.len() as u64, text.as_bytes())?;
    }
    for (path, target) in LINKS {
        writer.link(path, target)?;
    }
    let json = serde_json::to_string_pretty(record).map_err(|source| ProvisionError::Record {
        path: out.to_owned(),
        source,
    })? + "\n";
    writer.file(
        "etc/banger/provision.json",
        0o644,
        json.len() as u64,
        json.as_bytes(),
    )?;
    let mut file = writer.builder.into_inner().map_err(io("finish", out))?;
    std::io::Write::flush(&mut file).map_err(io("flush", out))?;
    Ok(())
}

/// [`inside_package`] on a path given as text, for the unit tests.
#[cfg(test)]
pub(super) fn inside_package_for_test(
    package: &str,
    entry: &str,
) -> Result<Option<String>, ProvisionError> {
    inside_package(package, Path::new(entry))
}
