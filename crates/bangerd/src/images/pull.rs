//! `image pull`: an OCI image (registry, docker archive or OCI layout)
//! flattened into a managed image.
//!
//! Everything is written into `<state>/images/.partial-<name>-<pid>/`
//! (the flattening's temporary files in its `work/`), made owner-only and
//! renamed to `<state>/images/<name>/` at the end; the row is written last.
//! A failure removes the partial directory; a daemon killed mid-pull leaves
//! it behind under its pid, and the next daemon start (or pull) removes
//! partial directories of processes that no longer run, and the blob
//! cache's stale temporary files (see `recover`).

use std::path::Path;

use banger_api::KernelName;
use banger_api::images::{ImageInfo, ImagePullRequest, OciOrigin};
use banger_image::image_build::DEFAULT_WORK_SEED_SIZE;
use banger_oci::cache::BlobCache;
use banger_oci::{ImportOptions, Limits, PullEvent, Source};

use super::{ImageError, images_dir, info, io, remove_tree};
use crate::kernels;
use crate::progress::ProgressSink;
use crate::state::AppState;
use crate::store::ImageRow;

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
}

fn short(digest: &banger_oci::Digest) -> String {
    format!("sha256:{}", &digest.hex()[..12])
}

/// Turns pull events into progress: one `layer i/n` stage per layer, so a
/// terminal can show a line per layer.
fn report(progress: &ProgressSink, count: &mut usize, event: PullEvent) {
    match event {
        PullEvent::Resolved {
            manifest_digest,
            layers,
        } => {
            *count = layers.len();
            let total: u64 = layers.iter().map(|(_, size)| size).sum();
            progress.stage(
                "resolve",
                format!(
                    "{} layers, {}{}",
                    layers.len(),
                    mib(total),
                    manifest_digest.map_or_else(String::new, |d| format!(", manifest {d}"))
                ),
            );
        }
        PullEvent::Cached {
            index,
            digest,
            size,
        } => progress.fraction(
            &format!("layer {}/{count}", index + 1),
            format!("{} {} already cached", short(&digest), mib(size)),
            size,
            Some(size),
        ),
        PullEvent::Download {
            index,
            digest,
            done,
            size,
        } => progress.fraction(
            &format!("layer {}/{count}", index + 1),
            format!("{} {} / {}", short(&digest), mib(done), mib(size)),
            done,
            Some(size),
        ),
        PullEvent::Apply { index, count } => {
            progress.stage("flatten", format!("applying layer {}/{count}", index + 1))
        }
        PullEvent::Write { file } => progress.stage("write", format!("writing {file}")),
    }
}

/// Pulls an OCI image into the managed store as image `request.name`.
pub fn pull(
    state: &AppState,
    request: &ImagePullRequest,
    progress: &ProgressSink,
) -> Result<ImageInfo, ImageError> {
    let name = request.name.clone();
    if state.store().image(&name)?.is_some() {
        return Err(ImageError::Exists { name });
    }
    let source = Source::parse(&request.reference)?;
    let kernel_name = match &request.kernel_ref {
        Some(reference) => reference.clone(),
        None => KernelName::parse(&kernels::catalog()?.default)?,
    };
    if state.store().kernel(&kernel_name)?.is_none() {
        if request.kernel_ref.is_some() {
            return Err(kernels::KernelError::NotInstalled {
                name: kernel_name.to_string(),
            }
            .into());
        }
        kernels::pull(state, &kernel_name, progress)?;
    }

    let paths = state.paths();
    let root = images_dir(&paths.state_dir);
    fs_err::create_dir_all(&root).map_err(io("create", &root))?;
    super::recover::remove_stale_partials(&root);
    let partial = root.join(format!(".partial-{name}-{}", std::process::id()));
    remove_tree(&partial)?;
    let work = partial.join("work");
    fs_err::create_dir_all(&work).map_err(io("create", &work))?;
    progress.stage("resolve", format!("pulling {source} as image {name}"));
    let cache = BlobCache::new(paths.cache_dir.join("oci"));
    let docker_config = banger_oci::auth::default_config_path();
    let options = ImportOptions {
        source: &source,
        cache: &cache,
        work_dir: &work,
        out_dir: &partial,
        docker_config: docker_config.as_deref(),
        insecure_registries: &state.config().insecure_registries,
        limits: Limits {
            max_layer_bytes: request
                .max_layer_bytes
                .unwrap_or(Limits::DEFAULT_MAX_LAYER_BYTES),
            max_image_bytes: request
                .max_image_bytes
                .unwrap_or(Limits::DEFAULT_MAX_IMAGE_BYTES),
            ..Limits::default()
        },
        work_seed_bytes: DEFAULT_WORK_SEED_SIZE,
    };
    let mut count = 0;
    let imported = banger_oci::import(&options, &mut |event| report(progress, &mut count, event));
    let fail = |error: ImageError| {
        let _ = fs_err::remove_dir_all(&partial);
        error
    };
    let imported = imported.map_err(|source| {
        fail(ImageError::Pull {
            name: name.to_string(),
            source: Box::new(source),
        })
    })?;
    remove_tree(&work).map_err(fail)?;
    // Published images are owner-only, like built ones.
    banger_host::disk::restrict_tree(&partial).map_err(|error| {
        fail(ImageError::Io {
            action: "make owner-only",
            path: error.path,
            source: error.source,
        })
    })?;

    let _artifacts = state.artifacts_lock();
    if state.store().image(&name)?.is_some() {
        return Err(fail(ImageError::Exists { name }));
    }
    let final_dir = root.join(name.as_str());
    remove_tree(&final_dir).map_err(fail)?;
    fs_err::rename(&partial, &final_dir)
        .map_err(|error| fail(io("rename into", &final_dir)(error)))?;
    let moved = |path: &Path| final_dir.join(path.file_name().unwrap_or_default());
    let config = imported.config;
    let timestamp = crate::store::unix_now();
    let mut store = state.store();
    let kernel = store
        .kernel(&kernel_name)?
        .ok_or_else(|| kernels::KernelError::NotInstalled {
            name: kernel_name.to_string(),
        })?;
    let row = ImageRow {
        id: 0,
        name: name.clone(),
        managed: true,
        dir: Some(final_dir.clone()),
        rootfs: moved(&imported.rootfs),
        work_seed: imported.work_seed.as_deref().map(moved),
        kernel_id: kernel.id,
        initrd: None,
        size_bytes: imported.rootfs_bytes + imported.work_seed_bytes,
        created_at: timestamp,
        updated_at: timestamp,
        oci: Some(OciOrigin {
            source: source.to_string(),
            manifest_digest: imported.manifest_digest.map(|digest| digest.to_string()),
            config_digest: imported.config_digest.to_string(),
            env: config.env.unwrap_or_default(),
            entrypoint: config.entrypoint,
            cmd: config.cmd,
            working_dir: config.working_dir.filter(|dir| !dir.is_empty()),
            user: config.user.filter(|user| !user.is_empty()),
        }),
    };
    if let Err(error) = store.upsert_image(&row) {
        let _ = fs_err::remove_dir_all(&final_dir);
        return Err(error.into());
    }
    progress.stage(
        "done",
        format!(
            "image {name} pulled: {} layers downloaded, {} from the cache",
            imported.downloaded_layers, imported.cached_layers
        ),
    );
    let saved = super::row(&store, &name)?;
    info(&store, &saved)
}

#[cfg(test)]
mod tests;
