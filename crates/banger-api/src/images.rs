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
    /// Where a pulled image came from and its container config (`image pull`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oci: Option<OciOrigin>,
    /// The pinned tools a provisioned image was built with (`image build`
    /// without `--minimal`); none for bare, registered or pulled images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provision: Option<ImageProvision>,
}

/// What provisioning put into an image (its `provision.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImageProvision {
    /// The docker engine and compose were added (`--docker`).
    pub docker: bool,
    /// The pinned tools, in manifest order.
    pub tools: Vec<ProvisionedTool>,
    /// `name=version` of the Debian packages provisioning asked for, as installed.
    pub debian: Vec<String>,
    /// The installed image it was built on (`image build --from-image`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<ImageBuildBase>,
}

/// The image a provisioned image was built on (`image build --from-image`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImageBuildBase {
    /// The base image's name.
    pub name: String,
    /// Its id in banger's store when it was used.
    pub id: i64,
    /// Its os-release `PRETTY_NAME`.
    pub os: String,
    /// The apt suite the packages came from (its `VERSION_CODENAME`).
    pub suite: String,
}

/// One pinned tool of a provisioned image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProvisionedTool {
    /// Tool name (`opencode`, `claude`, `pi`, `mise`, ...).
    pub name: String,
    /// The pinned version.
    pub version: String,
    /// Commands it puts in `/usr/local/bin`.
    pub commands: Vec<String>,
}

/// What an image pulled with `image pull` was made from: its source, digests
/// and the container config a runtime would start it with (recorded, not
/// applied: banger boots the image's init).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OciOrigin {
    /// The reference as given (`docker.io/library/alpine:3.20`, `oci:/dir:tag`, `docker-archive:/file.tar`).
    pub source: String,
    /// Digest of the manifest pulled (registries and OCI layouts; none for docker archives).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_digest: Option<String>,
    /// Digest of the image config (the image ID).
    pub config_digest: String,
    /// `NAME=value` environment.
    #[serde(default)]
    pub env: Vec<String>,
    /// Entrypoint argv.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// Default arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    /// Working directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// User (name or uid, optionally `:group`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// Body of `POST /v1/images/pull`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImagePullRequest {
    /// Name of the new image.
    pub name: ImageName,
    /// `[REGISTRY/]REPOSITORY[:TAG][@sha256:...]`, `docker-archive:/abs/path.tar` or `oci:/abs/dir[:TAG]`.
    pub reference: String,
    /// Kernel to boot (default: the catalog default, pulled if needed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_ref: Option<KernelName>,
    /// Largest layer in bytes, compressed and uncompressed (default 4 GiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_layer_bytes: Option<u64>,
    /// Largest total of the image's files in bytes (default 16 GiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_image_bytes: Option<u64>,
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
    /// Kernel to boot (default: the catalog default; a kernel of the
    /// kernel catalog is pulled if needed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_ref: Option<KernelName>,
    /// Build the bare image, without the pinned tools (`--minimal`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub minimal: bool,
    /// Add the docker engine and compose (`--docker`; not with `minimal`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub docker: bool,
    /// Provision this installed glibc Debian/Ubuntu image instead of
    /// building from nothing (`--from-image`; not with `suite` or `minimal`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_image: Option<ImageName>,
}

fn is_false(value: &bool) -> bool {
    !*value
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
            minimal: false,
            docker: false,
            from_image: None,
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
