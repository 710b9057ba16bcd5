//! The parts of the OCI image spec (and Docker's v2 schema 2, its
//! predecessor) that a pull reads: indexes, manifests, descriptors and the
//! image config. Unknown fields are ignored: these are other tools' formats.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;

/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Docker manifest list (the index of Docker's schema 2).
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image manifest, schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// Largest manifest, index or config document read (registries cap
/// manifests at 4 MiB; configs of real images are a few KiB).
pub const MAX_DOCUMENT_BYTES: u64 = 8 << 20;

/// A reference to content by digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// What the content is.
    #[serde(default)]
    pub media_type: String,
    /// Its digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// The platform of a manifest in an index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// Annotations (`org.opencontainers.image.ref.name` in layouts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

impl Descriptor {
    /// The value of annotation `key`.
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.as_ref()?.get(key).map(String::as_str)
    }
}

/// The platform a manifest is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    /// `amd64`, `arm64`, ...
    pub architecture: String,
    /// `linux`, ...
    pub os: String,
    /// `v8`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// An index or manifest list, or a manifest: what a manifest URL returns.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Document {
    /// The document's own media type, when it states one.
    #[serde(default)]
    pub media_type: Option<String>,
    /// An index's manifests.
    #[serde(default)]
    pub manifests: Option<Vec<Descriptor>>,
    /// A manifest's config.
    #[serde(default)]
    pub config: Option<Descriptor>,
    /// A manifest's layers, bottom first.
    #[serde(default)]
    pub layers: Option<Vec<Descriptor>>,
}

/// A manifest: the config and the layers of one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The config blob.
    pub config: Descriptor,
    /// Layers, bottom first.
    pub layers: Vec<Descriptor>,
}

/// The architecture banger's guests run.
pub const WANTED_ARCH: &str = "amd64";

impl Document {
    /// Whether this is an index (or manifest list).
    pub fn is_index(&self) -> bool {
        self.manifests.is_some()
            || matches!(self.media_type.as_deref(), Some(OCI_INDEX | DOCKER_LIST))
    }

    /// The manifest, if this is one.
    pub fn manifest(self) -> Option<Manifest> {
        Some(Manifest {
            config: self.config?,
            layers: self.layers?,
        })
    }

    /// From an index, the linux/amd64 manifest (the first one, as Docker
    /// picks it).
    pub fn pick_platform(&self) -> Option<&Descriptor> {
        self.manifests.as_ref()?.iter().find(|descriptor| {
            descriptor.platform.as_ref().is_some_and(|platform| {
                platform.os == "linux" && platform.architecture == WANTED_ARCH
            })
        })
    }

    /// The platforms an index offers, for an error message.
    pub fn platforms(&self) -> String {
        let names: Vec<String> = self
            .manifests
            .iter()
            .flatten()
            .map(|descriptor| match &descriptor.platform {
                Some(platform) => format!("{}/{}", platform.os, platform.architecture),
                None => "unknown".to_owned(),
            })
            .collect();
        if names.is_empty() {
            "none".to_owned()
        } else {
            names.join(", ")
        }
    }
}

/// The image config blob (only what banger records).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
pub struct ConfigBlob {
    /// The architecture the image is for.
    #[serde(default)]
    pub architecture: Option<String>,
    /// The OS it is for.
    #[serde(default)]
    pub os: Option<String>,
    /// The container defaults.
    #[serde(default)]
    pub config: Option<ContainerConfig>,
}

/// What a container runtime would start the image with.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ContainerConfig {
    /// `NAME=value` environment.
    #[serde(rename = "Env", default)]
    pub env: Option<Vec<String>>,
    /// Entrypoint argv.
    #[serde(rename = "Entrypoint", default)]
    pub entrypoint: Option<Vec<String>>,
    /// Default arguments.
    #[serde(rename = "Cmd", default)]
    pub cmd: Option<Vec<String>>,
    /// Working directory.
    #[serde(rename = "WorkingDir", default)]
    pub working_dir: Option<String>,
    /// User (name or uid, optionally `:group`).
    #[serde(rename = "User", default)]
    pub user: Option<String>,
}

/// Accept header for manifest requests: every manifest and index type.
pub fn manifest_accept() -> String {
    [OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST].join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_linux_amd64_from_an_index() {
        let digest = |c: char| format!("sha256:{}", c.to_string().repeat(64));
        let text = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[
            {{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":1,"platform":{{"architecture":"arm64","os":"linux","variant":"v8"}}}},
            {{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":2,"platform":{{"architecture":"amd64","os":"linux"}}}}]}}"#,
            digest('a'),
            digest('b')
        );
        let document: Document = serde_json::from_str(&text).unwrap();
        assert!(document.is_index());
        assert_eq!(document.pick_platform().unwrap().size, 2);
        assert_eq!(document.platforms(), "linux/arm64, linux/amd64");
    }

    #[test]
    fn reads_docker_config_fields() {
        let blob: ConfigBlob = serde_json::from_str(
            r#"{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/bin"],"Cmd":["sh"],"WorkingDir":"/w","User":"1000:1000","Labels":{}},"rootfs":{}}"#,
        )
        .unwrap();
        let config = blob.config.unwrap();
        assert_eq!(config.env.unwrap(), ["PATH=/bin"]);
        assert_eq!(config.user.as_deref(), Some("1000:1000"));
        assert_eq!(config.entrypoint, None);
    }
}
