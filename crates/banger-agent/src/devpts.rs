//! `/dev/pts`, which PTY sessions of the built-in SSH server need. systemd
//! and most inits mount it; a bare image with no init (or busybox init with
//! a minimal inittab) may not, so the agent mounts it when it is missing.

use std::path::Path;

/// Mounts devpts on `/dev/pts` unless it is there already (best effort: a
/// failure shows up as the PTY allocation error that follows).
pub fn ensure_mounted() {
    if Path::new("/dev/pts/ptmx").exists() {
        return;
    }
    let _ = fs_err::create_dir_all("/dev/pts");
    // gid 5 is `tty` on Debian and Alpine; mode 620 as everywhere.
    if let Err(error) = rustix::mount::mount(
        "devpts",
        "/dev/pts",
        "devpts",
        rustix::mount::MountFlags::NOSUID | rustix::mount::MountFlags::NOEXEC,
        c"gid=5,mode=620,ptmxmode=666",
    ) {
        eprintln!("banger-vsock-agent: cannot mount devpts on /dev/pts: {error}");
    }
}
