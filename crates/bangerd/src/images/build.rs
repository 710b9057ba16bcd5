//! `image build`: a Debian image from Debian packages, as a managed image,
//! provisioned with the pinned agent tools (banger_image::provision) unless
//! the request asks for the bare (`minimal`) image. The provisioning record
//! goes next to the image's files as `provision.json`, read back by
//! `image show`.

use std::path::PathBuf;

use banger_api::images::{
    ImageBuildBase, ImageBuildRequest, ImageInfo, ImageProvision, ProvisionedTool,
};
use banger_api::{ImageName, KernelName};
use banger_image::image_build::base::{BaseImage, inspect};
use banger_image::image_build::{ImageBuildSpec, build_debian_image};
use banger_image::provision::catalog::{CatalogBase, catalog_image};
use banger_image::provision::{ProvisionSpec, read_record, write_record};

use super::{ImageError, absolute, images_dir, info, io, remove_tree};
use crate::kernels;
use crate::progress::ProgressSink;
use crate::state::AppState;
use crate::store::ImageRow;

/// Where the build log of image `name` goes; it survives failed builds.
pub fn build_log(state_dir: &std::path::Path, name: &ImageName) -> PathBuf {
    state_dir
        .join("logs")
        .join(format!("image-build-{name}.log"))
}

/// What a create builds when no image exists yet and `name` (the config's
/// `default_image_name`) is missing: the image catalog's recipe of that
/// name when it has a Debian one (so `debian-bookworm-minimal` gives the
/// bare image, `debian-bookworm` the provisioned one), else a provisioned
/// Debian image of the default suite under that name.
pub fn default_image_request(name: &ImageName) -> ImageBuildRequest {
    let Ok(entry) = catalog_image(name.as_str()) else {
        return ImageBuildRequest::new(name.clone());
    };
    let CatalogBase::Suite(suite) = entry.base else {
        // An OCI entry is pulled, not built: build the Debian default.
        return ImageBuildRequest::new(name.clone());
    };
    ImageBuildRequest {
        suite: Some(suite),
        kernel_ref: KernelName::parse(&entry.kernel).ok(),
        minimal: !entry.provision,
        docker: entry.docker,
        ..ImageBuildRequest::new(name.clone())
    }
}

/// Builds a Debian image into the managed store, pulling its kernel if needed.
pub fn build(
    state: &AppState,
    request: &ImageBuildRequest,
    progress: &ProgressSink,
) -> Result<ImageInfo, ImageError> {
    let name = request.name.clone();
    if state.store().image(&name)?.is_some() {
        return Err(ImageError::Exists { name });
    }
    let kernel_name = match &request.kernel_ref {
        Some(reference) => reference.clone(),
        None => {
            // The catalog file is text: its default is parsed here.
            let catalog = kernels::catalog()?;
            KernelName::parse(&catalog.default)?
        }
    };
    if request.minimal && request.docker {
        return Err(ImageError::MinimalWithDocker);
    }
    if request.from_image.is_some() {
        if request.minimal {
            return Err(ImageError::FromImageConflict { option: "minimal" });
        }
        if request.suite.is_some() {
            return Err(ImageError::FromImageConflict { option: "suite" });
        }
    }
    let existing_kernel = state.store().kernel(&kernel_name)?;
    if existing_kernel.is_none() {
        // A named kernel is pulled only when the kernel catalog has it
        // (image catalog entries name theirs); anything else must be
        // installed first.
        let in_catalog = kernels::catalog()?
            .kernels
            .contains_key(kernel_name.as_str());
        if request.kernel_ref.is_some() && !in_catalog {
            return Err(kernels::KernelError::NotInstalled {
                name: kernel_name.to_string(),
            }
            .into());
        }
        kernels::pull(state, &kernel_name, progress)?;
    }
    let spec = ImageBuildSpec {
        suite: request
            .suite
            .clone()
            .unwrap_or_else(|| ImageBuildSpec::default().suite),
        extra_packages_file: request
            .packages_file
            .as_deref()
            .map(|raw| absolute("packages file", raw))
            .transpose()?,
        rootfs_size_bytes: request.size_bytes,
        provision: (!request.minimal).then(|| ProvisionSpec {
            docker: request.docker,
            // Tests point builds at a local registry.
            registry: std::env::var("BANGER_NPM_REGISTRY")
                .ok()
                .filter(|value| !value.is_empty()),
        }),
        ..ImageBuildSpec::default()
    };

    let _artifacts = state.artifacts_lock();
    // Under the artifacts lock, so the base cannot be deleted mid-build.
    let spec = ImageBuildSpec {
        base: request
            .from_image
            .as_ref()
            .map(|base| base_image(state, base))
            .transpose()?,
        ..spec
    };
    let paths = state.paths();
    let root = images_dir(&paths.state_dir);
    fs_err::create_dir_all(&root).map_err(io("create", &root))?;
    let partial = root.join(format!(".partial-{name}-{}", std::process::id()));
    remove_tree(&partial)?;
    fs_err::create_dir(&partial).map_err(io("create", &partial))?;
    let log = build_log(&paths.state_dir, &name);
    if let Some(parent) = log.parent() {
        fs_err::create_dir_all(parent).map_err(io("create", parent))?;
    }
    progress.stage(
        "build",
        if let Some(base) = &spec.base {
            format!(
                "provisioning image {} as {name} with the pinned agent tools; this usually takes 4 to 10 minutes, less with a warm cache (log: {})",
                base.name,
                log.display()
            )
        } else if spec.provision.is_some() {
            format!(
                "building Debian {} image {name} with the pinned agent tools; this usually takes 4 to 10 minutes, less with a warm cache (log: {})",
                spec.suite,
                log.display()
            )
        } else {
            format!(
                "building Debian {} image {name}; this usually takes 2 to 5 minutes (log: {})",
                spec.suite,
                log.display()
            )
        },
    );
    let built = build_debian_image(
        &spec,
        &partial,
        &paths.cache_dir.join("image-build"),
        &log,
        &mut |stage, message| progress.stage(stage, message),
    );
    let built = match built {
        Ok(built) => built,
        Err(source) => {
            let _ = fs_err::remove_dir_all(&partial);
            return Err(ImageError::Build {
                name: name.to_string(),
                log,
                source: Box::new(source),
            });
        }
    };
    if let Some(record) = &built.provision
        && let Err(error) = write_record(&partial, record)
    {
        let _ = fs_err::remove_dir_all(&partial);
        return Err(ImageError::Build {
            name: name.to_string(),
            log,
            source: Box::new(banger_image::image_build::ImageBuildError::Provision {
                source: error,
            }),
        });
    }
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
    let file_name = |path: &PathBuf, fallback: &str| {
        final_dir.join(
            path.file_name()
                .map_or_else(|| fallback.into(), |name| name.to_os_string()),
        )
    };
    let rootfs = file_name(&built.rootfs, "rootfs.ext4");
    let work_seed = file_name(&built.work_seed, "work-seed.ext4");
    let mut store = state.store();
    let kernel = store
        .kernel(&kernel_name)?
        .ok_or_else(|| kernels::KernelError::NotInstalled {
            name: kernel_name.to_string(),
        })?;
    let timestamp = crate::store::unix_now();
    let row = ImageRow {
        id: 0,
        name: name.clone(),
        managed: true,
        dir: Some(final_dir.clone()),
        size_bytes: built.rootfs_bytes + built.work_seed_bytes,
        rootfs,
        work_seed: Some(work_seed),
        kernel_id: kernel.id,
        initrd: None,
        created_at: timestamp,
        updated_at: timestamp,
        oci: None,
    };
    if let Err(error) = store.upsert_image(&row) {
        let _ = fs_err::remove_dir_all(&final_dir);
        return Err(error.into());
    }
    progress.stage(
        "done",
        format!("image {name} built in {:.0?}", built.elapsed),
    );
    let saved = super::row(&store, &name)?;
    info(&store, &saved)
}

/// The installed image `name` as a build base, checked (with debugfs) to be
/// a system provisioning supports, so a refusal comes before any work.
fn base_image(state: &AppState, name: &ImageName) -> Result<BaseImage, ImageError> {
    let row = super::row(&state.store(), name)?;
    let base = BaseImage {
        name: name.to_string(),
        id: row.id,
        rootfs: row.rootfs,
        work_seed: row.work_seed,
    };
    inspect(&base).map_err(|source| ImageError::BaseUnsupported {
        name: name.to_string(),
        source,
    })?;
    Ok(base)
}

/// The provisioning record of a managed image (`<dir>/provision.json`), for
/// `image show`; None for bare, registered or pulled images. A damaged
/// record is logged and shown as none rather than failing every listing.
pub(super) fn provision_info(row: &ImageRow) -> Option<ImageProvision> {
    let dir = row.dir.as_ref().filter(|_| row.managed)?;
    match read_record(dir) {
        Ok(record) => record.map(|record| ImageProvision {
            docker: record.docker,
            tools: record
                .tools
                .into_iter()
                .map(|tool| ProvisionedTool {
                    name: tool.name,
                    version: tool.version,
                    commands: tool.commands,
                })
                .collect(),
            debian: record.installed_debian,
            base: record.base.map(|base| ImageBuildBase {
                name: base.name,
                id: base.id,
                os: base.os,
                suite: base.suite,
            }),
        }),
        Err(error) => {
            tracing::warn!(image = %row.name, error = %crate::error::error_chain(&error), "unreadable provisioning record");
            None
        }
    }
}
