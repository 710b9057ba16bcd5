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

use std::path::{Path, PathBuf};

use banger_api::images::{ImageDeleted, ImageInfo, ImageRegisterRequest};
use banger_api::{ErrorCode, ImageName, KernelName, VmName};
use banger_host::disk::validate::{ValidateError, validate_ext4_image};

use crate::kernels::{self, KernelError};
use crate::progress::ProgressSink;
use crate::state::AppState;
use crate::store::{ImageRow, Store, StoreError};

pub use build::build;
pub use promote::promote;

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
            Self::InUse { .. } | Self::ManagedExists { .. } | Self::Exists { .. } => {
                ErrorCode::Conflict
            }
            Self::Invalid { .. }
            | Self::Name(_)
            | Self::RelativePath { .. }
            | Self::InitrdNotAFile { .. }
            | Self::ModulesWithoutKernel
            | Self::KernelAndKernelRef
            | Self::DefaultKernelMissing { .. } => ErrorCode::BadRequest,
            Self::Kernel(kernel) => kernel.code(),
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

fn absolute(field: &'static str, raw: &str) -> Result<PathBuf, ImageError> {
    let path = PathBuf::from(raw);
    if path.is_absolute() {
        Ok(path)
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
    let existing = state.store().image(name)?;
    if existing.as_ref().is_some_and(|row| row.managed) {
        return Err(ImageError::ManagedExists {
            name: name.to_string(),
        });
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
    };
    let mut store = state.store();
    store.upsert_image(&row)?;
    let saved = self::row(&store, name)?;
    info(&store, &saved)
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

/// Deletes an image. Managed images lose their files; unmanaged images'
/// files are left alone. Refused while VMs use it, unless `force`.
pub fn delete(state: &AppState, name: &ImageName, force: bool) -> Result<ImageDeleted, ImageError> {
    let _artifacts = state.artifacts_lock();
    let (image, row, kernel) = {
        let mut store = state.store();
        let row = row(&store, name)?;
        let image = info(&store, &row)?;
        if !image.used_by_vms.is_empty() && !force {
            return Err(ImageError::InUse {
                name: name.to_string(),
                vms: image
                    .used_by_vms
                    .iter()
                    .map(VmName::as_str)
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        let kernel = store.kernel_by_id(row.kernel_id)?;
        store.delete_image(row.id)?;
        (image, row, kernel)
    };
    let mut removed_files = Vec::new();
    if let Some(dir) = row.dir.as_ref().filter(|_| row.managed) {
        remove_tree(dir)?;
        removed_files.push(dir.display().to_string());
    }
    // A kernel imported by `image register --kernel` belongs to the image.
    if let Some(kernel) = kernel.filter(|kernel| kernel.source == format!("image:{name}")) {
        let deleted = kernels::delete_locked(state, &kernel.name)?;
        removed_files.push(deleted.dir);
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

fn remove_tree(dir: &Path) -> Result<(), ImageError> {
    match fs_err::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(io("remove", dir)(error)),
    }
}
