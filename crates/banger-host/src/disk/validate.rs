//! Checks that a file is a plain ext4 image before a VMM is given it.
//!
//! Disk paths reach the VMM as raw block devices. A symlink to a device, a
//! FIFO (which would hang the reader), a qcow2 file (whose header can name a
//! backing file anywhere on the host) or random bytes must be refused with
//! an error that says exactly what is wrong with which file. The checks are
//! done on one open descriptor (`O_NONBLOCK`, so opening a FIFO cannot
//! block), so the file checked is the file read.

use fs_err::os::unix::fs::OpenOptionsExt;
use fs_err::{File, OpenOptions};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// Smallest plausible image: the superblock ends at 2048 bytes.
const MIN_IMAGE_BYTES: u64 = 2048;
/// Largest image banger accepts (16 TiB): anything larger is a mistake.
pub const MAX_IMAGE_BYTES: u64 = 16 << 40;
/// ext2/3/4 superblock magic, at byte 1080 (superblock 1024 + 0x38).
const EXT4_MAGIC: u16 = 0xEF53;
/// The first four bytes of a qcow/qcow2 image.
const QCOW_MAGIC: [u8; 4] = *b"QFI\xfb";

/// Why a file is not an acceptable ext4 image. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum ValidateError {
    /// No such file.
    #[error("{path}: no such file")]
    Missing {
        /// The image path.
        path: PathBuf,
    },
    /// Opening or reading it failed for another reason.
    #[error("{path}: cannot {op}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The image path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A directory, device, FIFO or socket (symlinks are followed first).
    #[error("{path}: is a {kind}, not a regular file")]
    NotRegular {
        /// The image path.
        path: PathBuf,
        /// `directory`, `character device`, `FIFO`, ...
        kind: &'static str,
    },
    /// Zero bytes long.
    #[error("{path}: is empty")]
    Empty {
        /// The image path.
        path: PathBuf,
    },
    /// Too short to hold an ext4 superblock, or absurdly large.
    #[error(
        "{path}: size {size} bytes is outside the sane range {MIN_IMAGE_BYTES}..={MAX_IMAGE_BYTES}"
    )]
    BadSize {
        /// The image path.
        path: PathBuf,
        /// Its size.
        size: u64,
    },
    /// A qcow/qcow2 image (possibly with a backing file).
    #[error("{path}: is a qcow image{}, not a raw ext4 image", backing_file.as_ref().map(|b| format!(" with backing file {b:?}")).unwrap_or_default())]
    Qcow {
        /// The image path.
        path: PathBuf,
        /// The backing file its header names, if any.
        backing_file: Option<String>,
    },
    /// No ext4 superblock magic.
    #[error(
        "{path}: not an ext4 image (no 0xEF53 superblock magic at byte 1080; found {found:#06x})"
    )]
    NotExt4 {
        /// The image path.
        path: PathBuf,
        /// What was at that offset.
        found: u16,
    },
    /// The magic is there but the superblock makes no sense.
    #[error("{path}: corrupt ext4 superblock: {reason}")]
    BadSuperblock {
        /// The image path.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The filesystem claims more blocks than the file holds.
    #[error(
        "{path}: truncated: the filesystem needs {fs_bytes} bytes but the file has {file_bytes}"
    )]
    Truncated {
        /// The image path.
        path: PathBuf,
        /// Size according to the superblock.
        fs_bytes: u64,
        /// Size of the file.
        file_bytes: u64,
    },
}

/// What a valid image looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ext4Info {
    /// File size in bytes.
    pub file_bytes: u64,
    /// Filesystem block size.
    pub block_size: u64,
    /// Filesystem size in blocks.
    pub blocks: u64,
}

impl Ext4Info {
    /// Filesystem size in bytes.
    pub fn fs_bytes(&self) -> u64 {
        self.block_size * self.blocks
    }
}

/// Checks `path` is a regular (possibly symlinked) file holding an ext4
/// filesystem that fits in it, and not a qcow image.
pub fn validate_ext4_image(path: &Path) -> Result<Ext4Info, ValidateError> {
    let io = |op: &'static str| {
        move |source: io::Error| ValidateError::Io {
            op,
            path: path.to_owned(),
            source,
        }
    };
    // O_NONBLOCK: opening a FIFO with no writer must not hang us; fstat on
    // the descriptor then tells us what we really opened.
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
    {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            return Err(ValidateError::Missing {
                path: path.to_owned(),
            });
        }
        Err(error) => return Err(io("open")(error)),
    };
    validate_ext4_file(path, &file)
}

/// The checks of [`validate_ext4_image`] on a file already open (`path`
/// names it in errors): `fstat` says a regular file, and its content is a
/// raw ext4 image that fits in it. Nothing here can block on a FIFO.
pub fn validate_ext4_file(path: &Path, file: &File) -> Result<Ext4Info, ValidateError> {
    let io = |op: &'static str| {
        move |source: io::Error| ValidateError::Io {
            op,
            path: path.to_owned(),
            source,
        }
    };
    let metadata = file.metadata().map_err(io("stat"))?;
    let file_type = metadata.file_type();
    if !file_type.is_file() {
        let kind = banger_config::paths::file_kind(&file_type);
        return Err(ValidateError::NotRegular {
            path: path.to_owned(),
            kind,
        });
    }
    let size = metadata.len();
    if size == 0 {
        return Err(ValidateError::Empty {
            path: path.to_owned(),
        });
    }
    let mut head = Vec::with_capacity(2048);
    file.take(2048).read_to_end(&mut head).map_err(io("read"))?;
    if head.starts_with(&QCOW_MAGIC) {
        return Err(ValidateError::Qcow {
            path: path.to_owned(),
            backing_file: qcow_backing_file(file, &head),
        });
    }
    if !(MIN_IMAGE_BYTES..=MAX_IMAGE_BYTES).contains(&size) || head.len() < 2048 {
        return Err(ValidateError::BadSize {
            path: path.to_owned(),
            size,
        });
    }
    parse_superblock(path, &head[1024..2048], size)
}

fn le16(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

fn le32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// Reads the fields of the 1024-byte ext4 superblock banger relies on.
fn parse_superblock(path: &Path, sb: &[u8], file_bytes: u64) -> Result<Ext4Info, ValidateError> {
    let bad = |reason: String| ValidateError::BadSuperblock {
        path: path.to_owned(),
        reason,
    };
    let magic = le16(sb, 0x38);
    if magic != EXT4_MAGIC {
        return Err(ValidateError::NotExt4 {
            path: path.to_owned(),
            found: magic,
        });
    }
    let log_block_size = le32(sb, 0x18);
    // 1 KiB .. 64 KiB are the block sizes ext4 supports.
    if log_block_size > 6 {
        return Err(bad(format!(
            "block size exponent {log_block_size} is out of range"
        )));
    }
    let block_size = 1024u64 << log_block_size;
    const INCOMPAT_64BIT: u32 = 0x80;
    let incompat = le32(sb, 0x60);
    let mut blocks = u64::from(le32(sb, 0x04));
    if incompat & INCOMPAT_64BIT != 0 {
        blocks |= u64::from(le32(sb, 0x150)) << 32;
    }
    if blocks == 0 || le32(sb, 0x00) == 0 {
        return Err(bad("zero blocks or zero inodes".to_owned()));
    }
    let fs_bytes = blocks
        .checked_mul(block_size)
        .ok_or_else(|| bad(format!("{blocks} blocks of {block_size} bytes overflow")))?;
    if fs_bytes > file_bytes {
        return Err(ValidateError::Truncated {
            path: path.to_owned(),
            fs_bytes,
            file_bytes,
        });
    }
    Ok(Ext4Info {
        file_bytes,
        block_size,
        blocks,
    })
}

/// The backing file name in a qcow2 header, if any (for the error message).
fn qcow_backing_file(file: &File, head: &[u8]) -> Option<String> {
    use fs_err::os::unix::fs::FileExt;
    let offset = u64::from_be_bytes(head.get(8..16)?.try_into().ok()?);
    let length = u32::from_be_bytes(head.get(16..20)?.try_into().ok()?);
    if offset == 0 || length == 0 {
        return None;
    }
    // QEMU caps backing file names at 1023 bytes.
    let mut name = vec![0u8; usize::try_from(length.min(1023)).ok()?];
    file.read_exact_at(&mut name, offset).ok()?;
    Some(String::from_utf8_lossy(&name).into_owned())
}
