//! Registering, building, promoting and deleting images.
//!
//! An image is a read-only base root filesystem, an optional work seed (the
//! prepared `/root` every VM's work disk is cloned from) and the kernel it
//! boots. Managed images live in `<state dir>/images/<name>/` and are
//! deleted with the image; unmanaged ones point at the user's files, which
//! banger validates but never modifies or deletes. Every file is validated
//! before anything is recorded, and every failure leaves neither files nor
//! rows behind.

mod build;
mod promote;
mod prune;
mod pull;
mod recover;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use banger_api::images::{ImageDeleted, ImageInfo, ImageRegisterRequest};
use banger_api::{ErrorCode, ImageName, KernelName, VmName};
use banger_host::disk::validate::{ValidateError, validate_ext4_image};

use crate::kernels::{self, KernelError};
use crate::progress::ProgressSink;
use crate::state::AppState;
use crate::store::{ImageRow, KernelRow, Store, StoreError};

pub use build::{build, default_image_request};
pub use promote::promote;
pub use prune::prune;
pub use pull::pull;
pub use recover::recover;

/// Failures of image operations; each names the image or file involved.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// No image of that name.
    #[error("image {name} does not exist; see `banger image list`")]
    NotFound {
        /// The name.
        name: String,
    },
    /// A file failed validation.
    #[error("the {role} is not usable")]
    Invalid {
        /// Which input (rootfs, work seed).
        role: &'static str,
        /// Why.
        #[source]
        source: ValidateError,
    },
    /// The kernel catalog's default name breaks the name rule (names in
    /// requests arrive parsed).
    #[error("invalid name")]
    Name(#[from] banger_api::NameError),
    /// A path in the request is relative.
    #[error("{field} must be an absolute path, got {path:?}")]
    RelativePath {
        /// Which field.
        field: &'static str,
        /// The path as given.
        path: String,
    },
    /// The initrd is not a non-empty regular file.
    #[error("initrd {} must be a non-empty regular file", path.display())]
    InitrdNotAFile {
        /// The initrd.
        path: PathBuf,
    },
    /// `--minimal` and `--docker` together.
    #[error("--docker adds to the provisioned image; it cannot be combined with --minimal")]
    MinimalWithDocker,
    /// `--from-image` with `--suite` or `--minimal`.
    #[error(
        "--from-image provisions an installed image: its suite comes from the image, and it cannot be combined with --{option}"
    )]
    FromImageConflict {
        /// The conflicting option.
        option: &'static str,
    },
    /// The `--from-image` base is not a system provisioning supports.
    #[error("cannot build on image {name}")]
    BaseUnsupported {
        /// The base image's name.
        name: String,
        /// What was found.
        #[source]
        source: banger_image::image_build::base::BaseImageError,
    },
    /// `--modules` without `--kernel`.
    #[error("--modules needs --kernel (it is the modules tree of that kernel)")]
    ModulesWithoutKernel,
    /// `--kernel` and `--kernel-ref` together.
    #[error("pass either --kernel PATH or --kernel-ref NAME, not both")]
    KernelAndKernelRef,
    /// No kernel was named and the default one is not installed.
    #[error(
        "no kernel given and the default kernel {kernel} is not installed; run `banger kernel pull {kernel}` or pass --kernel-ref NAME or --kernel PATH"
    )]
    DefaultKernelMissing {
        /// The catalog's default kernel.
        kernel: KernelName,
    },
    /// An image of that name exists (build).
    #[error(
        "image {name} already exists; delete it first (`banger image delete {name}`) or pick another name"
    )]
    Exists {
        /// The name.
        name: ImageName,
    },
    /// A managed image cannot be overwritten by `register`.
    #[error("image {name} is managed by banger; delete it first or register under another name")]
    ManagedExists {
        /// The name.
        name: String,
    },
    /// The image is in use.
    #[error(
        "image {name} is used by VM(s) {vms}; delete them first, or pass --force (they will no longer start)"
    )]
    InUse {
        /// The image.
        name: String,
        /// Comma-separated VM names.
        vms: String,
    },
    /// Re-registering an image that VMs use would change the base
    /// filesystem (or kernel) under them.
    #[error(
        "image {name} is used by VM(s) {vms}; re-registering it would change the files under them. Register the new files under another name (`banger image register --name NEW ...`), or delete those VMs first"
    )]
    ReRegisterInUse {
        /// The image.
        name: ImageName,
        /// Comma-separated VM names.
        vms: String,
    },
    /// The kernel an image owns (imported with `image register --kernel`)
    /// is also used by other images, so it can be neither deleted nor
    /// replaced with the image.
    #[error(
        "image {name} owns kernel {kernel} (imported with `--kernel`), which image(s) {images} also use; delete those images or re-register them with another kernel (`--kernel-ref`) first"
    )]
    OwnKernelShared {
        /// The image.
        name: ImageName,
        /// Its kernel.
        kernel: KernelName,
        /// Comma-separated names of the other images using it.
        images: String,
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
    /// The image's kernel row is gone (the schema forbids it: a bug or a
    /// damaged database).
    #[error("image {name} refers to a kernel that is not installed; see `banger daemon check`")]
    KernelMissing {
        /// The image.
        name: ImageName,
    },
    /// A kernel operation failed.
    #[error(transparent)]
    Kernel(#[from] KernelError),
    /// Building the image failed.
    #[error("building image {name} failed (build log: {log})")]
    Build {
        /// The image.
        name: String,
        /// The build log.
        log: PathBuf,
        /// The cause.
        #[source]
        source: Box<banger_image::image_build::ImageBuildError>,
    },
    /// The pull reference is not valid.
    #[error("invalid image reference")]
    Reference(#[from] banger_oci::reference::ReferenceError),
    /// Pulling the image failed.
    #[error("pulling image {name} failed")]
    Pull {
        /// The image.
        name: String,
        /// The cause.
        #[source]
        source: Box<banger_oci::ImportError>,
    },
    /// A copy did not match its source when promoting.
    #[error("the copy of {source_path} differs from the original; the promotion was undone")]
    VerifyFailed {
        /// The original file.
        source_path: PathBuf,
    },
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ImageError {
    /// The API error code: what a client may branch on.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::NotFound { .. } => ErrorCode::NotFound,
            Self::InUse { .. }
            | Self::ReRegisterInUse { .. }
            | Self::OwnKernelShared { .. }
            | Self::ManagedExists { .. }
            | Self::Exists { .. } => ErrorCode::Conflict,
            Self::Invalid { .. }
            | Self::Name(_)
            | Self::RelativePath { .. }
            | Self::InitrdNotAFile { .. }
            | Self::ModulesWithoutKernel
            | Self::MinimalWithDocker
            | Self::FromImageConflict { .. }
            | Self::BaseUnsupported { .. }
            | Self::KernelAndKernelRef
            | Self::DefaultKernelMissing { .. }
            | Self::Reference(_) => ErrorCode::BadRequest,
            Self::Pull { source, .. } => match **source {
                banger_oci::ImportError::Ext4(_)
                | banger_oci::ImportError::Io { .. }
                | banger_oci::ImportError::Cache(_) => ErrorCode::Internal,
                banger_oci::ImportError::Registry(banger_oci::registry::RegistryError::Http {
                    ..
                }) => ErrorCode::Unavailable,
                _ => ErrorCode::BadRequest,
            },
            Self::Kernel(kernel) => kernel.code(),
            // A full disk is the host's state, not a bug: as for a pause or a
            // snapshot without space.
            Self::Build { source, .. }
                if matches!(
                    **source,
                    banger_image::image_build::ImageBuildError::NoSpace { .. }
                ) =>
            {
                ErrorCode::Unavailable
            }
            Self::Io { .. }
            | Self::KernelMissing { .. }
            | Self::Build { .. }
            | Self::VerifyFailed { .. }
            | Self::Store(_) => ErrorCode::Internal,
        }
    }
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ImageError {
    let path = path.to_owned();
    move |source| ImageError::Io {
        action,
        path,
        source,
    }
}

/// `<state dir>/images`.
pub fn images_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("images")
}

/// The API view of a row.
pub fn info(store: &Store, row: &ImageRow) -> Result<ImageInfo, ImageError> {
    let kernel = store
        .kernel_by_id(row.kernel_id)?
        .map(|kernel| kernel.name)
        .ok_or_else(|| ImageError::KernelMissing {
            name: row.name.clone(),
        })?;
    Ok(ImageInfo {
        name: row.name.clone(),
        managed: row.managed,
        rootfs: row.rootfs.display().to_string(),
        work_seed: row
            .work_seed
            .as_ref()
            .map(|path| path.display().to_string()),
        kernel,
        initrd: row.initrd.as_ref().map(|path| path.display().to_string()),
        size_bytes: row.size_bytes,
        created_at: row.created_at,
        updated_at: row.updated_at,
        used_by_vms: store.vms_using_image(row.id)?,
        oci: row.oci.clone(),
        provision: build::provision_info(row),
    })
}

/// All images.
pub fn list(store: &Store) -> Result<Vec<ImageInfo>, ImageError> {
    store.images()?.iter().map(|row| info(store, row)).collect()
}

/// The image called `name`.
pub fn row(store: &Store, name: &ImageName) -> Result<ImageRow, ImageError> {
    store.image(name)?.ok_or_else(|| ImageError::NotFound {
        name: name.to_string(),
    })
}

/// One image.
pub fn show(store: &Store, name: &ImageName) -> Result<ImageInfo, ImageError> {
    info(store, &row(store, name)?)
}

/// An absolute path from a request, with symlinks resolved: VMs open the
/// registered files without following links (docs/boot-chain.md), so the
/// file itself is recorded. A path that does not resolve is kept as given
/// for the validation to name what is wrong with it.
fn absolute(field: &'static str, raw: &str) -> Result<PathBuf, ImageError> {
    let path = PathBuf::from(raw);
    if path.is_absolute() {
        Ok(fs_err::canonicalize(&path).unwrap_or(path))
    } else {
        Err(ImageError::RelativePath {
            field,
            path: raw.to_owned(),
        })
    }
}

fn file_bytes(path: &Path) -> u64 {
    fs_err::metadata(path)
        .map(|metadata| metadata.len())
        .unwrap_or(0)
}

/// Checks a custom initrd: an existing, non-empty regular file.
fn validate_initrd(path: &Path) -> Result<(), ImageError> {
    let metadata = fs_err::metadata(path).map_err(io("read the initrd", path))?;
    if !metadata.is_file() || metadata.len() == 0 {
        return Err(ImageError::InitrdNotAFile {
            path: path.to_owned(),
        });
    }
    Ok(())
}

/// The name under which `image register --kernel PATH` stores its kernel,
/// and the source label that marks the kernel as owned by the image.
fn image_kernel(name: &ImageName) -> (KernelName, String) {
    (KernelName::from(name), format!("image:{name}"))
}

/// Registers (or updates in place) an unmanaged image after validating
/// every file it names.
pub fn register(
    state: &AppState,
    request: &ImageRegisterRequest,
    progress: &ProgressSink,
) -> Result<ImageInfo, ImageError> {
    let name = &request.name;
    // From the first check to the last write: no VM starts using this
    // image meanwhile (its kernel files may be replaced below).
    let _images = state.images_lock().blocking_lock();
    let existing = state.store().image(name)?;
    if existing.as_ref().is_some_and(|row| row.managed) {
        return Err(ImageError::ManagedExists {
            name: name.to_string(),
        });
    }
    if let Some(existing) = &existing {
        refuse_if_vms_use(&state.store(), existing)?;
    }
    let rootfs = absolute("rootfs", &request.rootfs)?;
    validate_ext4_image(&rootfs).map_err(|source| ImageError::Invalid {
        role: "rootfs",
        source,
    })?;
    let work_seed = request
        .work_seed
        .as_deref()
        .map(|raw| absolute("work seed", raw))
        .transpose()?;
    if let Some(seed) = &work_seed {
        validate_ext4_image(seed).map_err(|source| ImageError::Invalid {
            role: "work seed",
            source,
        })?;
    }
    let initrd = request
        .initrd
        .as_deref()
        .map(|raw| absolute("initrd", raw))
        .transpose()?;
    if let Some(initrd) = &initrd {
        validate_initrd(initrd)?;
    }
    if request.modules.is_some() && request.kernel.is_none() {
        return Err(ImageError::ModulesWithoutKernel);
    }
    let kernel_id = match (&request.kernel, &request.kernel_ref) {
        (Some(_), Some(_)) => {
            return Err(ImageError::KernelAndKernelRef);
        }
        (Some(kernel), None) => {
            let kernel = absolute("kernel", kernel)?;
            let modules = request
                .modules
                .as_deref()
                .map(|raw| absolute("modules", raw))
                .transpose()?;
            let (kernel_name, label) = image_kernel(name);
            refuse_if_own_kernel_shared(&state.store(), name, &kernel_name, &label)?;
            kernels::import(
                state,
                &kernel_name,
                &kernel,
                modules.as_deref(),
                &label,
                progress,
            )?;
            installed_kernel_id(&state.store(), &kernel_name)?
        }
        (None, Some(reference)) => installed_kernel_id(&state.store(), reference)?,
        (None, None) => default_kernel_id(&state.store())?,
    };
    let timestamp = crate::store::unix_now();
    let row = ImageRow {
        id: 0,
        name: name.clone(),
        managed: false,
        dir: None,
        size_bytes: file_bytes(&rootfs) + work_seed.as_deref().map_or(0, file_bytes),
        rootfs,
        work_seed,
        kernel_id,
        initrd,
        created_at: existing.as_ref().map_or(timestamp, |row| row.created_at),
        updated_at: timestamp,
        oci: None,
    };
    let (saved, dropped) = {
        let mut store = state.store();
        // Checked again under the same lock as the write: a VM created
        // since the first check keeps its files too.
        if let Some(existing) = &existing {
            refuse_if_vms_use(&store, existing)?;
        }
        // The kernel this image owned and no longer uses goes with the
        // change, unless another image still boots it.
        let dropped = match &existing {
            Some(existing) if existing.kernel_id != kernel_id => {
                unused_own_kernel(&store, existing)?
            }
            _ => None,
        };
        store.upsert_image_dropping_kernel(&row, dropped.as_ref().map(|kernel| kernel.id))?;
        (self::row(&store, name)?, dropped)
    };
    if let Some(kernel) = dropped {
        remove_managed(&kernels::kernels_dir(&state.paths().state_dir), &kernel.dir)?;
    }
    info(&state.store(), &saved)
}

/// Refuses to change `image` while VMs use it.
fn refuse_if_vms_use(store: &Store, image: &ImageRow) -> Result<(), ImageError> {
    let vms = store.vms_using_image(image.id)?;
    if vms.is_empty() {
        return Ok(());
    }
    Err(ImageError::ReRegisterInUse {
        name: image.name.clone(),
        vms: join(vms.iter().map(VmName::as_str)),
    })
}

/// Refuses to replace the kernel image `name` owns while other images boot
/// it (the import would change their kernel too).
fn refuse_if_own_kernel_shared(
    store: &Store,
    name: &ImageName,
    kernel: &KernelName,
    label: &str,
) -> Result<(), ImageError> {
    let Some(row) = store.kernel(kernel)?.filter(|row| row.source == label) else {
        return Ok(());
    };
    let others = other_images(store, row.id, name)?;
    if others.is_empty() {
        return Ok(());
    }
    Err(ImageError::OwnKernelShared {
        name: name.clone(),
        kernel: kernel.clone(),
        images: join(others.iter().map(ImageName::as_str)),
    })
}

/// Images other than `name` that boot kernel row `kernel`.
fn other_images(
    store: &Store,
    kernel: i64,
    name: &ImageName,
) -> Result<Vec<ImageName>, ImageError> {
    Ok(store
        .images_using_kernel(kernel)?
        .into_iter()
        .filter(|image| image != name)
        .collect())
}

/// The kernel of `image` when it belongs to an image (imported with
/// `image register --kernel`, source `image:*`) and no other image uses it:
/// the one to delete when `image` stops using it.
fn unused_own_kernel(store: &Store, image: &ImageRow) -> Result<Option<KernelRow>, ImageError> {
    let Some(kernel) = store.kernel_by_id(image.kernel_id)? else {
        return Ok(None);
    };
    if !kernel.source.starts_with("image:") {
        return Ok(None);
    }
    if other_images(store, kernel.id, &image.name)?.is_empty() {
        Ok(Some(kernel))
    } else {
        Ok(None)
    }
}

fn join<'a>(names: impl Iterator<Item = &'a str>) -> String {
    names.collect::<Vec<_>>().join(", ")
}

fn installed_kernel_id(store: &Store, name: &KernelName) -> Result<i64, ImageError> {
    store.kernel(name)?.map(|row| row.id).ok_or_else(|| {
        KernelError::NotInstalled {
            name: name.to_string(),
        }
        .into()
    })
}

fn default_kernel_id(store: &Store) -> Result<i64, ImageError> {
    let catalog = kernels::catalog()?;
    let name = KernelName::parse(&catalog.default)?;
    store
        .kernel(&name)?
        .map(|row| row.id)
        .ok_or_else(|| ImageError::DefaultKernelMissing {
            kernel: name.clone(),
        })
}

/// Deletes an image, all or nothing: every check comes before any change.
/// Refused while VMs use it (unless `force`) and while other images boot
/// the kernel it owns. The image row and the kernel it owns (if no other
/// image uses it) go in one transaction; then managed files are removed
/// (the image's directory, that kernel's directory). Unmanaged images'
/// files are left alone.
pub fn delete(state: &AppState, name: &ImageName, force: bool) -> Result<ImageDeleted, ImageError> {
    let _artifacts = state.artifacts_lock();
    let (image, row, kernel) = {
        let mut store = state.store();
        let row = row(&store, name)?;
        let image = info(&store, &row)?;
        if !image.used_by_vms.is_empty() && !force {
            return Err(ImageError::InUse {
                name: name.to_string(),
                vms: join(image.used_by_vms.iter().map(VmName::as_str)),
            });
        }
        let kernel = store
            .kernel_by_id(row.kernel_id)?
            .ok_or_else(|| ImageError::KernelMissing { name: name.clone() })?;
        let (own_name, own_label) = image_kernel(name);
        let others = other_images(&store, kernel.id, name)?;
        let kernel = if kernel.source == own_label && !others.is_empty() {
            return Err(ImageError::OwnKernelShared {
                name: name.clone(),
                kernel: own_name,
                images: join(others.iter().map(ImageName::as_str)),
            });
        } else if kernel.source.starts_with("image:") && others.is_empty() {
            Some(kernel)
        } else {
            None
        };
        store.delete_image_and_kernel(row.id, kernel.as_ref().map(|kernel| kernel.id))?;
        (image, row, kernel)
    };
    // The rows are gone; now the managed files. Both removals are tried.
    let paths = state.paths();
    let mut removed_files = Vec::new();
    let mut failure = None;
    if let Some(dir) = row.dir.as_ref().filter(|_| row.managed) {
        match remove_managed(&images_dir(&paths.state_dir), dir) {
            Ok(true) => removed_files.push(dir.display().to_string()),
            Ok(false) => {}
            Err(error) => failure = Some(error),
        }
    }
    if let Some(kernel) = &kernel {
        match remove_managed(&kernels::kernels_dir(&paths.state_dir), &kernel.dir) {
            Ok(true) => removed_files.push(kernel.dir.display().to_string()),
            Ok(false) => {}
            Err(error) => failure = failure.or(Some(error)),
        }
    }
    prune_grown_seeds(state);
    if let Some(error) = failure {
        return Err(error);
    }
    if !image.used_by_vms.is_empty() {
        tracing::warn!(image = %name, vms = ?image.used_by_vms, "image force-deleted while VMs use it");
    }
    Ok(ImageDeleted {
        broken_vms: image.used_by_vms.clone(),
        image,
        removed_files,
    })
}

/// The cache directory of grown work seeds (`banger_host::disk::seed_cache`).
pub const GROWN_SEEDS_DIR: &str = "grown-seeds";

/// Removes the grown copies of work seeds that no image has any more (a
/// deleted or rebuilt image's): nothing would ever clone them again. A
/// failure is logged, never fatal: the caches are a speed-up.
pub fn prune_grown_seeds(state: &AppState) {
    let seeds: Vec<PathBuf> = match state.store().images() {
        Ok(images) => images
            .into_iter()
            .filter_map(|image| image.work_seed)
            .collect(),
        Err(error) => {
            tracing::warn!(error = %crate::error::error_chain(&error), "cannot list images to prune grown work seeds");
            return;
        }
    };
    let keep: Vec<&Path> = seeds.iter().map(PathBuf::as_path).collect();
    let dir = state.paths().cache_dir.join(GROWN_SEEDS_DIR);
    match banger_host::disk::seed_cache::prune(&dir, &keep) {
        Ok(deleted) if !deleted.is_empty() => {
            tracing::info!(count = deleted.len(), dir = %dir.display(), "removed grown work seeds of images that are gone");
        }
        Ok(_) => {}
        Err(error) => {
            tracing::warn!(error = %crate::error::error_chain(&error), "cannot prune grown work seeds");
        }
    }
}

/// Removes `dir` if it lies inside `root` (banger's own store); anything
/// else is not banger's to remove and is left alone. Returns whether it was
/// removed (or already gone).
fn remove_managed(root: &Path, dir: &Path) -> Result<bool, ImageError> {
    let inside = dir.starts_with(root)
        && dir != root
        && !dir
            .components()
            .any(|component| component == std::path::Component::ParentDir);
    if !inside {
        tracing::warn!(dir = %dir.display(), root = %root.display(), "not removing a directory outside banger's store");
        return Ok(false);
    }
    remove_tree(dir)?;
    Ok(true)
}

fn remove_tree(dir: &Path) -> Result<(), ImageError> {
    match fs_err::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(io("remove", dir)(error)),
    }
}
