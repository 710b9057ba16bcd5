//! Applying one layer (a tar stream, gzip-, zstd- or not compressed) to the
//! image [`Tree`]: whiteouts, hardlinks, symlinks, devices, FIFOs, owners,
//! modes and xattrs as the headers say, within the limits.

use std::io::{BufRead, BufReader, Read};

use crate::digest::{LimitReader, limit_of};
use crate::tree::{Kind, Meta, Tree, TreeError, normalize};

/// Prefix of whiteout names.
const WHITEOUT: &[u8] = b".wh.";
/// Name of the opaque-directory marker.
const OPAQUE: &[u8] = b".wh..wh..opq";
/// Longest path or link target accepted (Linux's `PATH_MAX`).
const MAX_PATH_BYTES: usize = 4096;

/// Limits a layer must stay within.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerLimits {
    /// Uncompressed bytes of one layer's tar stream.
    pub max_layer_bytes: u64,
    /// Bytes of regular files in the whole image.
    pub max_image_bytes: u64,
    /// Inodes in the whole image.
    pub max_inodes: u64,
}

/// Why a layer could not be applied; each names the layer.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// Reading or decompressing the layer failed.
    #[error("layer {layer}: cannot read the tar stream")]
    Read {
        /// The layer.
        layer: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The uncompressed layer is larger than allowed.
    #[error(
        "layer {layer} is larger than {limit} bytes uncompressed (the max layer size); raise it with --max-layer-size if the image is trusted"
    )]
    LayerTooLarge {
        /// The layer.
        layer: String,
        /// The limit.
        limit: u64,
    },
    /// The image's files are larger than allowed.
    #[error(
        "layer {layer}: the image's files exceed {limit} bytes (the max image size); raise it with --max-image-size if the image is trusted"
    )]
    ImageTooLarge {
        /// The layer.
        layer: String,
        /// The limit.
        limit: u64,
    },
    /// The image has too many inodes.
    #[error("layer {layer}: the image has more than {limit} files")]
    TooManyInodes {
        /// The layer.
        layer: String,
        /// The limit.
        limit: u64,
    },
    /// A path or link target is longer than `PATH_MAX`.
    #[error("layer {layer}: an entry's path or link target is longer than {MAX_PATH_BYTES} bytes")]
    PathTooLong {
        /// The layer.
        layer: String,
    },
    /// An entry could not be applied to the tree.
    #[error("layer {layer}")]
    Tree {
        /// The layer.
        layer: String,
        /// The cause.
        #[source]
        source: TreeError,
    },
    /// Writing a file's content to the content directory failed.
    #[error("layer {layer}: cannot write {path}")]
    Write {
        /// The layer.
        layer: String,
        /// The content file.
        path: std::path::PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// What one layer did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LayerStats {
    /// Entries read.
    pub entries: u64,
    /// Uncompressed bytes read.
    pub bytes: u64,
}

/// A decompressing reader for `reader`, chosen by its magic bytes.
pub fn decompress<'a>(reader: impl Read + 'a) -> std::io::Result<Box<dyn Read + 'a>> {
    let mut reader = BufReader::with_capacity(256 * 1024, reader);
    let head = reader.fill_buf()?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(flate2::read::MultiGzDecoder::new(reader)))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        let decoder = ruzstd::decoding::StreamingDecoder::new(reader)
            .map_err(|error| std::io::Error::new(std::io::ErrorKind::InvalidData, error))?;
        Ok(Box::new(decoder))
    } else {
        Ok(Box::new(reader))
    }
}

/// Applies layer number `index` (named `name` in errors), read from the
/// (possibly compressed) `reader`, to `tree`.
pub fn apply_layer(
    tree: &mut Tree,
    reader: impl Read,
    index: usize,
    name: &str,
    limits: &LayerLimits,
) -> Result<LayerStats, LayerError> {
    let layer = || name.to_owned();
    let read_error = |source: std::io::Error| match limit_of(&source) {
        Some(limit) => LayerError::LayerTooLarge {
            layer: layer(),
            limit,
        },
        None => LayerError::Read {
            layer: layer(),
            source,
        },
    };
    let decompressed = decompress(reader).map_err(read_error)?;
    let mut counted = LimitReader::new(decompressed, limits.max_layer_bytes);
    let mut stats = LayerStats::default();
    {
        let mut archive = tar::Archive::new(&mut counted);
        let entries = archive.entries().map_err(read_error)?;
        for entry in entries {
            let entry = entry.map_err(read_error)?;
            stats.entries += 1;
            apply_entry(tree, entry, index, name, limits)?;
        }
    }
    // Whatever follows the tar's end (padding) is read too, within the limit.
    std::io::copy(&mut counted, &mut std::io::sink()).map_err(read_error)?;
    stats.bytes = counted.count();
    Ok(stats)
}

fn pax_number(entry: &mut tar::Entry<'_, impl Read>, key: &str) -> Option<u64> {
    let extensions = entry.pax_extensions().ok()??;
    extensions
        .flatten()
        .find(|extension| extension.key() == Ok(key))
        .and_then(|extension| extension.value().ok()?.trim().parse().ok())
}

fn meta_of(entry: &mut tar::Entry<'_, impl Read>) -> Meta {
    let header = entry.header();
    let uid = header.uid().unwrap_or(0);
    let gid = header.gid().unwrap_or(0);
    let mode = header.mode().unwrap_or(0o644) & 0o7777;
    let mtime = header.mtime().unwrap_or(0);
    let uid = pax_number(entry, "uid").unwrap_or(uid);
    let gid = pax_number(entry, "gid").unwrap_or(gid);
    let mut xattrs = std::collections::BTreeMap::new();
    if let Ok(Some(extensions)) = entry.pax_extensions() {
        for extension in extensions.flatten() {
            if let Ok(key) = extension.key()
                && let Some(name) = key.strip_prefix("SCHILY.xattr.")
            {
                xattrs.insert(name.to_owned(), extension.value_bytes().to_vec());
            }
        }
    }
    Meta {
        uid: u32::try_from(uid).unwrap_or(u32::MAX),
        gid: u32::try_from(gid).unwrap_or(u32::MAX),
        mode,
        mtime,
        xattrs,
    }
}

fn apply_entry(
    tree: &mut Tree,
    mut entry: tar::Entry<'_, impl Read>,
    index: usize,
    name: &str,
    limits: &LayerLimits,
) -> Result<(), LayerError> {
    let layer = || name.to_owned();
    let tree_error = |source| LayerError::Tree {
        layer: layer(),
        source,
    };
    let path = entry.path_bytes().into_owned();
    if path.len() > MAX_PATH_BYTES {
        return Err(LayerError::PathTooLong { layer: layer() });
    }
    // Whiteouts are recognised on the cleaned path, as containerd does
    // (`filepath.Clean` first): `.wh.a/x/..` is the whiteout of `a`, not a
    // file named `.wh.a`.
    let clean = normalize(&path);
    let (parent, base) = match clean.split_last() {
        Some((base, parent)) => (parent.join(&b'/'), base.as_slice()),
        None => (Vec::new(), &b""[..]),
    };
    let parent = parent.as_slice();
    if base == OPAQUE {
        return tree.opaque(parent, index).map_err(tree_error);
    }
    if let Some(hidden) = base.strip_prefix(WHITEOUT) {
        return tree.whiteout(parent, hidden, index).map_err(tree_error);
    }
    let entry_type = entry.header().entry_type();
    let link_name = entry
        .link_name_bytes()
        .map(|name| name.into_owned())
        .unwrap_or_default();
    if link_name.len() > MAX_PATH_BYTES {
        return Err(LayerError::PathTooLong { layer: layer() });
    }
    let meta = meta_of(&mut entry);
    let device = |entry: &tar::Entry<'_, _>| {
        let header = entry.header();
        (
            header.device_major().ok().flatten().unwrap_or(0),
            header.device_minor().ok().flatten().unwrap_or(0),
        )
    };
    let kind = match entry_type {
        tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
            Kind::File { size: entry.size() }
        }
        tar::EntryType::Directory => Kind::Dir(Default::default()),
        tar::EntryType::Symlink => Kind::Symlink(link_name.clone()),
        tar::EntryType::Char => {
            let (major, minor) = device(&entry);
            Kind::Char { major, minor }
        }
        tar::EntryType::Block => {
            let (major, minor) = device(&entry);
            Kind::Block { major, minor }
        }
        tar::EntryType::Fifo => Kind::Fifo,
        tar::EntryType::Link => {
            return tree.hardlink(&path, &link_name, index).map_err(tree_error);
        }
        // PAX globals, GNU volume labels and the like carry no file.
        _ => return Ok(()),
    };
    let is_file = matches!(kind, Kind::File { .. });
    let inode = tree.allocate(kind, meta);
    if tree.live_bytes() > limits.max_image_bytes {
        let _ = tree.discard(inode);
        return Err(LayerError::ImageTooLarge {
            layer: layer(),
            limit: limits.max_image_bytes,
        });
    }
    if tree.live_inodes() > limits.max_inodes {
        let _ = tree.discard(inode);
        return Err(LayerError::TooManyInodes {
            layer: layer(),
            limit: limits.max_inodes,
        });
    }
    if is_file {
        let content = tree.content_path(inode);
        let written = fs_err::File::create_new(&content)
            .and_then(|mut file| std::io::copy(&mut entry, &mut file));
        if let Err(source) = written {
            let _ = tree.discard(inode);
            return Err(match limit_of(&source) {
                Some(limit) => LayerError::LayerTooLarge {
                    layer: layer(),
                    limit,
                },
                None => LayerError::Write {
                    layer: layer(),
                    path: content,
                    source,
                },
            });
        }
    }
    if let Err(source) = tree.add(&path, inode, index) {
        let _ = tree.discard(inode);
        return Err(tree_error(source));
    }
    Ok(())
}
