//! A whole pull: resolve the source to a config and layers, fetch missing
//! layers into the blob cache, apply every layer to a [`Tree`] and write
//! `rootfs.ext4` (and `work-seed.ext4` from the image's `/root`).
//!
//! Everything temporary lives in the caller's work directory, which the
//! caller removes whatever the outcome; the output files appear only at
//! the end.

use std::path::{Path, PathBuf};

use crate::auth::{self, AuthError};
use crate::cache::{BlobCache, CacheError};
use crate::digest::{Digest, HashingReader, limit_of};
use crate::ext4::{Ext4Error, Ext4Spec, write_ext4};
use crate::layer::{LayerError, LayerLimits, apply_layer};
use crate::local::{self, LocalError, LocalLayer};
use crate::reference::Source;
use crate::registry::{Registry, RegistryError};
use crate::spec::{ConfigBlob, ContainerConfig, Descriptor, Document};
use crate::tree::{Kind, ROOT, Tree};

/// Label of the root filesystem (the same as built images).
pub const ROOTFS_LABEL: &str = "banger-root";
/// Label of the work seed.
pub const WORK_LABEL: &str = "banger-work";
/// The root filesystem's file name.
pub const ROOTFS: &str = "rootfs.ext4";
/// The work seed's file name.
pub const WORK_SEED: &str = "work-seed.ext4";

/// Limits a pull stays within.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of one layer, compressed (as declared and downloaded) and uncompressed.
    pub max_layer_bytes: u64,
    /// Bytes of regular files in the flattened image.
    pub max_image_bytes: u64,
    /// Files (inodes) in the flattened image.
    pub max_inodes: u64,
}

impl Limits {
    /// Default largest layer: 4 GiB.
    pub const DEFAULT_MAX_LAYER_BYTES: u64 = 4 << 30;
    /// Default largest image: 16 GiB of files.
    pub const DEFAULT_MAX_IMAGE_BYTES: u64 = 16 << 30;
    /// Default most files: 2 million.
    pub const DEFAULT_MAX_INODES: u64 = 2_000_000;
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_layer_bytes: Self::DEFAULT_MAX_LAYER_BYTES,
            max_image_bytes: Self::DEFAULT_MAX_IMAGE_BYTES,
            max_inodes: Self::DEFAULT_MAX_INODES,
        }
    }
}

/// What to pull and where to put it.
#[derive(Debug, Clone)]
pub struct ImportOptions<'a> {
    /// The image.
    pub source: &'a Source,
    /// The blob cache (`<cache dir>/oci`).
    pub cache: &'a BlobCache,
    /// An empty directory for temporary files; the caller removes it.
    pub work_dir: &'a Path,
    /// Where `rootfs.ext4` and `work-seed.ext4` are written.
    pub out_dir: &'a Path,
    /// Docker's client config with registry credentials, if any.
    pub docker_config: Option<&'a Path>,
    /// Registries allowed over plain HTTP besides loopback ones.
    pub insecure_registries: &'a [String],
    /// Limits.
    pub limits: Limits,
    /// Size of the work seed in bytes.
    pub work_seed_bytes: u64,
}

/// Progress of a pull.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullEvent {
    /// The manifest is known.
    Resolved {
        /// The manifest's digest (none for docker archives).
        manifest_digest: Option<Digest>,
        /// Layers and their sizes.
        layers: Vec<(Digest, u64)>,
    },
    /// A layer was already in the cache.
    Cached {
        /// Layer index (0-based).
        index: usize,
        /// Its digest.
        digest: Digest,
        /// Its size.
        size: u64,
    },
    /// Bytes of a layer downloaded so far.
    Download {
        /// Layer index.
        index: usize,
        /// Its digest.
        digest: Digest,
        /// Bytes so far.
        done: u64,
        /// Its size.
        size: u64,
    },
    /// A layer is being applied.
    Apply {
        /// Layer index.
        index: usize,
        /// Number of layers.
        count: usize,
    },
    /// An ext4 image is being written.
    Write {
        /// Its file name.
        file: &'static str,
    },
}

/// The result of a pull.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedImage {
    /// The root filesystem.
    pub rootfs: PathBuf,
    /// Its size (apparent).
    pub rootfs_bytes: u64,
    /// The work seed (from the image's `/root`), when it has a `/root` directory.
    pub work_seed: Option<PathBuf>,
    /// Its size (apparent), 0 without one.
    pub work_seed_bytes: u64,
    /// The manifest's digest (registries, layouts).
    pub manifest_digest: Option<Digest>,
    /// The config's digest (the image ID).
    pub config_digest: Digest,
    /// The container config.
    pub config: ContainerConfig,
    /// Layers downloaded (not in the cache before).
    pub downloaded_layers: usize,
    /// Layers found in the cache.
    pub cached_layers: usize,
}

/// Why a pull failed.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Credentials could not be read.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The registry failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// A local image could not be read.
    #[error(transparent)]
    Local(#[from] LocalError),
    /// A blob could not be cached.
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// A layer could not be applied.
    #[error(transparent)]
    Layer(#[from] LayerError),
    /// The ext4 image could not be written.
    #[error(transparent)]
    Ext4(#[from] Ext4Error),
    /// A document is not a manifest or index.
    #[error("{what} from {source_ref} is not a valid manifest or index")]
    BadDocument {
        /// Which document.
        what: &'static str,
        /// The image.
        source_ref: String,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// An index without linux/amd64.
    #[error("{source_ref} has no linux/amd64 image; it offers {platforms}")]
    NoPlatform {
        /// The image.
        source_ref: String,
        /// What it offers.
        platforms: String,
    },
    /// A manifest without config or layers.
    #[error("the manifest of {source_ref} has no config or no layers list")]
    NotAManifest {
        /// The image.
        source_ref: String,
    },
    /// A layer declares a size above the limit.
    #[error(
        "layer {index} ({digest}) of {source_ref} is {size} bytes, more than the max layer size {limit} bytes; raise it with --max-layer-size if the image is trusted"
    )]
    DeclaredTooLarge {
        /// The image.
        source_ref: String,
        /// Layer number (1-based).
        index: usize,
        /// Its digest.
        digest: Digest,
        /// Declared size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// A local layer's bytes do not match its digest.
    #[error("layer {layer} of {path}: content has digest {actual}, expected {expected}")]
    LayerDigest {
        /// The layer's name.
        layer: String,
        /// Where it was read.
        path: PathBuf,
        /// Expected.
        expected: Digest,
        /// Actual.
        actual: Digest,
    },
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
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ImportError {
    let path = path.to_owned();
    move |source| ImportError::Io {
        action,
        path,
        source,
    }
}

/// Where a layer comes from.
enum LayerSource {
    Local(LocalLayer),
    Remote(Descriptor),
}

struct Resolved {
    manifest_digest: Option<Digest>,
    config_digest: Digest,
    config: ConfigBlob,
    layers: Vec<LayerSource>,
    registry: Option<Registry>,
}

fn parse_document(
    bytes: &[u8],
    what: &'static str,
    source: &Source,
) -> Result<Document, ImportError> {
    serde_json::from_slice(bytes).map_err(|error| ImportError::BadDocument {
        what,
        source_ref: source.to_string(),
        source: error,
    })
}

fn resolve(options: &ImportOptions<'_>) -> Result<Resolved, ImportError> {
    let source = options.source;
    match source {
        Source::DockerArchive(path) => Ok(from_local(local::docker_archive(path)?)),
        Source::OciLayout { dir, tag } => Ok(from_local(local::oci_layout(dir, tag.as_deref())?)),
        Source::Registry(reference) => {
            let credentials = match options.docker_config {
                Some(path) => auth::credentials_for(path, &reference.registry)?,
                None => None,
            };
            let mut registry = Registry::new(reference, credentials, options.insecure_registries);
            let mut fetched = registry.manifest(&reference.manifest_reference())?;
            let mut document = parse_document(&fetched.bytes, "the manifest", source)?;
            if document.is_index() {
                let picked = document
                    .pick_platform()
                    .ok_or_else(|| ImportError::NoPlatform {
                        source_ref: source.to_string(),
                        platforms: document.platforms(),
                    })?
                    .digest
                    .clone();
                fetched = registry.manifest(&picked.to_string())?;
                document = parse_document(&fetched.bytes, "the platform manifest", source)?;
            }
            let manifest = document
                .manifest()
                .ok_or_else(|| ImportError::NotAManifest {
                    source_ref: source.to_string(),
                })?;
            for (index, layer) in manifest.layers.iter().enumerate() {
                if layer.size > options.limits.max_layer_bytes {
                    return Err(ImportError::DeclaredTooLarge {
                        source_ref: source.to_string(),
                        index: index + 1,
                        digest: layer.digest.clone(),
                        size: layer.size,
                        limit: options.limits.max_layer_bytes,
                    });
                }
            }
            let config_bytes = registry.small_blob(&manifest.config.digest)?;
            let config: ConfigBlob = serde_json::from_slice(&config_bytes).map_err(|error| {
                ImportError::BadDocument {
                    what: "the image config",
                    source_ref: source.to_string(),
                    source: error,
                }
            })?;
            Ok(Resolved {
                manifest_digest: Some(fetched.digest),
                config_digest: manifest.config.digest,
                config,
                layers: manifest
                    .layers
                    .into_iter()
                    .map(LayerSource::Remote)
                    .collect(),
                registry: Some(registry),
            })
        }
    }
}

fn from_local(image: local::LocalImage) -> Resolved {
    Resolved {
        manifest_digest: image.manifest_digest,
        config_digest: image.config_digest,
        config: image.config,
        layers: image.layers.into_iter().map(LayerSource::Local).collect(),
        registry: None,
    }
}

/// Pulls `options.source` into `options.out_dir`, reporting to `progress`.
pub fn import(
    options: &ImportOptions<'_>,
    progress: &mut dyn FnMut(PullEvent),
) -> Result<ImportedImage, ImportError> {
    options.cache.clean_stale_temps();
    let mut resolved = resolve(options)?;
    let count = resolved.layers.len();
    progress(PullEvent::Resolved {
        manifest_digest: resolved.manifest_digest.clone(),
        layers: resolved
            .layers
            .iter()
            .map(|layer| match layer {
                LayerSource::Local(layer) => (layer.digest.clone(), layer.len),
                LayerSource::Remote(layer) => (layer.digest.clone(), layer.size),
            })
            .collect(),
    });

    // Registry layers into the cache first: a failed download stops the
    // pull before any flattening work.
    let mut downloaded_layers = 0;
    let mut cached_layers = 0;
    let mut blob_paths = Vec::new();
    for (index, layer) in resolved.layers.iter().enumerate() {
        let LayerSource::Remote(descriptor) = layer else {
            continue;
        };
        if let Some(path) = options.cache.get(&descriptor.digest, descriptor.size) {
            cached_layers += 1;
            progress(PullEvent::Cached {
                index,
                digest: descriptor.digest.clone(),
                size: descriptor.size,
            });
            blob_paths.push((index, path));
            continue;
        }
        let Some(registry) = resolved.registry.as_mut() else {
            continue;
        };
        let reader = registry.blob(&descriptor.digest)?;
        let path =
            options
                .cache
                .store(&descriptor.digest, descriptor.size, reader, &mut |done| {
                    progress(PullEvent::Download {
                        index,
                        digest: descriptor.digest.clone(),
                        done,
                        size: descriptor.size,
                    })
                })?;
        downloaded_layers += 1;
        blob_paths.push((index, path));
    }

    let content = options.work_dir.join("content");
    fs_err::create_dir(&content).map_err(io("create", &content))?;
    let mut tree = Tree::new(&content);
    let layer_limits = LayerLimits {
        max_layer_bytes: options.limits.max_layer_bytes,
        max_image_bytes: options.limits.max_image_bytes,
        max_inodes: options.limits.max_inodes,
    };
    for (index, layer) in resolved.layers.iter().enumerate() {
        progress(PullEvent::Apply { index, count });
        match layer {
            LayerSource::Remote(descriptor) => {
                let name = format!("{}/{count} ({})", index + 1, descriptor.digest);
                let Some((_, path)) = blob_paths.iter().find(|(i, _)| *i == index) else {
                    continue;
                };
                // Cached blobs were verified when they were written.
                let file = fs_err::File::open(path).map_err(io("open", path))?;
                apply_layer(&mut tree, file, index + 1, &name, &layer_limits)?;
            }
            LayerSource::Local(local) => {
                let name = format!("{}/{count} ({})", index + 1, local.digest);
                let mut reader = HashingReader::new(local.open()?, local.len);
                apply_layer(&mut tree, &mut reader, index + 1, &name, &layer_limits)?;
                let (actual, _) = reader.finish().map_err(|source| match limit_of(&source) {
                    Some(limit) => ImportError::Layer(LayerError::LayerTooLarge {
                        layer: name.clone(),
                        limit,
                    }),
                    None => ImportError::Io {
                        action: "read",
                        path: local.path.clone(),
                        source,
                    },
                })?;
                if actual != local.digest {
                    return Err(ImportError::LayerDigest {
                        layer: name,
                        path: local.path.clone(),
                        expected: local.digest.clone(),
                        actual,
                    });
                }
            }
        }
    }

    // /root becomes the work seed; the rootfs keeps it as an empty mount point.
    let root_home = tree.lookup(b"root").ok().flatten().filter(|inode| {
        matches!(
            tree.inode(*inode).map(|node| &node.kind),
            Some(Kind::Dir(_))
        )
    });
    progress(PullEvent::Write { file: ROOTFS });
    let rootfs = options.out_dir.join(ROOTFS);
    let rootfs_work = options.work_dir.join("rootfs");
    fs_err::create_dir(&rootfs_work).map_err(io("create", &rootfs_work))?;
    let written = write_ext4(
        &tree,
        ROOT,
        root_home,
        &rootfs_work,
        &rootfs,
        &Ext4Spec {
            label: ROOTFS_LABEL,
            journal: false,
            min_size: 0,
            fit_inodes: true,
        },
    )?;
    let (work_seed, work_seed_bytes) = match root_home {
        Some(home) => {
            progress(PullEvent::Write { file: WORK_SEED });
            let seed = options.out_dir.join(WORK_SEED);
            let seed_work = options.work_dir.join("seed");
            fs_err::create_dir(&seed_work).map_err(io("create", &seed_work))?;
            let written = write_ext4(
                &tree,
                home,
                None,
                &seed_work,
                &seed,
                &Ext4Spec {
                    label: WORK_LABEL,
                    journal: true,
                    min_size: options.work_seed_bytes,
                    fit_inodes: false,
                },
            )?;
            (Some(seed), written.size)
        }
        None => (None, 0),
    };
    Ok(ImportedImage {
        rootfs,
        rootfs_bytes: written.size,
        work_seed,
        work_seed_bytes,
        manifest_digest: resolved.manifest_digest,
        config_digest: resolved.config_digest,
        config: resolved.config.config.unwrap_or_default(),
        downloaded_layers,
        cached_layers,
    })
}
