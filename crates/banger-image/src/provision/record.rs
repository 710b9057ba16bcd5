//! `provision.json`: what an image was provisioned with, written next to
//! its files (and into the image at `/etc/banger/provision.json`) and read
//! by `banger image show`. A file rather than a database column, so images
//! built by older banger simply have none.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{ProvisionError, io};

/// The record's file name in an image directory.
pub const PROVISION_RECORD: &str = "provision.json";

/// What an image was provisioned with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvisionRecord {
    /// The manifest schema.
    pub schema: u32,
    /// Whether docker was added.
    pub docker: bool,
    /// The Debian packages provisioning asked for.
    pub debian_packages: Vec<String>,
    /// The pinned tools.
    pub tools: Vec<ToolRecord>,
    /// `name=version` of the requested Debian packages as installed.
    #[serde(default)]
    pub installed_debian: Vec<String>,
    /// The installed image it was built on (`image build --from-image`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<BaseRecord>,
}

/// The image a provisioned image was built on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaseRecord {
    /// The base image's name.
    pub name: String,
    /// Its id in banger's store when it was used.
    pub id: i64,
    /// Its os-release `PRETTY_NAME`.
    pub os: String,
    /// The apt suite used (`VERSION_CODENAME`).
    pub suite: String,
}

/// One pinned tool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolRecord {
    /// Tool name.
    pub name: String,
    /// Pinned version.
    pub version: String,
    /// Commands it puts in `/usr/local/bin`.
    pub commands: Vec<String>,
    /// How many npm tarballs it took.
    pub packages: usize,
}

/// Writes `record` as `<dir>/provision.json`.
pub fn write_record(dir: &Path, record: &ProvisionRecord) -> Result<PathBuf, ProvisionError> {
    let path = dir.join(PROVISION_RECORD);
    let text = serde_json::to_string_pretty(record).map_err(|source| ProvisionError::Record {
        path: path.clone(),
        source,
    })?;
    fs_err::write(&path, text + "\n").map_err(io("write", &path))?;
    Ok(path)
}

/// Reads `<dir>/provision.json`; None when the image has none (a minimal
/// image, or one not built by banger).
pub fn read_record(dir: &Path) -> Result<Option<ProvisionRecord>, ProvisionError> {
    let path = dir.join(PROVISION_RECORD);
    let text = match fs_err::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(io("read", &path)(error)),
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|source| ProvisionError::Record { path, source })
}
