//! What a daemon killed in the middle of an image operation left behind,
//! removed when the next daemon starts: the `.partial-<name>-<pid>`
//! directories of builds, pulls and promotions whose process no longer runs,
//! and the OCI blob cache's temporary downloads. No row points at either
//! (rows are written after the rename), so nothing recorded is touched.

use std::path::Path;

use banger_config::Paths;
use banger_oci::cache::BlobCache;

use super::images_dir;

/// Removes the debris of image operations of processes that no longer run.
pub fn recover(paths: &Paths) {
    remove_stale_partials(&images_dir(&paths.state_dir));
    BlobCache::new(paths.cache_dir.join("oci")).clean_stale_temps();
}

/// Removes `.partial-*-<pid>` directories of processes that no longer run.
pub(super) fn remove_stale_partials(root: &Path) {
    let Ok(entries) = fs_err::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(rest) = name.strip_prefix(".partial-") else {
            continue;
        };
        let pid = rest
            .rsplit('-')
            .next()
            .and_then(|pid| pid.parse::<u32>().ok());
        let stale =
            pid.is_some_and(|pid| pid != std::process::id() && !banger_host::process::alive(pid));
        if stale {
            tracing::info!(dir = %entry.path().display(), "removing the partial image of a stopped daemon");
            if let Err(error) = fs_err::remove_dir_all(entry.path()) {
                tracing::warn!(error = %error, "cannot remove a partial image");
            }
        }
    }
}
