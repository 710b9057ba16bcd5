//! Images on disk: an OCI image layout (`oci:DIR[:TAG]`) and a `docker
//! save` archive (`docker-archive:PATH`). Both are read in place: layers
//! are streamed from their files (or from their byte range inside the
//! archive) and verified against their digests as they are applied.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::digest::Digest;
use crate::spec::{ConfigBlob, Document, MAX_DOCUMENT_BYTES};

/// Annotation naming a manifest in an OCI layout's index.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Why a local image could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// A file could not be read.
    #[error("cannot read {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A JSON document is not what it should be.
    #[error("{path} is not a valid {what}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What it should be.
        what: &'static str,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// No manifest matches the tag (or there are several and no tag).
    #[error("{path}: {why}; available: {available}")]
    NoManifest {
        /// The layout or archive.
        path: PathBuf,
        /// What is wrong.
        why: String,
        /// Tags or platforms on offer.
        available: String,
    },
    /// A blob's content does not match its digest.
    #[error("{path}: content does not match its digest {expected} (got {actual})")]
    Digest {
        /// The blob.
        path: PathBuf,
        /// Expected.
        expected: Digest,
        /// Actual.
        actual: Digest,
    },
    /// A document is larger than documents are.
    #[error("{path} is larger than {MAX_DOCUMENT_BYTES} bytes")]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// The archive references a file it does not hold.
    #[error("{archive}: {member} is not in the archive")]
    MissingMember {
        /// The archive.
        archive: PathBuf,
        /// The member.
        member: String,
    },
}

/// Where a layer's bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalLayer {
    /// The file holding it.
    pub path: PathBuf,
    /// Offset of the layer in that file.
    pub offset: u64,
    /// Its length.
    pub len: u64,
    /// The digest its bytes must have.
    pub digest: Digest,
}

impl LocalLayer {
    /// A reader of exactly the layer's bytes.
    pub fn open(&self) -> Result<impl Read + use<>, LocalError> {
        let mut file = fs_err::File::open(&self.path).map_err(io(&self.path))?;
        file.seek(SeekFrom::Start(self.offset))
            .map_err(io(&self.path))?;
        Ok(file.take(self.len))
    }
}

/// A local image, resolved to its config and layers.
#[derive(Debug, Clone)]
pub struct LocalImage {
    /// The manifest's digest (layouts; archives have none).
    pub manifest_digest: Option<Digest>,
    /// The config's digest.
    pub config_digest: Digest,
    /// The config.
    pub config: ConfigBlob,
    /// The layers, bottom first.
    pub layers: Vec<LocalLayer>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LocalError {
    let path = path.to_owned();
    move |source| LocalError::Io { path, source }
}

/// Reads a whole document, refusing anything past [`MAX_DOCUMENT_BYTES`].
fn read_limited(mut reader: impl Read, path: &Path) -> Result<Vec<u8>, LocalError> {
    let mut bytes = Vec::new();
    (&mut reader)
        .take(MAX_DOCUMENT_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io(path))?;
    if bytes.len() as u64 > MAX_DOCUMENT_BYTES {
        return Err(LocalError::TooLarge {
            path: path.to_owned(),
        });
    }
    Ok(bytes)
}

fn parse<T: for<'de> Deserialize<'de>>(
    bytes: &[u8],
    path: &Path,
    what: &'static str,
) -> Result<T, LocalError> {
    serde_json::from_slice(bytes).map_err(|source| LocalError::Parse {
        path: path.to_owned(),
        what,
        source,
    })
}

/// Blob `digest` of the layout at `dir`, read whole and verified.
fn layout_blob(dir: &Path, digest: &Digest) -> Result<Vec<u8>, LocalError> {
    let path = dir.join("blobs").join("sha256").join(digest.hex());
    let file = fs_err::File::open(&path).map_err(io(&path))?;
    let bytes = read_limited(file, &path)?;
    let actual = Digest::of(&bytes);
    if &actual != digest {
        return Err(LocalError::Digest {
            path,
            expected: digest.clone(),
            actual,
        });
    }
    Ok(bytes)
}

/// Resolves the OCI layout at `dir` (the manifest tagged `tag`, or the
/// only one), through nested indexes to linux/amd64.
pub fn oci_layout(dir: &Path, tag: Option<&str>) -> Result<LocalImage, LocalError> {
    let index_path = dir.join("index.json");
    let file = fs_err::File::open(&index_path).map_err(io(&index_path))?;
    let index: Document = parse(&read_limited(file, &index_path)?, &index_path, "OCI index")?;
    let manifests = index.manifests.clone().unwrap_or_default();
    let tags = || {
        let names: Vec<&str> = manifests
            .iter()
            .filter_map(|descriptor| descriptor.annotation(REF_NAME))
            .collect();
        if names.is_empty() {
            "no tags".to_owned()
        } else {
            names.join(", ")
        }
    };
    let chosen = match tag {
        Some(tag) => manifests
            .iter()
            .find(|descriptor| descriptor.annotation(REF_NAME) == Some(tag))
            .ok_or_else(|| LocalError::NoManifest {
                path: dir.to_owned(),
                why: format!("no manifest is tagged {tag:?}"),
                available: tags(),
            })?,
        None if manifests.len() == 1 => &manifests[0],
        None => {
            return Err(LocalError::NoManifest {
                path: dir.to_owned(),
                why: format!(
                    "{} manifests and no tag given (oci:DIR:TAG)",
                    manifests.len()
                ),
                available: tags(),
            });
        }
    };
    let mut digest = chosen.digest.clone();
    let mut bytes = layout_blob(dir, &digest)?;
    // At most one level of index below the layout's own index.
    for _ in 0..2 {
        let path = dir.join("blobs").join("sha256").join(digest.hex());
        let document: Document = parse(&bytes, &path, "manifest or index")?;
        if !document.is_index() {
            let manifest = document.manifest().ok_or_else(|| LocalError::NoManifest {
                path: path.clone(),
                why: "the manifest has no config or layers".to_owned(),
                available: "-".to_owned(),
            })?;
            let config_bytes = layout_blob(dir, &manifest.config.digest)?;
            let config_path = dir
                .join("blobs")
                .join("sha256")
                .join(manifest.config.digest.hex());
            let config: ConfigBlob = parse(&config_bytes, &config_path, "image config")?;
            let layers = manifest
                .layers
                .iter()
                .map(|layer| LocalLayer {
                    path: dir.join("blobs").join("sha256").join(layer.digest.hex()),
                    offset: 0,
                    len: layer.size,
                    digest: layer.digest.clone(),
                })
                .collect();
            return Ok(LocalImage {
                manifest_digest: Some(digest),
                config_digest: manifest.config.digest,
                config,
                layers,
            });
        }
        let picked = document
            .pick_platform()
            .ok_or_else(|| LocalError::NoManifest {
                path: path.clone(),
                why: "the index has no linux/amd64 manifest".to_owned(),
                available: document.platforms(),
            })?;
        digest = picked.digest.clone();
        bytes = layout_blob(dir, &digest)?;
    }
    Err(LocalError::NoManifest {
        path: dir.to_owned(),
        why: "indexes nest too deep".to_owned(),
        available: "-".to_owned(),
    })
}

#[derive(Debug, Deserialize)]
struct ArchiveManifest {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
struct RootFs {
    #[serde(default)]
    diff_ids: Vec<Digest>,
}

#[derive(Debug, Default, Deserialize)]
struct ArchiveConfig {
    #[serde(default)]
    rootfs: RootFs,
}

/// Member name → (offset, size) of every regular file in the archive.
fn archive_members(archive: &Path) -> Result<Vec<(String, u64, u64)>, LocalError> {
    let file = fs_err::File::open(archive).map_err(io(archive))?;
    let mut tar = tar::Archive::new(file);
    let mut members = Vec::new();
    for entry in tar.entries_with_seek().map_err(io(archive))? {
        let entry = entry.map_err(io(archive))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let name = name.trim_start_matches("./").to_owned();
        members.push((name, entry.raw_file_position(), entry.size()));
    }
    Ok(members)
}

/// Resolves a `docker save` archive: its `manifest.json` (the first image
/// in it), config and layers. A layer's digest is the one in its
/// `blobs/sha256/<hex>` name (newer Docker), else the config's `diff_id`
/// (older Docker stores layers uncompressed, so the two are the same).
pub fn docker_archive(archive: &Path) -> Result<LocalImage, LocalError> {
    let members = archive_members(archive)?;
    let member = |name: &str| -> Result<LocalLayer, LocalError> {
        let name = name.trim_start_matches("./");
        members
            .iter()
            .rev()
            .find(|(member, _, _)| member == name)
            .map(|(_, offset, len)| LocalLayer {
                path: archive.to_owned(),
                offset: *offset,
                len: *len,
                digest: Digest::of(b""),
            })
            .ok_or_else(|| LocalError::MissingMember {
                archive: archive.to_owned(),
                member: name.to_owned(),
            })
    };
    let read_member = |name: &str| -> Result<Vec<u8>, LocalError> {
        read_limited(member(name)?.open()?, archive)
    };
    let manifest_path = archive.join("manifest.json");
    let manifests: Vec<ArchiveManifest> = parse(
        &read_member("manifest.json")?,
        &manifest_path,
        "docker save manifest",
    )?;
    let Some(manifest) = manifests.into_iter().next() else {
        return Err(LocalError::NoManifest {
            path: archive.to_owned(),
            why: "manifest.json lists no image".to_owned(),
            available: "none".to_owned(),
        });
    };
    tracing::debug!(tags = ?manifest.repo_tags, "docker archive image");
    let config_bytes = read_member(&manifest.config)?;
    let config_digest = Digest::of(&config_bytes);
    let config_path = archive.join(&manifest.config);
    let config: ConfigBlob = parse(&config_bytes, &config_path, "image config")?;
    let rootfs: ArchiveConfig = parse(&config_bytes, &config_path, "image config")?;
    let mut layers = Vec::new();
    for (index, name) in manifest.layers.iter().enumerate() {
        let mut layer = member(name)?;
        let from_name = name
            .trim_start_matches("./")
            .strip_prefix("blobs/sha256/")
            .and_then(|hex| Digest::parse(&format!("sha256:{hex}")).ok());
        layer.digest = match from_name.or_else(|| rootfs.rootfs.diff_ids.get(index).cloned()) {
            Some(digest) => digest,
            None => {
                return Err(LocalError::MissingMember {
                    archive: archive.to_owned(),
                    member: format!("the diff_id of layer {name}"),
                });
            }
        };
        layers.push(layer);
    }
    Ok(LocalImage {
        manifest_digest: None,
        config_digest,
        config,
        layers,
    })
}
