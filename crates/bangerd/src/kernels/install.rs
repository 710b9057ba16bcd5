//! Assembling a kernel's directory: kernel files, modules tree, modules disk
//! and initramfs, built in a `.partial-*` directory and renamed into place.

use std::path::{Path, PathBuf};

use banger_api::KernelName;
use banger_image::catalog::{CatalogEntry, KernelSource};
use banger_image::initramfs::BOOT_MODULES;

use crate::progress::ProgressSink;
use crate::store::KernelRow;

/// Why a kernel could not be installed. Nothing is left behind on error.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// A filesystem operation failed.
    #[error("cannot {action} {path}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The kernel file is neither a bzImage nor an ELF image.
    #[error("{path} is not a kernel: expected an x86 bzImage or an ELF vmlinux")]
    NotAKernel {
        /// The file.
        path: PathBuf,
    },
    /// The path is not what it must be.
    #[error("{path} {problem}")]
    BadInput {
        /// The path.
        path: PathBuf,
        /// What is wrong.
        problem: &'static str,
    },
    /// The kernel's version could not be determined.
    #[error(
        "cannot tell the version of kernel {path}; pass its modules tree with --modules (lib/modules/<version>)"
    )]
    UnknownVersion {
        /// The file.
        path: PathBuf,
    },
    /// bzImage and modules tree disagree.
    #[error(
        "kernel {path} is version {kernel_version} but the modules tree is for {modules_version}"
    )]
    VersionMismatch {
        /// The kernel file.
        path: PathBuf,
        /// From the bzImage header.
        kernel_version: String,
        /// From the modules directory name.
        modules_version: String,
    },
    /// busybox-static is missing.
    #[error("busybox was not found; install busybox-static (sudo apt-get install busybox-static)")]
    NoBusybox,
    /// Fetching the Debian kernel package failed.
    #[error("cannot fetch the kernel package")]
    Fetch(#[source] banger_image::kernel::KernelError),
    /// Downloading a URL kernel failed.
    #[error(transparent)]
    Download(#[from] banger_image::download::DownloadError),
    /// Extracting the ELF vmlinux failed.
    #[error("cannot extract vmlinux")]
    Vmlinux(#[source] banger_image::vmlinux::VmlinuxError),
    /// Building the initramfs failed.
    #[error("cannot build the initramfs")]
    Initramfs(#[source] banger_image::initramfs::InitramfsError),
    /// Building the modules disk failed.
    #[error("cannot build the modules disk")]
    ModulesDisk(#[source] banger_image::modules_disk::ModulesDiskError),
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> InstallError {
    let path = path.to_owned();
    move |source| InstallError::Io {
        action,
        path,
        source,
    }
}

/// Installs a catalog entry: fetch (cached), then [`install_files`].
pub fn install_catalog_entry(
    state_dir: &Path,
    cache_dir: &Path,
    name: &KernelName,
    entry: &CatalogEntry,
    progress: &ProgressSink,
) -> Result<KernelRow, InstallError> {
    let source_label = format!("catalog:{}", entry.name);
    match &entry.source {
        KernelSource::Apt { package } => {
            progress.stage(
                "download",
                format!("fetching {package} with apt-get download (about 60 MB)"),
            );
            let kernel = banger_image::kernel::fetch_debian_kernel(cache_dir, package)
                .map_err(InstallError::Fetch)?;
            install_files(
                state_dir,
                name,
                &kernel.vmlinuz,
                Some(&kernel.modules_dir),
                &source_label,
                progress,
            )
        }
        KernelSource::Url {
            url,
            sha256,
            version,
            ..
        } => {
            let downloads = cache_dir.join("downloads");
            let file = downloads.join(format!(
                "{}-{}",
                entry.name,
                &sha256[..16.min(sha256.len())]
            ));
            if !file.exists() {
                progress.stage("download", format!("downloading {url}"));
                banger_image::download::download_verified(
                    url,
                    sha256,
                    &file,
                    &mut |done, total| {
                        progress.fraction("download", format!("downloading {url}"), done, total);
                    },
                )?;
            }
            let row = install_files(state_dir, name, &file, None, &source_label, progress)?;
            if row.version != *version && row.version != "unknown" {
                tracing::warn!(kernel = %name, catalog = %version, found = %row.version, "catalog version differs from the kernel's");
            }
            Ok(row)
        }
    }
}

/// What kind of kernel file this is.
enum KernelFile {
    BzImage { version: Option<String> },
    Elf,
}

fn inspect_kernel(path: &Path) -> Result<KernelFile, InstallError> {
    let metadata = fs_err::metadata(path).map_err(io("read", path))?;
    if !metadata.is_file() {
        return Err(InstallError::BadInput {
            path: path.to_owned(),
            problem: "is not a regular file",
        });
    }
    let bytes = fs_err::read(path).map_err(io("read", path))?;
    if bytes.starts_with(b"\x7fELF") {
        return Ok(KernelFile::Elf);
    }
    if bytes.get(0x202..0x206) == Some(b"HdrS") {
        return Ok(KernelFile::BzImage {
            version: bzimage_version(&bytes),
        });
    }
    Err(InstallError::NotAKernel {
        path: path.to_owned(),
    })
}

/// The release string from a bzImage's setup header (`kernel_version` field),
/// e.g. `6.1.0-56-cloud-amd64` from "6.1.0-56-cloud-amd64 (debian-kernel@...) #1 SMP ...".
fn bzimage_version(bytes: &[u8]) -> Option<String> {
    let pointer = u16::from_le_bytes([*bytes.get(0x20e)?, *bytes.get(0x20f)?]);
    let start = usize::from(pointer) + 0x200;
    let tail = bytes.get(start..start + 256.min(bytes.len().saturating_sub(start)))?;
    let end = tail.iter().position(|byte| *byte == 0 || *byte == b' ')?;
    let version = std::str::from_utf8(&tail[..end]).ok()?;
    (!version.is_empty()).then(|| version.to_owned())
}

/// Builds `<state>/kernels/<name>/` from a kernel file and optional modules
/// tree, replacing an earlier installation of the same name.
pub fn install_files(
    state_dir: &Path,
    name: &KernelName,
    kernel: &Path,
    modules: Option<&Path>,
    source_label: &str,
    progress: &ProgressSink,
) -> Result<KernelRow, InstallError> {
    if !kernel.is_absolute() {
        return Err(InstallError::BadInput {
            path: kernel.to_owned(),
            problem: "must be an absolute path",
        });
    }
    let kind = inspect_kernel(kernel)?;
    let modules_version = match modules {
        Some(dir) => {
            if !dir.is_absolute() {
                return Err(InstallError::BadInput {
                    path: dir.to_owned(),
                    problem: "must be an absolute path",
                });
            }
            if !fs_err::metadata(dir).map_err(io("read", dir))?.is_dir() {
                return Err(InstallError::BadInput {
                    path: dir.to_owned(),
                    problem: "is not a directory",
                });
            }
            let version = dir
                .file_name()
                .and_then(|name| name.to_str())
                .map(str::to_owned);
            Some(version.ok_or(InstallError::BadInput {
                path: dir.to_owned(),
                problem: "has no version name",
            })?)
        }
        None => None,
    };
    let version = match (&kind, modules_version) {
        (
            KernelFile::BzImage {
                version: Some(found),
            },
            Some(from_modules),
        ) if *found != from_modules => {
            return Err(InstallError::VersionMismatch {
                path: kernel.to_owned(),
                kernel_version: found.clone(),
                modules_version: from_modules,
            });
        }
        (_, Some(from_modules)) => from_modules,
        (
            KernelFile::BzImage {
                version: Some(found),
            },
            None,
        ) => found.clone(),
        (KernelFile::BzImage { version: None }, None) => {
            return Err(InstallError::UnknownVersion {
                path: kernel.to_owned(),
            });
        }
        (KernelFile::Elf, None) => "unknown".to_owned(),
    };
    let busybox =
        banger_host::tools::find_program(Path::new("busybox")).ok_or(InstallError::NoBusybox)?;

    let root = super::kernels_dir(state_dir);
    fs_err::create_dir_all(&root).map_err(io("create", &root))?;
    let partial = root.join(format!(".partial-{name}-{}", std::process::id()));
    if partial.exists() {
        remove_dir(&partial)?;
    }
    fs_err::create_dir(&partial).map_err(io("create", &partial))?;
    let built = assemble(
        &partial, &kind, kernel, modules, &version, &busybox, progress,
    );
    // Copied and hard-linked files keep the package's modes (0644).
    let built = built.and_then(|sizes| {
        banger_host::disk::restrict_tree(&partial)
            .map(|()| sizes)
            .map_err(|error| InstallError::Io {
                action: "make owner-only",
                path: error.path,
                source: error.source,
            })
    });
    let sizes = match built {
        Ok(sizes) => sizes,
        Err(error) => {
            let _ = fs_err::remove_dir_all(&partial);
            return Err(error);
        }
    };
    let final_dir = root.join(name.as_str());
    if final_dir.exists() {
        remove_dir(&final_dir)?;
    }
    if let Err(error) = fs_err::rename(&partial, &final_dir) {
        let _ = fs_err::remove_dir_all(&partial);
        return Err(io("rename into", &final_dir)(error));
    }
    progress.stage(
        "install",
        format!(
            "kernel {name} ({version}) installed in {}",
            final_dir.display()
        ),
    );
    let is_bzimage = matches!(kind, KernelFile::BzImage { .. });
    Ok(KernelRow {
        id: 0,
        name: name.clone(),
        version,
        source: source_label.to_owned(),
        bzimage: is_bzimage.then(|| final_dir.join("vmlinuz")),
        vmlinux: Some(final_dir.join("vmlinux")),
        initramfs: final_dir.join("initramfs.img"),
        modules_disk: modules.map(|_| final_dir.join("modules.ext4")),
        size_bytes: sizes,
        created_at: crate::store::unix_now(),
        dir: final_dir,
    })
}

/// Fills `dir`; returns the total bytes written.
fn assemble(
    dir: &Path,
    kind: &KernelFile,
    kernel: &Path,
    modules: Option<&Path>,
    version: &str,
    busybox: &Path,
    progress: &ProgressSink,
) -> Result<u64, InstallError> {
    let vmlinux = dir.join("vmlinux");
    match kind {
        KernelFile::BzImage { .. } => {
            let vmlinuz = dir.join("vmlinuz");
            fs_err::copy(kernel, &vmlinuz).map_err(io("copy the kernel to", &vmlinuz))?;
            progress.stage(
                "vmlinux",
                "extracting the ELF vmlinux (Firecracker boots it)",
            );
            banger_image::vmlinux::extract_vmlinux_file(&vmlinuz, &vmlinux)
                .map_err(InstallError::Vmlinux)?;
        }
        KernelFile::Elf => {
            fs_err::copy(kernel, &vmlinux).map_err(io("copy the kernel to", &vmlinux))?;
        }
    }
    let initramfs = dir.join("initramfs.img");
    match modules {
        Some(modules) => {
            let tree = dir.join("modules").join(version);
            progress.stage("modules", format!("copying the modules tree of {version}"));
            copy_tree(modules, &tree)?;
            progress.stage(
                "modules-disk",
                "packing the modules into a read-only ext4 disk",
            );
            banger_image::modules_disk::build_modules_disk(&tree, &dir.join("modules.ext4"))
                .map_err(InstallError::ModulesDisk)?;
            progress.stage("initramfs", "building the banger initramfs");
            banger_image::initramfs::build_initramfs_with_modules(
                busybox,
                &tree,
                version,
                BOOT_MODULES,
                &initramfs,
            )
            .map_err(InstallError::Initramfs)?;
        }
        None => {
            progress.stage(
                "initramfs",
                "building the banger initramfs (kernel without modules)",
            );
            banger_image::initramfs::build_initramfs_with_modules(
                busybox,
                dir,
                version,
                &[],
                &initramfs,
            )
            .map_err(InstallError::Initramfs)?;
        }
    }
    tree_bytes(dir)
}

/// Copies a directory tree: files (hard-linked when possible, the cache and
/// state usually share a filesystem), directories and symlinks as symlinks.
/// A symlink whose target is outside `from` (absolute, `..` climbing out, or
/// resolving out through other links; `build` and `source` usually are) is
/// dropped with a warning: nothing outside the tree is read into the
/// initramfs or packed into the modules disk.
fn copy_tree(from: &Path, to: &Path) -> Result<(), InstallError> {
    copy_tree_within(from, from, to)
}

fn copy_tree_within(root: &Path, from: &Path, to: &Path) -> Result<(), InstallError> {
    fs_err::create_dir_all(to).map_err(io("create", to))?;
    for entry in fs_err::read_dir(from).map_err(io("read", from))? {
        let entry = entry.map_err(io("read", from))?;
        let source = entry.path();
        let target = to.join(entry.file_name());
        let kind = entry.file_type().map_err(io("read", &source))?;
        if kind.is_dir() {
            copy_tree_within(root, &source, &target)?;
        } else if kind.is_symlink() {
            let link = fs_err::read_link(&source).map_err(io("read", &source))?;
            if banger_image::modules_disk::symlink_escapes(root, &source)
                .map_err(InstallError::ModulesDisk)?
            {
                tracing::warn!(link = %source.display(), target = %link.display(), "dropping a symlink that points outside the modules tree");
                continue;
            }
            fs_err::os::unix::fs::symlink(link, &target).map_err(io("create", &target))?;
        } else if kind.is_file() && fs_err::hard_link(&source, &target).is_err() {
            fs_err::copy(&source, &target).map_err(io("copy", &target))?;
        }
    }
    Ok(())
}

fn tree_bytes(dir: &Path) -> Result<u64, InstallError> {
    let mut total = 0;
    for entry in fs_err::read_dir(dir).map_err(io("read", dir))? {
        let entry = entry.map_err(io("read", dir))?;
        let kind = entry.file_type().map_err(io("read", &entry.path()))?;
        if kind.is_dir() {
            total += tree_bytes(&entry.path())?;
        } else if kind.is_file() {
            total += entry.metadata().map_err(io("read", &entry.path()))?.len();
        }
    }
    Ok(total)
}

/// Removes a directory tree, naming it on failure.
pub fn remove_dir(dir: &Path) -> Result<(), InstallError> {
    match fs_err::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(io("remove", dir)(error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bzimage_version_comes_from_the_setup_header() {
        let mut bytes = vec![0u8; 0x1000];
        bytes[0x202..0x206].copy_from_slice(b"HdrS");
        bytes[0x20e..0x210].copy_from_slice(&0x300u16.to_le_bytes());
        let text = b"6.1.0-56-cloud-amd64 (debian-kernel@lists.debian.org) #1 SMP\0";
        bytes[0x500..0x500 + text.len()].copy_from_slice(text);
        assert_eq!(
            bzimage_version(&bytes).as_deref(),
            Some("6.1.0-56-cloud-amd64")
        );
        bytes[0x20e..0x210].copy_from_slice(&0xffffu16.to_le_bytes());
        assert_eq!(bzimage_version(&bytes), None);
    }

    #[test]
    fn copy_tree_drops_symlinks_that_leave_the_modules_tree() {
        let temp = tempfile::tempdir().expect("tempdir");
        fs_err::write(temp.path().join("secret"), "host secret").expect("secret");
        let from = temp.path().join("modules/9.9.9");
        fs_err::create_dir_all(from.join("kernel")).expect("tree");
        fs_err::write(from.join("kernel/x.ko"), "module").expect("module");
        let link = |target: &str, at: &str| {
            fs_err::os::unix::fs::symlink(target, from.join(at)).expect("symlink");
        };
        link("/usr/src/linux-headers-9.9.9", "build");
        link("../../../secret", "kernel/leak.ko");
        link("x.ko", "kernel/alias.ko");
        let to = temp.path().join("copy");
        copy_tree(&from, &to).expect("copy");
        assert!(fs_err::symlink_metadata(to.join("build")).is_err());
        assert!(fs_err::symlink_metadata(to.join("kernel/leak.ko")).is_err());
        assert_eq!(
            fs_err::read_link(to.join("kernel/alias.ko")).expect("kept link"),
            Path::new("x.ko")
        );
        assert_eq!(
            fs_err::read_to_string(to.join("kernel/x.ko")).expect("module"),
            "module"
        );
    }
}
