//! Types of the `/v1/images` resource: managed and registered images.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{ImageName, KernelName, VmName};

/// A registered image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImageInfo {
    /// Image name.
    pub name: ImageName,
    /// Managed images live in banger's store and are deleted with the image;
    /// unmanaged ones point at the user's files, which banger never deletes.
    pub managed: bool,
    /// The read-only base filesystem (ext4) shared by its VMs.
    pub rootfs: String,
    /// The prepared `/root` each VM's work disk is cloned from.
    pub work_seed: Option<String>,
    /// The kernel it boots.
    pub kernel: KernelName,
    /// A custom initrd replacing the kernel's banger initramfs, if any.
    pub initrd: Option<String>,
    /// Bytes of its files (apparent size).
    pub size_bytes: u64,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
    /// VMs created from it.
    pub used_by_vms: Vec<VmName>,
}

/// Body of `POST /v1/images/register`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImageRegisterRequest {
    /// Image name; registering an existing unmanaged name updates it.
    pub name: ImageName,
    /// Absolute path of the ext4 root filesystem.
    pub rootfs: String,
    /// Absolute path of an ext4 work seed (`/root`); without one, VMs get an empty work disk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub work_seed: Option<String>,
    /// Absolute path of a kernel file to import for this image (kernel named like the image).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<String>,
    /// Name of an installed kernel to boot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_ref: Option<KernelName>,
    /// Absolute path of a custom initrd (must follow banger's boot chain).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initrd: Option<String>,
    /// Absolute path of the modules tree for `kernel`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modules: Option<String>,
}

/// Body of `POST /v1/images/build`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImageBuildRequest {
    /// Image name.
    pub name: ImageName,
    /// Debian suite, e.g. `bookworm` (the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suite: Option<String>,
    /// Absolute path of a file listing extra packages, one per line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packages_file: Option<String>,
    /// Size of rootfs.ext4 in bytes (default: fitted to the content).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
    /// Kernel to boot (default: the catalog default, pulled if needed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_ref: Option<KernelName>,
}

impl ImageBuildRequest {
    /// A request for image `name` with every option at its default.
    pub fn new(name: ImageName) -> Self {
        Self {
            name,
            suite: None,
            packages_file: None,
            size_bytes: None,
            kernel_ref: None,
        }
    }
}

/// Reply of `DELETE /v1/images/{name}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImageDeleted {
    /// The image as it was.
    pub image: ImageInfo,
    /// Files removed (managed images only).
    pub removed_files: Vec<String>,
    /// VMs that can no longer start because their base image is gone (`--force`).
    pub broken_vms: Vec<VmName>,
}
