//! Types of the `/v1/kernels` resource: installed kernels and the catalog.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{ImageName, KernelName};

/// An installed kernel with its boot artifacts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KernelInfo {
    /// Kernel name (catalog entry name, or the name given to `kernel import`).
    pub name: KernelName,
    /// The kernel release (`uname -r`).
    pub version: String,
    /// Where it came from: `catalog:<entry>` or `import`.
    pub source: String,
    /// Directory holding its artifacts.
    pub dir: String,
    /// Compressed kernel (bzImage), when the source provided one.
    pub bzimage: Option<String>,
    /// ELF vmlinux (Firecracker boots this).
    pub vmlinux: Option<String>,
    /// The banger initramfs built for this kernel.
    pub initramfs: String,
    /// Read-only ext4 disk with the modules tree, when the kernel has modules.
    pub modules_disk: Option<String>,
    /// Total bytes of its artifacts.
    pub size_bytes: u64,
    /// Unix seconds when it was installed.
    pub created_at: i64,
    /// Images that use it.
    pub used_by_images: Vec<ImageName>,
}

/// A kernel the catalog offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CatalogKernel {
    /// Entry name; `kernel pull NAME` installs it.
    pub name: String,
    /// What it is.
    pub description: String,
    /// How it is obtained, e.g. `apt linux-image-cloud-amd64` or a URL.
    pub source: String,
    /// Whether it is the catalog's default.
    pub default: bool,
    /// Whether a kernel of this name is installed.
    pub installed: bool,
}

/// Body of `POST /v1/kernels/pull`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KernelPullRequest {
    /// Catalog entry to install.
    pub name: KernelName,
}

/// Body of `POST /v1/kernels/import`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KernelImportRequest {
    /// Name to register it under.
    pub name: KernelName,
    /// Absolute path of a bzImage or ELF vmlinux on the host.
    pub kernel: String,
    /// Absolute path of its modules tree (`lib/modules/<version>`), if it has modules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modules: Option<String>,
}
