//! Shell completions and man pages of a system install: where each kind
//! goes, writing them (atomically, 0644) and removing exactly the files an
//! install recorded.
//!
//! The CLI renders the files (it owns the clap grammar they come from);
//! this module only places them. Paths are recorded as the system sees
//! them (`/usr/share/man/man1/banger.1`); every operation takes a `root`
//! they are placed under, `/` for a real install and a scratch directory in
//! tests. Removal only touches recorded paths inside the four directories
//! below, so a tampered record cannot make uninstall delete anything else.

use std::path::{Component, Path, PathBuf};

use crate::files::{self, FileError};

/// Where bash-completion loads `banger`'s completions from on demand.
pub const BASH_COMPLETION_DIR: &str = "/usr/share/bash-completion/completions";
/// Where Debian's zsh looks for vendor completion functions.
pub const ZSH_COMPLETION_DIR: &str = "/usr/share/zsh/vendor-completions";
/// Where fish looks for vendor completions.
pub const FISH_COMPLETION_DIR: &str = "/usr/share/fish/vendor_completions.d";
/// Where section 1 man pages go.
pub const MAN1_DIR: &str = "/usr/share/man/man1";

/// What a shell-integration file is (and so where it goes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShellFileKind {
    /// `banger` in [`BASH_COMPLETION_DIR`].
    BashCompletion,
    /// `_banger` in [`ZSH_COMPLETION_DIR`].
    ZshCompletion,
    /// `banger.fish` in [`FISH_COMPLETION_DIR`].
    FishCompletion,
    /// A page in [`MAN1_DIR`].
    ManPage,
}

impl ShellFileKind {
    /// The directory files of this kind go into.
    pub fn dir(self) -> &'static str {
        match self {
            ShellFileKind::BashCompletion => BASH_COMPLETION_DIR,
            ShellFileKind::ZshCompletion => ZSH_COMPLETION_DIR,
            ShellFileKind::FishCompletion => FISH_COMPLETION_DIR,
            ShellFileKind::ManPage => MAN1_DIR,
        }
    }
}

/// One file to install.
#[derive(Debug, Clone)]
pub struct ShellFile {
    /// What it is.
    pub kind: ShellFileKind,
    /// Its file name in [`ShellFileKind::dir`].
    pub file_name: String,
    /// Its content.
    pub contents: Vec<u8>,
}

/// A man page name that is not a plain `*.1` file name.
#[derive(Debug, thiserror::Error)]
#[error("{name:?} is not a section 1 man page file name")]
pub struct BadManPageName {
    /// The name given.
    pub name: String,
}

impl ShellFile {
    /// A completion script under the name its shell looks for.
    pub fn new(kind: ShellFileKind, contents: Vec<u8>) -> Self {
        let file_name = match kind {
            ShellFileKind::BashCompletion => "banger",
            ShellFileKind::ZshCompletion => "_banger",
            ShellFileKind::FishCompletion => "banger.fish",
            ShellFileKind::ManPage => "banger.1",
        };
        Self {
            kind,
            file_name: file_name.to_owned(),
            contents,
        }
    }

    /// A man page called `name` (`banger-vm.1`): one plain file name
    /// starting with `banger` and ending in `.1`.
    pub fn man_page(name: &str, contents: Vec<u8>) -> Result<Self, BadManPageName> {
        let plain = Path::new(name).components().count() == 1
            && matches!(
                Path::new(name).components().next(),
                Some(Component::Normal(_))
            );
        if !plain || !name.starts_with("banger") || !name.ends_with(".1") {
            return Err(BadManPageName {
                name: name.to_owned(),
            });
        }
        Ok(Self {
            kind: ShellFileKind::ManPage,
            file_name: name.to_owned(),
            contents,
        })
    }

    /// Where it is installed, as the system sees it.
    pub fn path(&self) -> PathBuf {
        Path::new(self.kind.dir()).join(&self.file_name)
    }
}

/// `path` (absolute, as recorded) under `root`.
pub fn under_root(root: &Path, path: &Path) -> PathBuf {
    root.join(path.strip_prefix("/").unwrap_or(path))
}

/// Writes `files` under `root` (creating their directories, 0755), each
/// atomically with mode 0644; returns their paths as the system sees them,
/// for the install metadata.
pub fn install(root: &Path, files: &[ShellFile]) -> Result<Vec<PathBuf>, FileError> {
    let mut installed = Vec::new();
    for file in files {
        files::create_dir(&under_root(root, Path::new(file.kind.dir())), 0o755)?;
        let path = file.path();
        files::write_file(&under_root(root, &path), &file.contents, 0o644)?;
        installed.push(path);
    }
    Ok(installed)
}

/// Whether `path` is a file directly inside one of the four directories,
/// as an install records it.
pub fn is_shell_file_path(path: &Path) -> bool {
    let Some(parent) = path.parent() else {
        return false;
    };
    let plain_name = matches!(
        path.file_name()
            .map(Path::new)
            .map(|name| name.components().next()),
        Some(Some(Component::Normal(_)))
    );
    plain_name
        && [
            BASH_COMPLETION_DIR,
            ZSH_COMPLETION_DIR,
            FISH_COMPLETION_DIR,
            MAN1_DIR,
        ]
        .iter()
        .any(|dir| parent == Path::new(dir))
}

/// Removes the recorded `paths` under `root` that are shell-integration
/// files (others are skipped); returns the paths removed, as recorded.
pub fn remove(root: &Path, paths: &[PathBuf]) -> Result<Vec<PathBuf>, FileError> {
    let mut removed = Vec::new();
    for path in paths.iter().filter(|path| is_shell_file_path(path)) {
        if files::remove_file(&under_root(root, path))? {
            removed.push(path.clone());
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn man_page_names_are_plain_banger_pages() {
        assert!(ShellFile::man_page("banger-vm.1", Vec::new()).is_ok());
        for bad in ["../banger.1", "banger/x.1", "ls.1", "banger.8", "/banger.1"] {
            assert!(ShellFile::man_page(bad, Vec::new()).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_files_in_the_four_directories_count() {
        assert!(is_shell_file_path(Path::new(
            "/usr/share/man/man1/banger-vm.1"
        )));
        assert!(is_shell_file_path(Path::new(
            "/usr/share/bash-completion/completions/banger"
        )));
        for bad in [
            "/etc/passwd",
            "/usr/share/man/man1",
            "/usr/share/man/man1/../../../../etc/shadow",
            "/usr/share/man/man1/sub/banger.1",
            "usr/share/man/man1/banger.1",
        ] {
            assert!(!is_shell_file_path(Path::new(bad)), "{bad}");
        }
    }
}
