//! Shell completions and man pages placed under a scratch root the way
//! `banger system install` places them under `/`, and removed again the way
//! `banger system uninstall` removes what the metadata recorded.

#![allow(clippy::unwrap_used, reason = "tests panic on setup failures")]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use banger_system::shell_files::{self, ShellFile, ShellFileKind};

fn files() -> Vec<ShellFile> {
    vec![
        ShellFile::new(
            ShellFileKind::BashCompletion,
            b"complete -F _banger banger\n".to_vec(),
        ),
        ShellFile::new(ShellFileKind::ZshCompletion, b"#compdef banger\n".to_vec()),
        ShellFile::new(
            ShellFileKind::FishCompletion,
            b"complete -c banger\n".to_vec(),
        ),
        ShellFile::man_page("banger.1", b".TH banger 1\n".to_vec()).unwrap(),
        ShellFile::man_page("banger-vm.1", b".TH banger-vm 1\n".to_vec()).unwrap(),
    ]
}

#[test]
fn install_puts_each_file_where_its_shell_looks_and_uninstall_removes_them() {
    let root = tempfile::tempdir().unwrap();
    let installed = shell_files::install(root.path(), &files()).unwrap();
    let expected: Vec<PathBuf> = [
        "/usr/share/bash-completion/completions/banger",
        "/usr/share/zsh/vendor-completions/_banger",
        "/usr/share/fish/vendor_completions.d/banger.fish",
        "/usr/share/man/man1/banger.1",
        "/usr/share/man/man1/banger-vm.1",
    ]
    .iter()
    .map(PathBuf::from)
    .collect();
    assert_eq!(installed, expected);
    for (path, file) in installed.iter().zip(files()) {
        let placed = shell_files::under_root(root.path(), path);
        assert_eq!(fs_err::read(&placed).unwrap(), file.contents);
        let mode = fs_err::metadata(&placed).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644, "{}", placed.display());
    }

    // A neighbour in the same directory, and a recorded path outside the
    // four directories, both survive.
    let neighbour = root.path().join("usr/share/man/man1/ls.1");
    fs_err::write(&neighbour, "keep").unwrap();
    let outside = root.path().join("etc/passwd");
    fs_err::create_dir_all(outside.parent().unwrap()).unwrap();
    fs_err::write(&outside, "keep").unwrap();
    let mut recorded = installed.clone();
    recorded.push(PathBuf::from("/etc/passwd"));
    recorded.push(PathBuf::from("/usr/share/man/man1/../../../../etc/passwd"));

    let removed = shell_files::remove(root.path(), &recorded).unwrap();
    assert_eq!(removed, installed);
    for path in &installed {
        assert!(!shell_files::under_root(root.path(), path).exists());
    }
    assert!(neighbour.exists());
    assert!(outside.exists());
    // Removing again is not an error (a half-finished uninstall re-run).
    assert!(
        shell_files::remove(root.path(), &recorded)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn under_root_keeps_paths_inside_the_root() {
    assert_eq!(
        shell_files::under_root(
            Path::new("/tmp/r"),
            Path::new("/usr/share/man/man1/banger.1")
        ),
        Path::new("/tmp/r/usr/share/man/man1/banger.1")
    );
}
