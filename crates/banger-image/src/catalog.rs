//! The kernel catalog: which guest kernels banger knows how to obtain.
//!
//! `assets/kernel-catalog.toml` (compiled in, see [`builtin_catalog`]) lists
//! kernels by name. Each entry has a source: `apt` (a Debian package fetched with
//! [`crate::kernel::fetch_debian_kernel`], the default and the only kind usable on
//! hosts that reach nothing but Debian mirrors) or `url` (a file downloaded over
//! HTTPS and verified against a pinned sha256, for hosts with internet, e.g.
//! Firecracker's CI kernels). The file is parsed strictly: unknown keys, a
//! missing field for the chosen source or a malformed sha256 are errors naming
//! the entry and the field. Format documentation: `docs/kernel-catalog.md`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

/// The catalog shipped with banger.
pub const BUILTIN_CATALOG: &str = include_str!("../../../assets/kernel-catalog.toml");

/// The only catalog format version this code reads.
pub const CATALOG_VERSION: u32 = 1;

/// Why a catalog could not be read.
#[derive(Debug, Error)]
pub enum CatalogError {
    /// Reading the file failed.
    #[error("{path}")]
    Io {
        /// Catalog file.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for the catalog schema.
    #[error("{origin}")]
    Toml {
        /// Where the text came from.
        origin: String,
        /// Parser error (includes line and column).
        source: toml::de::Error,
    },
    /// An entry is semantically wrong.
    #[error("{origin}: kernel {name:?}: {field}: {reason}")]
    Entry {
        /// Where the text came from.
        origin: String,
        /// Entry name.
        name: String,
        /// Offending field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A file-level problem (version, default).
    #[error("{origin}: {reason}")]
    Catalog {
        /// Where the text came from.
        origin: String,
        /// What is wrong.
        reason: String,
    },
}

/// What kind of kernel file a `url` entry points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KernelFormat {
    /// Compressed x86 bzImage (QEMU boots it; vmlinux is extracted for Firecracker).
    Bzimage,
    /// Uncompressed ELF vmlinux (Firecracker boots it directly).
    Vmlinux,
}

/// Where a kernel comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelSource {
    /// A Debian package (metapackage or concrete), fetched with apt.
    Apt {
        /// Package name.
        package: String,
    },
    /// A single file downloaded over HTTPS.
    Url {
        /// `https://` URL (`file://` and loopback `http://` for local mirrors).
        url: String,
        /// Lowercase hex sha256 of the file.
        sha256: String,
        /// File format.
        format: KernelFormat,
        /// `uname -r` of the kernel, needed to build a matching initramfs.
        version: String,
    },
}

/// One catalog entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogEntry {
    /// Entry name (the table key).
    pub name: String,
    /// Human description.
    pub description: String,
    /// Guest architecture (`x86_64`).
    pub arch: String,
    /// How to obtain it.
    pub source: KernelSource,
}

/// A parsed catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelCatalog {
    /// Name of the default entry.
    pub default: String,
    /// Entries by name.
    pub kernels: BTreeMap<String, CatalogEntry>,
}

impl KernelCatalog {
    /// Looks an entry up by name.
    pub fn get(&self, name: &str) -> Option<&CatalogEntry> {
        self.kernels.get(name)
    }

    /// The default entry.
    pub fn default_entry(&self) -> Option<&CatalogEntry> {
        self.kernels.get(&self.default)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCatalog {
    version: u32,
    default: String,
    #[serde(default)]
    kernel: BTreeMap<String, RawEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    source: String,
    #[serde(default)]
    description: String,
    arch: String,
    package: Option<String>,
    url: Option<String>,
    sha256: Option<String>,
    format: Option<KernelFormat>,
    version: Option<String>,
}

/// Parses catalog text; `origin` (a path or `"builtin"`) is used in errors.
pub fn parse_catalog(text: &str, origin: &str) -> Result<KernelCatalog, CatalogError> {
    let raw: RawCatalog = toml::from_str(text).map_err(|source| CatalogError::Toml {
        origin: origin.to_owned(),
        source,
    })?;
    if raw.version != CATALOG_VERSION {
        return Err(CatalogError::Catalog {
            origin: origin.to_owned(),
            reason: format!(
                "unsupported catalog version {} (this banger reads {CATALOG_VERSION})",
                raw.version
            ),
        });
    }
    let mut kernels = BTreeMap::new();
    for (name, e) in raw.kernel {
        let err = |field: &'static str, reason: &str| CatalogError::Entry {
            origin: origin.to_owned(),
            name: name.clone(),
            field,
            reason: reason.to_owned(),
        };
        let name_ok = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !name_ok {
            return Err(err("name", "use lowercase letters, digits and '-'"));
        }
        if e.arch != "x86_64" && e.arch != "aarch64" {
            return Err(err("arch", "must be x86_64 or aarch64"));
        }
        let source = match e.source.as_str() {
            "apt" => {
                if e.url.is_some()
                    || e.sha256.is_some()
                    || e.format.is_some()
                    || e.version.is_some()
                {
                    return Err(err("source", "apt entries take only `package`"));
                }
                let package = e
                    .package
                    .ok_or_else(|| err("package", "required for source = \"apt\""))?;
                crate::kernel::validate_package_name(&package)
                    .map_err(|x| err("package", &x.to_string()))?;
                KernelSource::Apt { package }
            }
            "url" => {
                if e.package.is_some() {
                    return Err(err("package", "only for source = \"apt\""));
                }
                let url = e
                    .url
                    .ok_or_else(|| err("url", "required for source = \"url\""))?;
                if !crate::download::is_allowed_url(&url) || url.contains(char::is_whitespace) {
                    return Err(err(
                        "url",
                        "must be an https:// URL (or file:// / loopback http:// for local mirrors)",
                    ));
                }
                let sha256 = e
                    .sha256
                    .ok_or_else(|| err("sha256", "required for source = \"url\""))?;
                if sha256.len() != 64
                    || !sha256
                        .chars()
                        .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
                {
                    return Err(err("sha256", "must be 64 lowercase hex digits"));
                }
                let format = e
                    .format
                    .ok_or_else(|| err("format", "required for source = \"url\""))?;
                let version = e
                    .version
                    .ok_or_else(|| err("version", "required for source = \"url\""))?;
                KernelSource::Url {
                    url,
                    sha256,
                    format,
                    version,
                }
            }
            _ => return Err(err("source", "must be \"apt\" or \"url\"")),
        };
        kernels.insert(
            name.clone(),
            CatalogEntry {
                name,
                description: e.description,
                arch: e.arch,
                source,
            },
        );
    }
    if !kernels.contains_key(&raw.default) {
        return Err(CatalogError::Catalog {
            origin: origin.to_owned(),
            reason: format!("default kernel {:?} is not in the catalog", raw.default),
        });
    }
    Ok(KernelCatalog {
        default: raw.default,
        kernels,
    })
}

/// Reads and parses a catalog file.
pub fn load_catalog(path: &Path) -> Result<KernelCatalog, CatalogError> {
    let text = fs_err::read_to_string(path).map_err(|source| CatalogError::Io {
        path: path.to_owned(),
        source,
    })?;
    parse_catalog(&text, &path.display().to_string())
}

/// The catalog compiled into banger (`assets/kernel-catalog.toml`).
pub fn builtin_catalog() -> Result<KernelCatalog, CatalogError> {
    parse_catalog(BUILTIN_CATALOG, "builtin kernel-catalog.toml")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
version = 1
default = "debian-cloud-amd64"

[kernel.debian-cloud-amd64]
source = "apt"
package = "linux-image-cloud-amd64"
arch = "x86_64"
description = "Debian cloud kernel"

[kernel.fc-5-10]
source = "url"
url = "https://example.org/vmlinux-5.10"
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
format = "vmlinux"
version = "5.10.204"
arch = "x86_64"
"#;

    #[test]
    fn builtin_catalog_parses_and_has_debian_default() {
        let cat = builtin_catalog().unwrap();
        let entry = cat.default_entry().unwrap();
        assert_eq!(entry.name, "debian-cloud-amd64");
        assert_eq!(
            entry.source,
            KernelSource::Apt {
                package: "linux-image-cloud-amd64".into()
            }
        );
    }

    #[test]
    fn builtin_catalog_has_a_6_12_kernel_from_backports() {
        let cat = builtin_catalog().unwrap();
        let entry = cat.get("generic-6-12").unwrap();
        assert_eq!(
            entry.source,
            KernelSource::Apt {
                package: "linux-image-cloud-amd64/bookworm-backports".into()
            }
        );
    }

    #[test]
    fn parses_both_source_kinds() {
        let cat = parse_catalog(SAMPLE, "test").unwrap();
        assert_eq!(cat.kernels.len(), 2);
        match &cat.get("fc-5-10").unwrap().source {
            KernelSource::Url {
                format, version, ..
            } => {
                assert_eq!(*format, KernelFormat::Vmlinux);
                assert_eq!(version, "5.10.204");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    /// The error with its causes, as users see it.
    fn chain(error: &CatalogError) -> String {
        let mut text = error.to_string();
        let mut source = std::error::Error::source(error);
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        text
    }

    #[test]
    fn errors_name_entry_and_field() {
        let bad_sha = SAMPLE.replace("sha256 = \"0000", "sha256 = \"ZZ00");
        let err = parse_catalog(&bad_sha, "cat.toml")
            .map_err(|error| chain(&error))
            .unwrap_err();
        assert!(
            err.contains("cat.toml") && err.contains("fc-5-10") && err.contains("sha256"),
            "{err}"
        );

        let unknown = SAMPLE.replace(
            "arch = \"x86_64\"\ndescription",
            "arch = \"x86_64\"\ncolour = 1\ndescription",
        );
        let err = parse_catalog(&unknown, "cat.toml")
            .map_err(|error| chain(&error))
            .unwrap_err();
        assert!(err.contains("colour"), "{err}");

        let http = SAMPLE.replace("https://example.org", "http://example.org");
        assert!(
            parse_catalog(&http, "x")
                .map_err(|error| chain(&error))
                .unwrap_err()
                .contains("url")
        );

        let no_default = SAMPLE.replace("default = \"debian-cloud-amd64\"", "default = \"nope\"");
        assert!(
            parse_catalog(&no_default, "x")
                .unwrap_err()
                .to_string()
                .contains("nope")
        );

        let mixed = SAMPLE.replace(
            "package = \"linux-image-cloud-amd64\"",
            "package = \"linux-image-cloud-amd64\"\nformat = \"bzimage\"",
        );
        assert!(parse_catalog(&mixed, "x").is_err());

        let v2 = SAMPLE.replace("version = 1", "version = 2");
        assert!(
            parse_catalog(&v2, "x")
                .unwrap_err()
                .to_string()
                .contains("version 2")
        );
    }
}
