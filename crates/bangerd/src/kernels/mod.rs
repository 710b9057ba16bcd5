//! Installing, importing and deleting kernels.
//!
//! A kernel is installed into `<state dir>/kernels/<name>/`: the bzImage, the
//! ELF vmlinux (extracted for Firecracker), the modules tree, the modules
//! disk and the banger initramfs built for it. Everything is assembled in a
//! `.partial-*` directory and renamed into place, and the database row is
//! written last, so a failure at any step leaves neither a directory nor a
//! row behind. Work is blocking (apt, e2fsprogs, compression) and runs on a
//! blocking thread; progress goes to the caller's [`ProgressSink`].

mod install;
mod prune;

use std::path::{Path, PathBuf};

use banger_api::kernels::{CatalogKernel, KernelInfo};
use banger_api::{ImageName, KernelName};
use banger_image::catalog::{KernelCatalog, KernelSource};

use crate::progress::ProgressSink;
use banger_api::ErrorCode;

use crate::state::AppState;
use crate::store::{KernelRow, Store, StoreError};

pub use install::InstallError;
pub use prune::prune;

/// Failures of kernel operations; each names the kernel or path involved.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// The built-in catalog did not load (a packaging bug).
    #[error("the kernel catalog is unusable")]
    Catalog(#[source] banger_image::catalog::CatalogError),
    /// The name is not in the catalog.
    #[error(
        "kernel {name:?} is not in the catalog; available: {available} (see `banger kernel list --available`)"
    )]
    NotInCatalog {
        /// The requested name.
        name: String,
        /// Comma-separated catalog names.
        available: String,
    },
    /// No kernel of that name is installed.
    #[error("kernel {name} is not installed; see `banger kernel list`")]
    NotInstalled {
        /// The name.
        name: String,
    },
    /// The kernel cannot be deleted while images use it.
    #[error("kernel {name} is used by image(s) {images}; delete those images first")]
    InUse {
        /// The kernel.
        name: String,
        /// Comma-separated image names.
        images: String,
    },
    /// A kernel of that name exists already (import).
    #[error(
        "a kernel named {name} is already installed (from {source_label}); delete it first or pick another name"
    )]
    Exists {
        /// The name.
        name: String,
        /// Where the existing one came from.
        source_label: String,
    },
    /// Building or installing the artifacts failed.
    #[error(transparent)]
    Install(#[from] InstallError),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl KernelError {
    /// The API error code: what a client may branch on.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::NotInCatalog { .. } | Self::NotInstalled { .. } => ErrorCode::NotFound,
            Self::InUse { .. } | Self::Exists { .. } => ErrorCode::Conflict,
            Self::Install(install) => install.code(),
            Self::Catalog(_) | Self::Store(_) => ErrorCode::Internal,
        }
    }
}

impl InstallError {
    /// The API error code: what a client may branch on.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::BadInput { .. }
            | Self::NotAKernel { .. }
            | Self::UnknownVersion { .. }
            | Self::VersionMismatch { .. } => ErrorCode::BadRequest,
            Self::NoBusybox => ErrorCode::Unavailable,
            Self::Io { .. }
            | Self::Fetch(_)
            | Self::Download(_)
            | Self::Vmlinux(_)
            | Self::Initramfs(_)
            | Self::ModulesDisk(_) => ErrorCode::Internal,
        }
    }
}

/// The kernel catalog: the file named by `BANGER_KERNEL_CATALOG` (a local
/// mirror's catalog, or a test's), else the one shipped in this build
/// (`assets/kernel-catalog.toml`).
pub fn catalog() -> Result<KernelCatalog, KernelError> {
    match std::env::var_os("BANGER_KERNEL_CATALOG").filter(|value| !value.is_empty()) {
        Some(path) => banger_image::catalog::load_catalog(Path::new(&path)),
        None => banger_image::catalog::builtin_catalog(),
    }
    .map_err(KernelError::Catalog)
}

/// Catalog entries, each marked installed or not.
pub fn available(store: &Store) -> Result<Vec<CatalogKernel>, KernelError> {
    let catalog = catalog()?;
    let installed: Vec<String> = store
        .kernels()?
        .into_iter()
        .map(|row| row.name.to_string())
        .collect();
    Ok(catalog
        .kernels
        .values()
        .map(|entry| CatalogKernel {
            name: entry.name.clone(),
            description: entry.description.clone(),
            source: match &entry.source {
                KernelSource::Apt { package } => format!("apt {package}"),
                KernelSource::Url { url, .. } => url.clone(),
            },
            default: entry.name == catalog.default,
            installed: installed.contains(&entry.name),
        })
        .collect())
}

/// All installed kernels with the images using each.
pub fn list(store: &Store) -> Result<Vec<KernelInfo>, KernelError> {
    store
        .kernels()?
        .into_iter()
        .map(|row| {
            let images = store.images_using_kernel(row.id)?;
            Ok(row.to_info(images))
        })
        .collect()
}

/// One installed kernel.
pub fn show(store: &Store, name: &KernelName) -> Result<KernelInfo, KernelError> {
    let row = installed(store, name)?;
    let images = store.images_using_kernel(row.id)?;
    Ok(row.to_info(images))
}

fn installed(store: &Store, name: &KernelName) -> Result<KernelRow, KernelError> {
    store
        .kernel(name)?
        .ok_or_else(|| KernelError::NotInstalled {
            name: name.to_string(),
        })
}

/// Where kernels live.
pub fn kernels_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("kernels")
}

/// Installs catalog entry `name` (idempotent: an installed kernel is returned
/// as is). Downloads stay in the cache dir so a reinstall is fast.
pub fn pull(
    state: &AppState,
    name: &KernelName,
    progress: &ProgressSink,
) -> Result<KernelInfo, KernelError> {
    let _artifacts = state.artifacts_lock();
    if let Some(info) = existing(&state.store(), name)? {
        progress.stage("done", format!("kernel {name} is already installed"));
        return Ok(info);
    }
    let catalog = catalog()?;
    let entry = catalog
        .get(name.as_str())
        .ok_or_else(|| KernelError::NotInCatalog {
            name: name.to_string(),
            available: catalog
                .kernels
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
        })?;
    let paths = state.paths();
    let row =
        install::install_catalog_entry(&paths.state_dir, &paths.cache_dir, name, entry, progress)?;
    save(&mut state.store(), &row)
}

fn existing(store: &Store, name: &KernelName) -> Result<Option<KernelInfo>, KernelError> {
    match store.kernel(name)? {
        Some(row) => {
            let images = store.images_using_kernel(row.id)?;
            Ok(Some(row.to_info(images)))
        }
        None => Ok(None),
    }
}

/// Imports a kernel file (and optional modules tree) under `name`.
/// Re-importing under the same `source_label` replaces the kernel.
pub fn import(
    state: &AppState,
    name: &KernelName,
    kernel: &Path,
    modules: Option<&Path>,
    source_label: &str,
    progress: &ProgressSink,
) -> Result<KernelInfo, KernelError> {
    let _artifacts = state.artifacts_lock();
    if let Some(existing) = state.store().kernel(name)? {
        if existing.source != source_label {
            return Err(KernelError::Exists {
                name: name.to_string(),
                source_label: existing.source,
            });
        }
    }
    let row = install::install_files(
        &state.paths().state_dir,
        name,
        kernel,
        modules,
        source_label,
        progress,
    )?;
    save(&mut state.store(), &row)
}

/// Records an installed kernel; removes its directory if the row cannot be written.
fn save(store: &mut Store, row: &KernelRow) -> Result<KernelInfo, KernelError> {
    match store.upsert_kernel(row) {
        Ok(_) => Ok(
            existing(store, &row.name)?.ok_or_else(|| KernelError::NotInstalled {
                name: row.name.to_string(),
            })?,
        ),
        Err(error) => {
            let _ = fs_err::remove_dir_all(&row.dir);
            Err(error.into())
        }
    }
}

/// Deletes a kernel and its files; refused while an image uses it.
pub fn delete(state: &AppState, name: &KernelName) -> Result<KernelInfo, KernelError> {
    let _artifacts = state.artifacts_lock();
    delete_locked(state, name)
}

/// [`delete`] for callers already holding [`AppState::artifacts_lock`].
pub fn delete_locked(state: &AppState, name: &KernelName) -> Result<KernelInfo, KernelError> {
    let row = {
        let mut store = state.store();
        let row = installed(&store, name)?;
        let images = store.images_using_kernel(row.id)?;
        if !images.is_empty() {
            return Err(KernelError::InUse {
                name: name.to_string(),
                images: images
                    .iter()
                    .map(ImageName::as_str)
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        store.delete_kernel(row.id)?;
        row
    };
    install::remove_dir(&row.dir)?;
    Ok(row.to_info(Vec::new()))
}
