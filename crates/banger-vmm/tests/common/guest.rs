//! What the real-guest tests share: the static agent, a busybox root
//! filesystem, ext4 images and a guard that kills a VM left half-way.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use banger_image::initramfs::DEFAULT_BUSYBOX;
use banger_image::modules_disk::{Ext4Options, mkfs_ext4};
use banger_vmm::RunningVm;

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Builds the static agent with the project's script; None (after
/// `skip_or_fail`) when that fails.
pub fn build_agent() -> Option<PathBuf> {
    let target = std::env::var_os("BANGER_AGENT_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target-vmm-agent"));
    let started = Instant::now();
    let script = workspace_root().join("scripts/build-agent.sh");
    let output = match Command::new(&script)
        .arg("debug")
        .env("CARGO_TARGET_DIR", &target)
        .output()
    {
        Ok(output) => output,
        Err(error) => {
            banger_testkit::skip_or_fail(format!("{} does not run: {error}", script.display()));
            return None;
        }
    };
    if !output.status.success() {
        banger_testkit::skip_or_fail(format!(
            "build-agent.sh failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        ));
        return None;
    }
    let path = PathBuf::from(
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .last()
            .unwrap_or_default()
            .trim(),
    );
    println!(
        "  agent {} built in {:?}",
        path.display(),
        started.elapsed()
    );
    if !path.is_file() {
        banger_testkit::skip_or_fail(format!(
            "build-agent.sh printed {}, which is not a file",
            path.display()
        ));
        return None;
    }
    Some(path)
}

pub fn busybox_rootfs(root: &Path, init_script: &str) {
    use std::os::unix::fs::PermissionsExt;
    for dir in [
        "bin",
        "sbin",
        "etc",
        "proc",
        "sys",
        "dev",
        "root",
        "tmp",
        "run",
        "usr/local/bin",
    ] {
        fs_err::create_dir_all(root.join(dir)).unwrap();
    }
    fs_err::copy(DEFAULT_BUSYBOX, root.join("bin/busybox")).unwrap();
    for applet in [
        "sh", "echo", "uname", "pidof", "sleep", "cat", "mount", "poweroff",
    ] {
        fs_err::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    fs_err::write(root.join("etc/hostname"), "base\n").unwrap();
    let init = root.join("sbin/init");
    fs_err::write(&init, init_script).unwrap();
    fs_err::set_permissions(&init, std::fs::Permissions::from_mode(0o755)).unwrap();
}

pub fn ext4(path: &Path, size: u64, tree: Option<&Path>, journal: bool) {
    mkfs_ext4(
        path,
        size,
        &Ext4Options {
            populate_from: tree,
            journal,
            ..Default::default()
        },
    )
    .unwrap();
}

/// Kills every process of the VM if the test fails half-way.
pub struct KillOnDrop(pub RunningVm);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for process in self.0.processes() {
            let _ = process.signal(banger_vmm::Signal::KILL);
        }
    }
}
