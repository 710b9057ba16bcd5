//! `banger image prune`: removes the managed images no VM uses.
//!
//! A VM's snapshots live in the VM's own directory and boot the VM's image,
//! so "no VM uses it" covers them; images built from another image are full
//! copies and hold no reference to their base. Kept, with the reason: images
//! VMs use, registered (unmanaged) images (their files are the user's, so a
//! prune would give nothing back and only drop the registration), and the
//! `default_image_name` unless `all` (the next `vm create` would rebuild
//! it). Each removal goes through [`super::delete`] without force, which
//! checks again under the artifacts lock, so a VM created meanwhile keeps
//! its image: that image is reported as kept with the refusal as reason.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use banger_api::usage::{PruneKept, PruneReport, PruneRequest, Pruned};
use banger_api::{ImageName, VmName};

use super::{ImageError, delete, join, list, row, unused_own_kernel};
use crate::state::AppState;

/// What a prune would do with one image.
enum Verdict {
    Remove(Vec<PathBuf>),
    Keep(String),
}

fn allocated(path: &Path) -> u64 {
    // A directory that cannot be measured still goes; its size reads 0.
    banger_host::disk::tree_usage(path).map_or(0, |usage| usage.allocated_bytes)
}

/// Prunes (or, with `dry_run`, plans the prune of) unused images.
pub fn prune(state: &AppState, request: &PruneRequest) -> Result<PruneReport, ImageError> {
    let default = state.config().default_image_name.clone();
    let mut plan: Vec<(ImageName, Verdict)> = Vec::new();
    {
        let store = state.store();
        for image in list(&store)? {
            let verdict = if !image.used_by_vms.is_empty() {
                Verdict::Keep(format!(
                    "used by VMs {}",
                    join(image.used_by_vms.iter().map(VmName::as_str))
                ))
            } else if !image.managed {
                Verdict::Keep(
                    "registered, not managed: its files are yours, so pruning gives nothing back (`banger image delete` drops the registration)".to_owned(),
                )
            } else if image.name == default && !request.all {
                Verdict::Keep(
                    "the default image (default_image_name); `--all` removes it too".to_owned(),
                )
            } else {
                let image_row = row(&store, &image.name)?;
                let mut dirs: Vec<PathBuf> = image_row.dir.iter().cloned().collect();
                if let Some(kernel) = unused_own_kernel(&store, &image_row)? {
                    dirs.push(kernel.dir);
                }
                Verdict::Remove(dirs)
            };
            plan.push((image.name, verdict));
        }
    }
    let mut report = PruneReport {
        dry_run: request.dry_run,
        removed: Vec::new(),
        kept: Vec::new(),
        freed_bytes: 0,
    };
    for (name, verdict) in plan {
        match verdict {
            Verdict::Keep(reason) => report.kept.push(PruneKept {
                name: name.to_string(),
                reason,
            }),
            Verdict::Remove(dirs) => {
                let sizes: BTreeMap<String, u64> = dirs
                    .iter()
                    .map(|dir| (dir.display().to_string(), allocated(dir)))
                    .collect();
                let removed_files = if request.dry_run {
                    sizes.keys().cloned().collect()
                } else {
                    match delete(state, &name, false) {
                        Ok(deleted) => deleted.removed_files,
                        Err(error) => {
                            report.kept.push(PruneKept {
                                name: name.to_string(),
                                reason: crate::error::error_chain(&error),
                            });
                            continue;
                        }
                    }
                };
                let bytes = removed_files
                    .iter()
                    .filter_map(|file| sizes.get(file))
                    .sum();
                report.freed_bytes += bytes;
                report.removed.push(Pruned {
                    name: name.to_string(),
                    bytes,
                    removed_files,
                });
            }
        }
    }
    if !request.dry_run {
        // Also the leftovers of images deleted by an older banger, which
        // did not prune them.
        super::prune_grown_seeds(state);
    }
    Ok(report)
}
