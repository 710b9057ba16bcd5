//! Opens the files a VM boots from without ever hanging or following a
//! link, and checks each is still what it was when it was registered.
//!
//! A rootfs, work seed, kernel, initrd or modules disk is checked at import
//! or register, but the file under that path can change afterwards: a FIFO
//! swapped in would hang any reader forever, a symlink could point the VMM
//! at any file or device of the host. So every use opens the path with
//! `O_NOFOLLOW | O_NONBLOCK | O_NOCTTY` (a final symlink fails, a FIFO
//! without a writer opens at once), then `fstat`s the descriptor: the file
//! checked is the file that was opened. Only then is the cheap format
//! check done on that descriptor (ext4 superblock, kernel header).

use std::io::{self, Read};
use std::path::{Path, PathBuf};

use fs_err::os::unix::fs::OpenOptionsExt;
use fs_err::{File, OpenOptions};

use super::validate::{Ext4Info, ValidateError, validate_ext4_file};

/// What a boot file must look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootFileKind {
    /// A raw ext4 image: rootfs, work seed, modules disk.
    Ext4,
    /// A kernel: an ELF vmlinux or an x86 bzImage (`HdrS` setup header),
    /// as kernel import checks.
    Kernel,
    /// Any non-empty regular file (an initrd may be compressed any way).
    NonEmpty,
}

/// Why a boot file cannot be used. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum BootFileError {
    /// No such file.
    #[error("{path}: no such file")]
    Missing {
        /// The file.
        path: PathBuf,
    },
    /// A symlink, directory, device, FIFO or socket.
    #[error("{path}: is a {kind}, not a regular file")]
    NotRegular {
        /// The file.
        path: PathBuf,
        /// `symbolic link`, `FIFO`, `character device`, ...
        kind: &'static str,
    },
    /// Opening, stat-ing or reading it failed for another reason.
    #[error("{path}: cannot {op}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Zero bytes long.
    #[error("{path}: is empty")]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// Neither an ELF image nor a bzImage.
    #[error("{path}: is not a kernel (neither an ELF image nor an x86 bzImage)")]
    NotAKernel {
        /// The file.
        path: PathBuf,
    },
    /// Not a usable ext4 image.
    #[error(transparent)]
    Ext4(#[from] ValidateError),
}

/// Opens `path` for reading as a regular file: `O_NOFOLLOW` (a symlink as
/// the last component is refused), `O_NONBLOCK` (a FIFO cannot hang the
/// open), `O_NOCTTY`; then `fstat` on the descriptor refuses anything but a
/// regular file. Returns the open file and its metadata.
pub fn open_regular(path: &Path) -> Result<(File, std::fs::Metadata), BootFileError> {
    let flags = libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY;
    let file = match OpenOptions::new().read(true).custom_flags(flags).open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            return Err(BootFileError::Missing {
                path: path.to_owned(),
            });
        }
        Err(error) => {
            // O_NOFOLLOW on a symlink fails with ELOOP; lstat (which cannot
            // block) says so plainly.
            if fs_err::symlink_metadata(path).is_ok_and(|meta| meta.file_type().is_symlink()) {
                return Err(BootFileError::NotRegular {
                    path: path.to_owned(),
                    kind: "symbolic link",
                });
            }
            return Err(BootFileError::Io {
                op: "open",
                path: path.to_owned(),
                source: error,
            });
        }
    };
    let metadata = file.metadata().map_err(|source| BootFileError::Io {
        op: "stat",
        path: path.to_owned(),
        source,
    })?;
    let file_type = metadata.file_type();
    if !file_type.is_file() {
        let kind = banger_config::paths::file_kind(&file_type);
        return Err(BootFileError::NotRegular {
            path: path.to_owned(),
            kind,
        });
    }
    Ok((file, metadata))
}

/// Checks `path` is a regular file (not a symlink, FIFO or device) of the
/// expected `kind`, opening it as [`open_regular`] does.
pub fn check_boot_file(path: &Path, kind: BootFileKind) -> Result<(), BootFileError> {
    let (file, metadata) = open_regular(path)?;
    if metadata.len() == 0 {
        return Err(BootFileError::Empty {
            path: path.to_owned(),
        });
    }
    match kind {
        BootFileKind::Ext4 => {
            let _: Ext4Info = validate_ext4_file(path, &file)?;
        }
        BootFileKind::Kernel => {
            let mut head = Vec::with_capacity(0x206);
            (&file)
                .take(0x206)
                .read_to_end(&mut head)
                .map_err(|source| BootFileError::Io {
                    op: "read",
                    path: path.to_owned(),
                    source,
                })?;
            if !head.starts_with(b"\x7fELF") && head.get(0x202..0x206) != Some(b"HdrS") {
                return Err(BootFileError::NotAKernel {
                    path: path.to_owned(),
                });
            }
        }
        BootFileKind::NonEmpty => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn mkfifo(path: &Path) {
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            path,
            rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR,
        )
        .expect("mkfifo");
    }

    /// Runs `check` on another thread and fails if it takes over 5 s.
    fn within_timeout<T: Send + 'static>(check: impl FnOnce() -> T + Send + 'static) -> T {
        let (send, receive) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = send.send(check());
        });
        receive
            .recv_timeout(Duration::from_secs(5))
            .expect("the check hung")
    }

    #[test]
    fn a_regular_file_is_accepted() {
        let temp = tempfile::tempdir().unwrap();
        let path = temp.path().join("initrd.img");
        fs_err::write(&path, b"070701...").unwrap();
        let (_, metadata) = open_regular(&path).unwrap();
        assert_eq!(metadata.len(), 9);
        check_boot_file(&path, BootFileKind::NonEmpty).unwrap();
    }

    #[test]
    fn a_symlink_is_refused_even_to_a_regular_file() {
        let temp = tempfile::tempdir().unwrap();
        let target = temp.path().join("real");
        fs_err::write(&target, b"data").unwrap();
        let link = temp.path().join("link");
        fs_err::os::unix::fs::symlink(&target, &link).unwrap();
        let error = check_boot_file(&link, BootFileKind::NonEmpty).unwrap_err();
        assert!(
            matches!(
                error,
                BootFileError::NotRegular {
                    kind: "symbolic link",
                    ..
                }
            ),
            "{error:?}"
        );
        assert!(
            error
                .to_string()
                .contains("is a symbolic link, not a regular file")
        );
        assert!(error.to_string().contains(&link.display().to_string()));
    }

    #[test]
    fn a_fifo_is_refused_at_once() {
        let temp = tempfile::tempdir().unwrap();
        let fifo = temp.path().join("rootfs.ext4");
        mkfifo(&fifo);
        let path = fifo.clone();
        let error = within_timeout(move || check_boot_file(&path, BootFileKind::Ext4)).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("{}: is a FIFO, not a regular file", fifo.display())
        );
    }

    #[test]
    fn a_directory_and_dev_null_are_refused() {
        let temp = tempfile::tempdir().unwrap();
        let error = check_boot_file(temp.path(), BootFileKind::NonEmpty).unwrap_err();
        assert!(
            matches!(
                error,
                BootFileError::NotRegular {
                    kind: "directory",
                    ..
                }
            ),
            "{error:?}"
        );
        let error =
            within_timeout(|| check_boot_file(Path::new("/dev/null"), BootFileKind::Kernel))
                .unwrap_err();
        assert!(
            matches!(
                error,
                BootFileError::NotRegular {
                    kind: "character device",
                    ..
                }
            ),
            "{error:?}"
        );
    }

    #[test]
    fn missing_empty_and_wrong_format_are_refused() {
        let temp = tempfile::tempdir().unwrap();
        let missing = temp.path().join("missing");
        assert!(matches!(
            check_boot_file(&missing, BootFileKind::Ext4),
            Err(BootFileError::Missing { .. })
        ));
        let empty = temp.path().join("empty");
        fs_err::write(&empty, b"").unwrap();
        assert!(matches!(
            check_boot_file(&empty, BootFileKind::NonEmpty),
            Err(BootFileError::Empty { .. })
        ));
        let junk = temp.path().join("junk");
        fs_err::write(&junk, vec![0u8; 4096]).unwrap();
        assert!(matches!(
            check_boot_file(&junk, BootFileKind::Kernel),
            Err(BootFileError::NotAKernel { .. })
        ));
        assert!(matches!(
            check_boot_file(&junk, BootFileKind::Ext4),
            Err(BootFileError::Ext4(ValidateError::NotExt4 { .. }))
        ));
        let elf = temp.path().join("vmlinux");
        fs_err::write(&elf, b"\x7fELF\x02\x01\x01").unwrap();
        check_boot_file(&elf, BootFileKind::Kernel).unwrap();
        let mut bz = vec![0u8; 0x300];
        bz[0x202..0x206].copy_from_slice(b"HdrS");
        let bzimage = temp.path().join("bzImage");
        fs_err::write(&bzimage, &bz).unwrap();
        check_boot_file(&bzimage, BootFileKind::Kernel).unwrap();
    }

    #[test]
    fn a_real_ext4_image_is_accepted() {
        if std::process::Command::new("mkfs.ext4")
            .arg("-V")
            .output()
            .is_err()
        {
            banger_testkit::skip_or_fail("e2fsprogs not installed");
            return;
        }
        let temp = tempfile::tempdir().unwrap();
        let image = temp.path().join("rootfs.ext4");
        let file = fs_err::File::create(&image).unwrap();
        file.set_len(8 << 20).unwrap();
        drop(file);
        let status = std::process::Command::new("mkfs.ext4")
            .args(["-q", "-F"])
            .arg(&image)
            .status()
            .unwrap();
        assert!(status.success());
        check_boot_file(&image, BootFileKind::Ext4).unwrap();
    }
}
