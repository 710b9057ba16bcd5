//! banger's boot chain, independent of the VMM (Firecracker or QEMU) and of the
//! guest image's distribution.
//!
//! A banger VM boots a kernel plus two concatenated initrd archives: the banger
//! initramfs (busybox, `/init`, a few modules; one per kernel, cached) and a tiny
//! per-VM config archive. `/init` assembles `/` as overlayfs(base image on `vda`,
//! per-VM upper disk `vdb`), mounts the work disk `vdc` at `/root` and the kernel's
//! modules disk `vdd` at `/lib/modules/<version>`, applies the config and
//! `switch_root`s into the image's own init. See `docs/boot-chain.md`.
//!
//! Modules:
//! - [`artifacts`]: per-kernel initramfs/modules disk/vmlinux, cached (start here).
//! - [`kernel`]: download and unpack Debian's cloud kernel into the cache.
//! - [`vmlinux`]: bzImage -> ELF vmlinux (for Firecracker).
//! - [`modules`]: module dependency resolution and decompression.
//! - [`initramfs`]: build the gzip'd newc initramfs.
//! - [`guest_config`]: per-VM config archive and the combined initrd.
//! - [`modules_disk`]: pack a modules tree into a read-only ext4 image.
//! - [`catalog`]: the kernel catalog file (`assets/kernel-catalog.toml`).
//! - [`cpio`]: the newc archive writer used by both archive builders.
//! - [`download`]: checksum-verified, atomic downloads for `url` catalog entries.
//! - [`image_build`]: build banger's default Debian image with mmdebstrap.
//! - [`provision`]: the pinned agent tools a provisioned image carries.

// Tests may unwrap: a panic with the value is the clearest failure report.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod artifacts;
pub mod auth_files;
pub mod catalog;
pub mod cpio;
pub mod download;
mod elf;
pub mod guest_config;
pub mod image_build;
pub mod initramfs;
pub mod initrd_base;
pub mod kernel;
pub mod modules;
pub mod modules_disk;
pub mod provision;
pub mod vmlinux;

use std::path::PathBuf;

pub use elf::ElfError;

/// banger's cache directory: `$XDG_CACHE_HOME/banger`, else `$HOME/.cache/banger`.
/// None when neither variable is set to an absolute path.
pub fn default_cache_dir() -> Option<PathBuf> {
    let abs = |v: std::ffi::OsString| {
        let p = PathBuf::from(v);
        p.is_absolute().then_some(p)
    };
    if let Some(xdg) = std::env::var_os("XDG_CACHE_HOME").and_then(abs) {
        return Some(xdg.join("banger"));
    }
    std::env::var_os("HOME")
        .and_then(abs)
        .map(|h| h.join(".cache").join("banger"))
}
