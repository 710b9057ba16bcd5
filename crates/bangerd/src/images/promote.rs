//! `image promote`: copy an unmanaged image's files into the managed store,
//! verify the copies, and switch the image over to them.

use std::io::Read;
use std::path::{Path, PathBuf};

use banger_api::ImageName;
use banger_api::images::ImageInfo;
use banger_host::disk::validate::validate_ext4_image;
use sha2::{Digest, Sha256};

use super::{ImageError, images_dir, info, io, remove_tree};
use crate::progress::ProgressSink;
use crate::state::AppState;

/// Promotes an unmanaged image. Promoting a managed image is a no-op.
pub fn promote(
    state: &AppState,
    name: &ImageName,
    progress: &ProgressSink,
) -> Result<ImageInfo, ImageError> {
    let _artifacts = state.artifacts_lock();
    let mut row = super::row(&state.store(), name)?;
    if row.managed {
        progress.stage("done", format!("image {name} is already managed"));
        return info(&state.store(), &row);
    }
    validate_ext4_image(&row.rootfs).map_err(|source| ImageError::Invalid {
        role: "rootfs",
        source,
    })?;
    if let Some(seed) = &row.work_seed {
        validate_ext4_image(seed).map_err(|source| ImageError::Invalid {
            role: "work seed",
            source,
        })?;
    }
    let root = images_dir(&state.paths().state_dir);
    fs_err::create_dir_all(&root).map_err(io("create", &root))?;
    let partial = root.join(format!(".partial-{name}-{}", std::process::id()));
    remove_tree(&partial)?;
    fs_err::create_dir(&partial).map_err(io("create", &partial))?;
    let copied = copy_all(
        &row.rootfs,
        row.work_seed.as_deref(),
        row.initrd.as_deref(),
        &partial,
        progress,
    );
    let (rootfs, work_seed, initrd) = match copied {
        Ok(files) => files,
        Err(error) => {
            let _ = fs_err::remove_dir_all(&partial);
            return Err(error);
        }
    };
    // Files from the build cache or the registered originals keep their
    // modes; the published image is owner-only.
    if let Err(error) = banger_host::disk::restrict_tree(&partial) {
        let _ = fs_err::remove_dir_all(&partial);
        return Err(ImageError::Io {
            action: "make owner-only",
            path: error.path,
            source: error.source,
        });
    }
    let final_dir = root.join(name.as_str());
    remove_tree(&final_dir)?;
    if let Err(error) = fs_err::rename(&partial, &final_dir) {
        let _ = fs_err::remove_dir_all(&partial);
        return Err(io("rename into", &final_dir)(error));
    }
    let moved = |path: PathBuf| final_dir.join(path.file_name().unwrap_or_default());
    row.managed = true;
    row.dir = Some(final_dir.clone());
    row.rootfs = moved(rootfs);
    row.work_seed = work_seed.map(moved);
    row.initrd = initrd.map(moved);
    row.updated_at = crate::store::unix_now();
    let mut store = state.store();
    if let Err(error) = store.upsert_image(&row) {
        let _ = fs_err::remove_dir_all(&final_dir);
        return Err(error.into());
    }
    progress.stage(
        "done",
        format!("image {name} is now managed in {}", final_dir.display()),
    );
    info(&store, &row)
}

type Copied = (PathBuf, Option<PathBuf>, Option<PathBuf>);

fn copy_all(
    rootfs: &Path,
    work_seed: Option<&Path>,
    initrd: Option<&Path>,
    dir: &Path,
    progress: &ProgressSink,
) -> Result<Copied, ImageError> {
    let rootfs = copy_verified(rootfs, &dir.join("rootfs.ext4"), progress)?;
    let work_seed = work_seed
        .map(|seed| copy_verified(seed, &dir.join("work-seed.ext4"), progress))
        .transpose()?;
    let initrd = initrd
        .map(|initrd| copy_verified(initrd, &dir.join("initrd.img"), progress))
        .transpose()?;
    Ok((rootfs, work_seed, initrd))
}

/// Sparse-copies `source` to `dest` and checks both hash the same.
fn copy_verified(
    source: &Path,
    dest: &Path,
    progress: &ProgressSink,
) -> Result<PathBuf, ImageError> {
    progress.stage("copy", format!("copying {}", source.display()));
    banger_host::disk::clone::clone_file(source, dest).map_err(|error| ImageError::Io {
        action: "copy",
        path: source.to_owned(),
        source: std::io::Error::other(error),
    })?;
    progress.stage(
        "verify",
        format!("verifying the copy of {}", source.display()),
    );
    if digest(source)? != digest(dest)? {
        return Err(ImageError::VerifyFailed {
            source_path: source.to_owned(),
        });
    }
    Ok(dest.to_owned())
}

fn digest(path: &Path) -> Result<Vec<u8>, ImageError> {
    let mut file = fs_err::File::open(path).map_err(io("read", path))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let read = file.read(&mut buffer).map_err(io("read", path))?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(hasher.finalize().to_vec())
}
