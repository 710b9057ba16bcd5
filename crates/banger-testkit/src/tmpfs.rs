//! A small tmpfs for out-of-space tests: mounted on a fresh temporary
//! directory, unmounted (and the directory removed) when dropped.

use std::path::Path;
use std::process::Command;

/// A mounted tmpfs of a fixed size.
pub struct SmallTmpfs {
    dir: tempfile::TempDir,
}

impl SmallTmpfs {
    /// Mounts a tmpfs of `size` (as `mount -o size=`, e.g. `"4m"`); None,
    /// after [`crate::skip_or_fail`], when not root (mounting needs it).
    pub fn mount(size: &str) -> Option<Self> {
        if !rustix::process::geteuid().is_root() {
            crate::skip_or_fail("mounting a small tmpfs needs root");
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("mount runs");
        assert!(mounted.success(), "mount a {size} tmpfs");
        Some(Self { dir })
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SmallTmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}
