//! `PUT /boot-source`: kernel, initrd and command line (spec definition
//! `BootSource`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Body of `PUT /boot-source`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootSourceConfig {
    /// Host path of the (ELF vmlinux) kernel.
    pub kernel_image_path: PathBuf,
    /// Host path of the initrd.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initrd_path: Option<PathBuf>,
    /// Kernel command line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_args: Option<String>,
}
