//! Per-kernel boot artifacts, built once and cached: the entry point the daemon
//! uses to turn a [`Kernel`] into everything a VM needs besides its own disks.
//!
//! For one kernel this produces, under `<cache>/boot/<kernel version>/`:
//! - `initramfs-<key>.img`: the banger initramfs; `<key>` is a stable hash of
//!   everything that goes into it (the `/init` script, the module list, the
//!   busybox binary, this crate's version), so editing `/init` or upgrading
//!   busybox yields a new file instead of a stale cache hit;
//! - `modules.ext4`: the modules disk;
//! - `vmlinux` (only on request, for Firecracker): the ELF kernel.
//!
//! Each file is written to a temporary name and renamed, so concurrent or
//! interrupted builds never expose a partial artifact.

use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::initramfs::{self, BOOT_MODULES, INIT_SCRIPT, InitramfsError};
use crate::kernel::Kernel;
use crate::modules_disk::{self, ModulesDiskError};
use crate::vmlinux::{self, VmlinuxError};

/// Kernel command line the boot chain expects (see docs/boot-chain.md);
/// VMMs append their own parameters (e.g. `reboot=k` for Firecracker).
pub const DEFAULT_CMDLINE: &str = "console=ttyS0 panic=-1 net.ifnames=0";

/// Why boot artifacts could not be prepared.
#[derive(Debug, Error)]
pub enum ArtifactsError {
    /// Creating the cache directory failed.
    #[error("{path}")]
    Io {
        /// Directory that failed.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// Building the initramfs failed.
    #[error(transparent)]
    Initramfs(#[from] InitramfsError),
    /// Building the modules disk failed.
    #[error(transparent)]
    ModulesDisk(#[from] ModulesDiskError),
    /// Extracting the vmlinux failed.
    #[error(transparent)]
    Vmlinux(#[from] VmlinuxError),
}

/// Paths of a kernel's shared boot artifacts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootArtifacts {
    /// The kernel these belong to.
    pub kernel: Kernel,
    /// Compressed bzImage (QEMU's `-kernel`).
    pub vmlinuz: PathBuf,
    /// ELF vmlinux, when requested (Firecracker's `kernel_image_path`).
    pub vmlinux: Option<PathBuf>,
    /// The banger initramfs; combine it with a VM's config using
    /// [`crate::guest_config::write_vm_initrd`].
    pub initramfs: PathBuf,
    /// The modules disk, attached read-only as the fourth disk (`vdd`).
    pub modules_disk: PathBuf,
}

/// 64-bit FNV-1a: stable across Rust releases (unlike `DefaultHasher`), which
/// matters because the value names files in a long-lived cache.
fn fnv1a(data: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in data {
        for &b in part.iter().chain(&[0xff]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// Builds (or reuses from `<cache_dir>/boot/<version>/`) the initramfs and
/// modules disk for `kernel`, using the static busybox at `busybox`; also the
/// ELF vmlinux when `want_vmlinux` is set.
pub fn prepare_boot_artifacts(
    cache_dir: &Path,
    kernel: &Kernel,
    busybox: &Path,
    want_vmlinux: bool,
) -> Result<BootArtifacts, ArtifactsError> {
    let dir = cache_dir.join("boot").join(&kernel.version);
    fs_err::create_dir_all(&dir).map_err(|source| ArtifactsError::Io {
        path: dir.clone(),
        source,
    })?;

    let busybox_bytes = initramfs::read_static_busybox(busybox)?;
    let modules = BOOT_MODULES.join(",");
    let key = fnv1a(&[
        INIT_SCRIPT.as_bytes(),
        modules.as_bytes(),
        &busybox_bytes,
        env!("CARGO_PKG_VERSION").as_bytes(),
        kernel.package.as_bytes(),
    ]);
    let initramfs_path = dir.join(format!("initramfs-{key:016x}.img"));
    // The package's own tree: links out of it (`build`, `source` to header
    // directories) are dropped before anything reads or packs it.
    modules_disk::remove_escaping_symlinks(&kernel.modules_dir)?;
    if !initramfs_path.exists() {
        initramfs::build_initramfs(
            busybox,
            &kernel.modules_dir,
            &kernel.version,
            &initramfs_path,
        )?;
    }

    let modules_disk = dir.join("modules.ext4");
    if !modules_disk.exists() {
        modules_disk::build_modules_disk(&kernel.modules_dir, &modules_disk)?;
    }

    let vmlinux = if want_vmlinux {
        let path = dir.join("vmlinux");
        if !path.exists() {
            vmlinux::extract_vmlinux_file(&kernel.vmlinuz, &path)?;
        }
        Some(path)
    } else {
        None
    };

    Ok(BootArtifacts {
        kernel: kernel.clone(),
        vmlinuz: kernel.vmlinuz.clone(),
        vmlinux,
        initramfs: initramfs_path,
        modules_disk,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_is_stable_and_separates_parts() {
        // Fixed value: changing the hash function would orphan existing caches.
        assert_eq!(fnv1a(&[b"a"]), 0x089b_c907_b544_c769);
        assert_ne!(fnv1a(&[b"ab", b"c"]), fnv1a(&[b"a", b"bc"]));
        assert_eq!(fnv1a(&[]), 0xcbf2_9ce4_8422_2325);
    }
}
