//! `banger kernel prune`: removes the installed kernels no image boots.
//!
//! VMs boot their image's kernel, so a kernel no image uses is used by
//! nothing. Kept, with the reason: kernels images use, and the catalog's
//! default kernel unless `all` (every image build and `image register`
//! without `--kernel` needs it). The whole prune holds the artifacts lock,
//! so no image can start using a kernel between the check and the removal.

use banger_api::ImageName;
use banger_api::usage::{PruneKept, PruneReport, PruneRequest, Pruned};

use super::{KernelError, catalog, delete_locked, list};
use crate::state::AppState;

/// Prunes (or, with `dry_run`, plans the prune of) unused kernels.
pub fn prune(state: &AppState, request: &PruneRequest) -> Result<PruneReport, KernelError> {
    let default = catalog()?.default;
    let _artifacts = state.artifacts_lock();
    let kernels = list(&state.store())?;
    let mut report = PruneReport {
        dry_run: request.dry_run,
        removed: Vec::new(),
        kept: Vec::new(),
        freed_bytes: 0,
    };
    for kernel in kernels {
        let reason = if !kernel.used_by_images.is_empty() {
            Some(format!(
                "used by images {}",
                kernel
                    .used_by_images
                    .iter()
                    .map(ImageName::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        } else if kernel.name.as_str() == default && !request.all {
            Some(
                "the catalog's default kernel, which image builds use; `--all` removes it too"
                    .to_owned(),
            )
        } else {
            None
        };
        if let Some(reason) = reason {
            report.kept.push(PruneKept {
                name: kernel.name.to_string(),
                reason,
            });
            continue;
        }
        // A directory that cannot be measured still goes; its size reads 0.
        let bytes = banger_host::disk::tree_usage(std::path::Path::new(&kernel.dir))
            .map_or(0, |usage| usage.allocated_bytes);
        if !request.dry_run
            && let Err(error) = delete_locked(state, &kernel.name)
        {
            report.kept.push(PruneKept {
                name: kernel.name.to_string(),
                reason: crate::error::error_chain(&error),
            });
            continue;
        }
        report.freed_bytes += bytes;
        report.removed.push(Pruned {
            name: kernel.name.to_string(),
            bytes,
            removed_files: vec![kernel.dir],
        });
    }
    Ok(report)
}
