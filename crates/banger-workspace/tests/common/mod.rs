//! Shared helpers: host repositories in temp dirs and a fake ssh that runs
//! the "guest" side locally.

#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use banger_host::ssh::SshTarget;

/// The fake ssh script (see `tests/fake_ssh.sh`).
pub const FAKE_SSH: &str = include_str!("../fake_ssh.sh");

/// Runs git in `dir`, asserting success; returns trimmed stdout.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .expect("run git");
    assert!(
        output.status.success(),
        "git {args:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .trim_end()
        .to_owned()
}

/// Like [`git`] but keeps trailing whitespace.
pub fn git_raw(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .expect("run git");
    assert!(output.status.success(), "git {args:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A new repository at `dir` on `main` with one commit holding `file`.
pub fn one_commit_repo(dir: &Path, file: &str, content: &str, message: &str) {
    fs_err::create_dir_all(dir).expect("mkdir");
    git(dir, &["init", "-q", "-b", "main"]);
    write(&dir.join(file), content);
    git(dir, &["add", file]);
    git(
        dir,
        &[
            "-c",
            "user.name=x",
            "-c",
            "user.email=x@x",
            "commit",
            "-q",
            "-m",
            message,
        ],
    );
}

pub fn write(path: &Path, content: &str) {
    if let Some(parent) = path.parent() {
        fs_err::create_dir_all(parent).expect("mkdir");
    }
    fs_err::write(path, content).expect("write");
}

/// A test world: a host repo, a guest dir and a fake ssh.
pub struct World {
    pub tmp: tempfile::TempDir,
    pub repo: PathBuf,
    pub ssh: PathBuf,
}

impl World {
    /// A repository on `main` with a few files, one commit.
    pub fn new() -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let repo = tmp.path().join("host/repo");
        fs_err::create_dir_all(&repo).expect("mkdir");
        git(&repo, &["init", "-q", "-b", "main"]);
        git(&repo, &["config", "user.name", "Host Person"]);
        git(&repo, &["config", "user.email", "host@example.com"]);
        write(&repo.join("a.txt"), "alpha\n");
        write(&repo.join("src/b.rs"), "fn main() {}\n");
        write(&repo.join("src/c.txt"), "charlie\n");
        write(&repo.join(".gitignore"), "*.log\n/target/\n");
        write(&repo.join("run.sh"), "#!/bin/sh\necho hi\n");
        fs_err::set_permissions(repo.join("run.sh"), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        fs_err::os::unix::fs::symlink("a.txt", repo.join("link")).expect("symlink");
        fs_err::os::unix::fs::symlink("/etc/hostname", repo.join("outside")).expect("symlink");
        git(&repo, &["add", "-A"]);
        git(&repo, &["commit", "-q", "-m", "initial"]);
        let bin = tmp.path().join("bin");
        fs_err::create_dir_all(&bin).expect("mkdir");
        let ssh = bin.join("ssh");
        banger_testkit::write_executable(&ssh, FAKE_SSH);
        Self { tmp, repo, ssh }
    }

    /// A guest path inside the temp dir (not created).
    pub fn guest(&self, name: &str) -> PathBuf {
        self.tmp.path().join("guest").join(name)
    }

    pub fn target(&self) -> SshTarget {
        SshTarget {
            user: "root".into(),
            ip: "127.0.0.1".parse().expect("ip"),
            port: 22,
            alias: "testvm.vm".into(),
            identity: self.tmp.path().join("id"),
            known_hosts: self.tmp.path().join("known_hosts"),
        }
    }

    /// Prepares with `options` (guest path set to `guest`), no progress.
    pub fn prepare(
        &self,
        guest: &Path,
        mut options: banger_workspace::PrepareOptions,
    ) -> Result<banger_workspace::PrepareReport, banger_workspace::PrepareError> {
        options.guest_path = guest.to_str().expect("utf-8 temp path").to_owned();
        let plan = banger_workspace::plan(&self.repo, &options).expect("plan");
        banger_workspace::prepare(&plan, &self.ssh, &self.target(), &mut |_| {})
    }
}
