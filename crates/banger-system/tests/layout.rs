//! An install prefix is refused when it or any parent is not root's alone
//! (owned by someone else, or writable by group or others), along the path
//! as written and along the path its links resolve to. Runs as whoever runs
//! the tests: the trusted uid is ours, and the directories live where every
//! parent is ours alone (see [`trusted_parent`]), whatever the checkout's
//! path.

#![allow(clippy::unwrap_used, reason = "test setup panics on failure")]

use std::os::unix::fs::PermissionsExt;

use banger_system::layout::check_trusted_dir;
use banger_system::{Layout, LayoutError};

#[test]
fn prefixes_with_user_writable_parents_are_refused() {
    let me = rustix::process::geteuid().as_raw();
    let base = tempfile::tempdir_in(trusted_parent()).unwrap();
    fs_err::set_permissions(base.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let prefix = base.path().join("opt/banger");
    fs_err::create_dir_all(&prefix).unwrap();
    let layout = Layout::with_prefix(&prefix);
    // Missing directories are fine: their existing parents are checked.
    check_trusted_dir(&layout.bin_dir, me).unwrap();
    check_trusted_dir(&layout.lib_dir, me).unwrap();

    // A group- or world-writable parent.
    let opt = base.path().join("opt");
    fs_err::set_permissions(&opt, std::fs::Permissions::from_mode(0o777)).unwrap();
    let error = check_trusted_dir(&layout.bin_dir, me).unwrap_err();
    assert!(
        matches!(&error, LayoutError::UserWritable { path, .. } if *path == opt),
        "{error}"
    );
    assert!(
        error.to_string().contains("writable by group or others"),
        "{error}"
    );
    fs_err::set_permissions(&opt, std::fs::Permissions::from_mode(0o755)).unwrap();

    // A parent someone else owns (we are not that uid).
    let error = check_trusted_dir(&layout.bin_dir, me + 1).unwrap_err();
    assert!(
        error.to_string().contains(&format!("owned by uid {me}")),
        "{error}"
    );

    // A link to a writable directory: the resolved path is checked too.
    let open = base.path().join("open");
    fs_err::create_dir(&open).unwrap();
    fs_err::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let link = base.path().join("link");
    fs_err::os::unix::fs::symlink(&open, &link).unwrap();
    let error = check_trusted_dir(&link.join("bin"), me).unwrap_err();
    assert!(
        matches!(&error, LayoutError::UserWritable { path, .. } if path.ends_with("open")),
        "{error}"
    );
}

/// A directory whose every parent is ours and not group/other-writable, so
/// only what the test sets up makes a prefix untrusted: as root `/run`
/// (a checkout under /tmp, as in CI's fresh clone, would sit below the
/// world-writable /tmp); else cargo's target tmp dir.
fn trusted_parent() -> std::path::PathBuf {
    if rustix::process::geteuid().is_root() {
        std::path::PathBuf::from("/run")
    } else {
        std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
    }
}
