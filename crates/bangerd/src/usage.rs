//! `GET /v1/usage` (`banger system df`): what banger holds on the host, per
//! VM, image, kernel and cache directory, in allocated bytes.
//!
//! The daemon owns these numbers because it owns the directories; clients
//! only print them. Sizes are read at request time (a few `stat`s per file),
//! never stored, so they cannot go stale.

use std::path::Path;

use banger_api::ErrorCode;
use banger_api::usage::{CacheUsage, ImageUsage, KernelUsage, UsageReport, VmUsage};
use banger_host::disk::{UsageError as SizeError, tree_usage};

use crate::images::{self, ImageError};
use crate::kernels::{self, KernelError};
use crate::state::AppState;
use crate::store::StoreError;
use crate::vms;

/// Failures of the usage report.
#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    /// The database could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Listing images failed.
    #[error(transparent)]
    Images(#[from] ImageError),
    /// Listing kernels failed.
    #[error(transparent)]
    Kernels(#[from] KernelError),
    /// A file or directory could not be measured.
    #[error(transparent)]
    Size(#[from] SizeError),
    /// The cache directory could not be listed.
    #[error("cannot list the cache directory {}", path.display())]
    Cache {
        /// The cache directory.
        path: std::path::PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl UsageError {
    /// The API error code.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Images(error) => error.code(),
            Self::Kernels(error) => error.code(),
            Self::Store(_) | Self::Size(_) | Self::Cache { .. } => ErrorCode::Internal,
        }
    }
}

fn allocated(path: &Path) -> Result<u64, SizeError> {
    tree_usage(path).map(|usage| usage.allocated_bytes)
}

/// The usage report.
pub fn report(state: &AppState) -> Result<UsageReport, UsageError> {
    let (vm_rows, image_infos, image_rows, kernel_infos) = {
        let store = state.store();
        let image_infos = images::list(&store)?;
        let image_rows = image_infos
            .iter()
            .map(|image| images::row(&store, &image.name))
            .collect::<Result<Vec<_>, _>>()?;
        (
            store.vms()?,
            image_infos,
            image_rows,
            kernels::list(&store)?,
        )
    };
    let mut vm_usage = Vec::with_capacity(vm_rows.len());
    for row in &vm_rows {
        vm_usage.push(VmUsage {
            name: row.name.clone(),
            disks_bytes: vms::disk_usage(&row.dir)
                .iter()
                .map(|disk| disk.allocated_bytes)
                .sum(),
            memory_bytes: allocated(&vms::memory_dir(&row.dir))?,
            snapshots_bytes: allocated(&vms::snapshot::snapshots_dir(&row.dir))?,
            total_bytes: allocated(&row.dir)?,
        });
    }
    let mut image_usage = Vec::with_capacity(image_infos.len());
    for (image, row) in image_infos.into_iter().zip(&image_rows) {
        let total_bytes = match row.dir.as_ref().filter(|_| row.managed) {
            Some(dir) => allocated(dir)?,
            None => 0,
        };
        image_usage.push(ImageUsage {
            name: image.name,
            managed: image.managed,
            total_bytes,
            used_by_vms: image.used_by_vms,
        });
    }
    let mut kernel_usage = Vec::with_capacity(kernel_infos.len());
    for kernel in kernel_infos {
        kernel_usage.push(KernelUsage {
            total_bytes: allocated(Path::new(&kernel.dir))?,
            name: kernel.name,
            used_by_images: kernel.used_by_images,
        });
    }
    let caches = caches(&state.paths().cache_dir)?;
    let total_bytes = vm_usage.iter().map(|vm| vm.total_bytes).sum::<u64>()
        + image_usage.iter().map(|i| i.total_bytes).sum::<u64>()
        + kernel_usage.iter().map(|k| k.total_bytes).sum::<u64>()
        + caches.iter().map(|c| c.total_bytes).sum::<u64>();
    Ok(UsageReport {
        vms: vm_usage,
        images: image_usage,
        kernels: kernel_usage,
        caches,
        total_bytes,
    })
}

/// Every directory directly under the cache dir (OCI blobs, downloads,
/// image-build package caches, grown work seeds, overlay templates...), by
/// name; a loose file there counts under its own name too.
fn caches(cache_dir: &Path) -> Result<Vec<CacheUsage>, UsageError> {
    let entries = match fs_err::read_dir(cache_dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(UsageError::Cache {
                path: cache_dir.to_owned(),
                source,
            });
        }
    };
    let mut caches = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| UsageError::Cache {
            path: cache_dir.to_owned(),
            source,
        })?;
        let path = entry.path();
        caches.push(CacheUsage {
            name: entry.file_name().to_string_lossy().into_owned(),
            total_bytes: allocated(&path)?,
            path: path.display().to_string(),
        });
    }
    caches.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(caches)
}
