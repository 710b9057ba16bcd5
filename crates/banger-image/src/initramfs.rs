//! Build banger's initramfs: a gzip-compressed newc archive with busybox, `/init`
//! and only the kernel modules needed to reach the root filesystem.
//!
//! One initramfs is built per kernel and reused by every VM using that kernel;
//! per-VM settings travel in a separate archive (see [`crate::guest_config`]).
//! Contents:
//! - `/bin/busybox` (the host's static busybox, checked to have no ELF
//!   interpreter) plus symlinks for the applets `/init` uses;
//! - `/init`, the script from `assets/initramfs/init`, compiled in;
//! - `/dev/console` and `/dev/null` nodes, because the kernel opens
//!   `/dev/console` for `/init`'s stdio before `/init` can mount devtmpfs;
//! - the [`BOOT_MODULES`] and their dependencies, decompressed, at their usual
//!   `/lib/modules/<version>/` paths, and `/etc/banger/modules` listing them in
//!   load order (busybox `insmod` resolves nothing itself);
//! - `/etc/banger/kernel-version`, so `/init` can refuse a mismatched kernel
//!   with a clear message instead of failing module loads.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::cpio::{CpioError, CpioWriter};
use crate::elf;
use crate::modules::{ModuleIndex, ModulesError, read_module};

/// The `/init` script, embedded at compile time.
pub const INIT_SCRIPT: &str = include_str!("../../../assets/initramfs/init");

/// Modules `/init` loads: virtio transports (PCI for QEMU, MMIO for
/// Firecracker), block and net drivers, overlayfs, vsock for the agent, and
/// virtio-rng, loaded before the root filesystem so that the guest's random
/// pool is seeded from the host before systemd, udev and sshd ask for it.
/// Their dependencies are added automatically.
pub const BOOT_MODULES: &[&str] = &[
    "virtio_pci",
    "virtio_mmio",
    "virtio_blk",
    "virtio_net",
    "overlay",
    "vsock",
    "vmw_vsock_virtio_transport",
    "virtio_rng",
];

/// Modules loaded too when the kernel has them (a kernel built without them
/// still boots): `button` and `evdev` deliver the ACPI power button (QEMU's
/// `system_powerdown`, i.e. `vm stop`) as an input event to any image's
/// init or to banger's, not only to systemd's logind after udev loaded them.
pub const OPTIONAL_BOOT_MODULES: &[&str] = &["button", "evdev"];

/// busybox applets `/init` calls, installed as symlinks in `/bin`.
pub const BUSYBOX_APPLETS: &[&str] = &[
    "cat",
    "chmod",
    "chown",
    "chroot",
    "cttyhack",
    "dirname",
    "echo",
    "grep",
    "hostname",
    "insmod",
    "ip",
    "mkdir",
    "mount",
    "poweroff",
    "printf",
    "readlink",
    "rm",
    "setsid",
    "sh",
    "sleep",
    "switch_root",
    "sync",
    "uname",
];

/// Default location of the host's static busybox (Debian `busybox-static`).
pub const DEFAULT_BUSYBOX: &str = "/bin/busybox";

/// Why the initramfs could not be built.
#[derive(Debug, Error)]
pub enum InitramfsError {
    /// Reading an input or writing the output failed.
    #[error("{path}")]
    Io {
        /// File that failed.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The busybox binary is dynamically linked or not an ELF file; it could not
    /// run in an initramfs that has no libc.
    #[error("{path} is not a statically linked ELF binary ({reason}); install busybox-static")]
    BusyboxNotStatic {
        /// The busybox path.
        path: PathBuf,
        /// Why it was rejected.
        reason: String,
    },
    /// Resolving or reading modules failed.
    #[error(transparent)]
    Modules(#[from] ModulesError),
    /// Writing the archive failed.
    #[error("building initramfs {path}")]
    Cpio {
        /// Output file.
        path: PathBuf,
        /// Underlying error.
        source: CpioError,
    },
}

/// What went into a built initramfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitramfsInfo {
    /// Kernel version the archive is for.
    pub kernel_version: String,
    /// Module names in load order.
    pub modules: Vec<String>,
    /// Size of the compressed archive in bytes.
    pub size: u64,
}

/// Checks that `busybox` is an ELF binary without a dynamic loader and returns
/// its bytes.
pub fn read_static_busybox(busybox: &Path) -> Result<Vec<u8>, InitramfsError> {
    let data = fs_err::read(busybox).map_err(|source| InitramfsError::Io {
        path: busybox.to_owned(),
        source,
    })?;
    let not_static = |reason: String| InitramfsError::BusyboxNotStatic {
        path: busybox.to_owned(),
        reason,
    };
    match elf::has_interpreter(&data) {
        Ok(false) => Ok(data),
        Ok(true) => Err(not_static("it has a PT_INTERP dynamic loader".into())),
        Err(e) => Err(not_static(e.to_string())),
    }
}

/// Writes the (uncompressed) newc initramfs for the kernel whose modules live in
/// `modules_dir` (version `kernel_version`) into `out`, loading `modules`
/// (normally [`BOOT_MODULES`]). Returns the module names in load order.
pub fn write_initramfs<W: Write>(
    out: W,
    busybox: &[u8],
    modules_dir: &Path,
    kernel_version: &str,
    modules: &[&str],
) -> Result<(W, Vec<String>), InitramfsError> {
    // Kernels with everything built in (e.g. Firecracker CI kernels) have no
    // modules tree at all; an empty list must not require one.
    let index = if modules.is_empty() {
        ModuleIndex::default()
    } else {
        ModuleIndex::load(modules_dir)?
    };
    // The optional modules only come with a requested list (an empty one
    // means a kernel with everything built in).
    let mut wanted: Vec<&str> = modules.to_vec();
    if !modules.is_empty() {
        wanted.extend(
            OPTIONAL_BOOT_MODULES
                .iter()
                .filter(|name| index.get(name).is_some() && !modules.contains(name)),
        );
    }
    let order = index.resolve(&wanted)?;
    let cpio_err = |source| InitramfsError::Cpio {
        path: modules_dir.to_owned(),
        source,
    };

    // Module files keep their tree paths, minus any compression suffix.
    let mut files = Vec::new();
    for entry in &order {
        let data = read_module(&modules_dir.join(&entry.rel_path))?;
        let rel = entry
            .rel_path
            .strip_suffix(".xz")
            .or_else(|| entry.rel_path.strip_suffix(".zst"))
            .or_else(|| entry.rel_path.strip_suffix(".gz"))
            .unwrap_or(&entry.rel_path);
        files.push((
            format!("lib/modules/{kernel_version}/{rel}"),
            data,
            rel.to_owned(),
        ));
    }

    // Every parent directory must precede its entries; a sorted set of all
    // ancestors gives exactly that order.
    let mut dirs: BTreeSet<String> = [
        "bin",
        "dev",
        "etc/banger",
        "mnt",
        "newroot",
        "proc",
        "sys",
        "tmp",
        "run",
    ]
    .iter()
    .map(|d| (*d).to_owned())
    .collect();
    for (path, _, _) in &files {
        dirs.insert(
            path.rsplit_once('/')
                .map(|(d, _)| d.to_owned())
                .unwrap_or_default(),
        );
    }
    let mut all_dirs = BTreeSet::new();
    for d in &dirs {
        let mut acc = String::new();
        for part in d.split('/') {
            if !acc.is_empty() {
                acc.push('/');
            }
            acc.push_str(part);
            all_dirs.insert(acc.clone());
        }
    }

    let mut w = CpioWriter::new(out);
    for d in &all_dirs {
        let mode = if d == "tmp" { 0o1777 } else { 0o755 };
        w.dir(d, mode).map_err(cpio_err)?;
    }
    w.char_dev("dev/console", 0o600, 5, 1).map_err(cpio_err)?;
    w.char_dev("dev/null", 0o666, 1, 3).map_err(cpio_err)?;
    w.file("bin/busybox", 0o755, busybox).map_err(cpio_err)?;
    for applet in BUSYBOX_APPLETS {
        w.symlink(&format!("bin/{applet}"), "busybox")
            .map_err(cpio_err)?;
    }
    w.file("init", 0o755, INIT_SCRIPT.as_bytes())
        .map_err(cpio_err)?;
    w.file(
        "etc/banger/kernel-version",
        0o644,
        format!("{kernel_version}\n").as_bytes(),
    )
    .map_err(cpio_err)?;
    let list: String = files.iter().map(|(_, _, rel)| format!("{rel}\n")).collect();
    w.file("etc/banger/modules", 0o644, list.as_bytes())
        .map_err(cpio_err)?;
    for (path, data, _) in &files {
        w.file(path, 0o644, data).map_err(cpio_err)?;
    }
    let out = w.finish().map_err(cpio_err)?;
    Ok((out, order.iter().map(|e| e.name.clone()).collect()))
}

/// Builds the gzip-compressed initramfs at `out` (written to a temporary file
/// and renamed into place) using the static busybox at `busybox`, with the
/// [`BOOT_MODULES`] of the kernel whose modules tree is `modules_dir`.
pub fn build_initramfs(
    busybox: &Path,
    modules_dir: &Path,
    kernel_version: &str,
    out: &Path,
) -> Result<InitramfsInfo, InitramfsError> {
    build_initramfs_with_modules(busybox, modules_dir, kernel_version, BOOT_MODULES, out)
}

/// Like [`build_initramfs`] with an explicit module list; pass `&[]` for a
/// kernel with everything built in (then `modules_dir` is not read).
pub fn build_initramfs_with_modules(
    busybox: &Path,
    modules_dir: &Path,
    kernel_version: &str,
    modules: &[&str],
    out: &Path,
) -> Result<InitramfsInfo, InitramfsError> {
    let busybox_bytes = read_static_busybox(busybox)?;
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| InitramfsError::Io { path, source }
    };
    let tmp = out.with_extension("tmp");
    let file = fs_err::File::create(&tmp).map_err(io(&tmp))?;
    let gz = flate2::write::GzEncoder::new(
        std::io::BufWriter::new(file),
        flate2::Compression::default(),
    );
    let (gz, loaded) = write_initramfs(gz, &busybox_bytes, modules_dir, kernel_version, modules)?;
    let mut buf = gz.finish().map_err(io(&tmp))?;
    buf.flush().map_err(io(&tmp))?;
    drop(buf);
    fs_err::rename(&tmp, out).map_err(io(out))?;
    let size = fs_err::metadata(out).map_err(io(out))?.len();
    Ok(InitramfsInfo {
        kernel_version: kernel_version.to_owned(),
        modules: loaded,
        size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpio::parse;

    fn fake_tree() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let m = dir.path().join("lib/modules/9.9.9");
        fs_err::create_dir_all(m.join("kernel/a")).unwrap();
        let dep = "kernel/a/virtio_blk.ko: kernel/a/virtio.ko\nkernel/a/virtio.ko:\nkernel/a/overlay.ko.xz:\n";
        fs_err::write(m.join("modules.dep"), dep).unwrap();
        fs_err::write(m.join("modules.builtin"), "kernel/fs/ext4/ext4.ko\n").unwrap();
        fs_err::write(m.join("kernel/a/virtio_blk.ko"), b"BLK").unwrap();
        fs_err::write(m.join("kernel/a/virtio.ko"), b"VIRTIO").unwrap();
        let mut xz = Vec::new();
        lzma_rs::xz_compress(&mut &b"OVERLAY"[..], &mut xz).unwrap();
        fs_err::write(m.join("kernel/a/overlay.ko.xz"), xz).unwrap();
        (dir, m)
    }

    #[test]
    fn archive_has_init_busybox_and_ordered_modules() {
        let (_dir, m) = fake_tree();
        let (out, order) = write_initramfs(
            Vec::new(),
            b"BUSYBOX",
            &m,
            "9.9.9",
            &["virtio_blk", "overlay", "ext4"],
        )
        .unwrap();
        assert_eq!(order, ["virtio", "virtio_blk", "overlay"]);
        let entries = parse(&out);
        let get = |n: &str| {
            entries
                .iter()
                .find(|e| e.name == n)
                .unwrap_or_else(|| panic!("missing {n}"))
        };
        assert_eq!(get("init").data, INIT_SCRIPT.as_bytes());
        assert_eq!(get("init").mode & 0o777, 0o755);
        assert_eq!(get("bin/busybox").data, b"BUSYBOX");
        assert_eq!(get("bin/switch_root").data, b"busybox");
        assert_eq!(get("dev/console").rdev, (5, 1));
        assert_eq!(get("etc/banger/kernel-version").data, b"9.9.9\n");
        assert_eq!(
            String::from_utf8(get("etc/banger/modules").data.clone()).unwrap(),
            "kernel/a/virtio.ko\nkernel/a/virtio_blk.ko\nkernel/a/overlay.ko\n"
        );
        // Compressed module stored decompressed under the plain .ko name.
        assert_eq!(
            get("lib/modules/9.9.9/kernel/a/overlay.ko").data,
            b"OVERLAY"
        );
        // Parents before children.
        let pos = |n: &str| entries.iter().position(|e| e.name == n).unwrap();
        assert!(
            pos("lib") < pos("lib/modules")
                && pos("lib/modules/9.9.9/kernel/a") < pos("lib/modules/9.9.9/kernel/a/virtio.ko")
        );
    }

    #[test]
    fn empty_module_list_needs_no_modules_tree() {
        let (out, order) = write_initramfs(
            Vec::new(),
            b"BB",
            Path::new("/nonexistent"),
            "5.10.204",
            &[],
        )
        .unwrap();
        assert!(order.is_empty());
        let entries = parse(&out);
        let modules = entries
            .iter()
            .find(|e| e.name == "etc/banger/modules")
            .unwrap();
        assert!(modules.data.is_empty());
    }

    #[test]
    fn missing_module_fails_with_name() {
        let (_dir, m) = fake_tree();
        let err = write_initramfs(Vec::new(), b"", &m, "9.9.9", &["vsock"]).unwrap_err();
        assert!(err.to_string().contains("vsock"), "{err}");
    }

    #[test]
    fn dynamic_busybox_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("busybox");
        fs_err::write(&p, elf::tests::tiny_elf(".text", b"", true)).unwrap();
        let err = read_static_busybox(&p).unwrap_err();
        assert!(
            matches!(err, InitramfsError::BusyboxNotStatic { .. }),
            "{err}"
        );
        fs_err::write(&p, elf::tests::tiny_elf(".text", b"", false)).unwrap();
        read_static_busybox(&p).unwrap();
        // The host's busybox-static must pass.
        if Path::new(DEFAULT_BUSYBOX).exists() {
            read_static_busybox(Path::new(DEFAULT_BUSYBOX)).unwrap();
        } else {
            banger_testkit::skip_or_fail(
                "busybox-static not installed; the host's busybox is unchecked",
            );
        }
    }

    #[test]
    fn init_script_parses_with_busybox_sh() {
        if !Path::new(DEFAULT_BUSYBOX).exists() {
            banger_testkit::skip_or_fail("busybox-static not installed");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("init");
        fs_err::write(&script, INIT_SCRIPT).unwrap();
        let out = std::process::Command::new(DEFAULT_BUSYBOX)
            .args(["sh", "-n"])
            .arg(&script)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn init_script_is_busybox_sh_and_never_panics_the_kernel() {
        assert!(INIT_SCRIPT.starts_with("#!/bin/sh\n"));
        assert!(INIT_SCRIPT.contains("poweroff -f"));
        assert!(INIT_SCRIPT.contains("exec switch_root /newroot"));
        for applet in BUSYBOX_APPLETS {
            assert!(
                INIT_SCRIPT.contains(applet),
                "applet {applet} listed but unused"
            );
        }
    }
}
