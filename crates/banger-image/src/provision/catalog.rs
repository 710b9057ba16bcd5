//! The image catalog (`images/catalog.toml`, embedded, or the file
//! `$BANGER_IMAGE_CATALOG` names): named recipes for
//! `banger image build --from-catalog NAME`, listed by
//! `banger image list --available`.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The environment variable naming a catalog file to use instead of the
/// embedded one (same format).
pub const CATALOG_ENV: &str = "BANGER_IMAGE_CATALOG";

/// The catalog file.
pub const CATALOG: &str = include_str!("../../../../images/catalog.toml");

/// Why the catalog cannot be read or an entry found.
#[derive(Debug, Error)]
pub enum CatalogError {
    /// Not valid TOML of the catalog's shape.
    #[error("the image catalog {origin} is invalid")]
    Parse {
        /// Where it came from (`images/catalog.toml` or the file's path).
        origin: String,
        /// The parse error.
        #[source]
        source: Box<toml::de::Error>,
    },
    /// An entry breaks a rule.
    #[error("image catalog entry {name:?}: {problem}")]
    Entry {
        /// The entry.
        name: String,
        /// What is wrong.
        problem: &'static str,
    },
    /// The file `$BANGER_IMAGE_CATALOG` names cannot be read.
    #[error("cannot read the image catalog {path} (from ${CATALOG_ENV})")]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// No entry of that name.
    #[error("no image {name:?} in the catalog; see `banger image list --available` ({known})")]
    Unknown {
        /// The name asked for.
        name: String,
        /// The names there are.
        known: String,
    },
}

/// Where an entry's root filesystem comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CatalogBase {
    /// A Debian suite built with mmdebstrap.
    Suite(String),
    /// An OCI reference pulled with `image pull`.
    Oci(String),
}

/// One catalog entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CatalogImage {
    /// Name, also the image name it is built under by default.
    pub name: String,
    /// One line for humans.
    pub description: String,
    /// Its base.
    pub base: CatalogBase,
    /// The kernel it boots (a kernel catalog entry).
    pub kernel: String,
    /// Whether the pinned tools are installed.
    pub provision: bool,
    /// Whether docker is added.
    pub docker: bool,
    /// Whether this is the default image.
    pub default: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCatalog {
    schema: u32,
    default: String,
    image: Vec<RawImage>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawImage {
    name: String,
    description: String,
    #[serde(default)]
    suite: Option<String>,
    #[serde(default)]
    oci: Option<String>,
    kernel: String,
    provision: bool,
    docker: bool,
}

/// Parses a catalog's text (read from `origin`, for errors).
pub fn parse_catalog(text: &str, origin: &str) -> Result<Vec<CatalogImage>, CatalogError> {
    let raw: RawCatalog = toml::from_str(text).map_err(|source| CatalogError::Parse {
        origin: origin.to_owned(),
        source: Box::new(source),
    })?;
    let entry = |name: &str, problem| CatalogError::Entry {
        name: name.to_owned(),
        problem,
    };
    if raw.schema != 1 {
        return Err(entry("", "schema must be 1"));
    }
    let mut out: Vec<CatalogImage> = Vec::new();
    for image in raw.image {
        let name = image.name.as_str();
        let valid_name = !name.is_empty()
            && name
                .bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"-._".contains(&c));
        if !valid_name || out.iter().any(|other| other.name == name) {
            return Err(entry(
                name,
                "names are unique lowercase letters, digits, '-', '.', '_'",
            ));
        }
        let base = match (image.suite, image.oci) {
            (Some(suite), None) => {
                crate::image_build::validate_suite(&suite)
                    .map_err(|_| entry(name, "suite must be a Debian codename"))?;
                CatalogBase::Suite(suite)
            }
            (None, Some(reference)) if reference.is_empty() => {
                return Err(entry(name, "oci must be an image reference"));
            }
            (None, Some(reference)) => CatalogBase::Oci(reference),
            _ => return Err(entry(name, "give exactly one of suite and oci")),
        };
        if image.docker && !image.provision {
            return Err(entry(name, "docker needs provision = true"));
        }
        out.push(CatalogImage {
            default: name == raw.default,
            name: image.name,
            description: image.description,
            base,
            kernel: image.kernel,
            provision: image.provision,
            docker: image.docker,
        });
    }
    if !out.iter().any(|image| image.default) {
        return Err(entry(&raw.default, "the default names no entry"));
    }
    Ok(out)
}

/// The catalog: the file `$BANGER_IMAGE_CATALOG` names, else the embedded one.
pub fn catalog() -> Result<Vec<CatalogImage>, CatalogError> {
    load(std::env::var_os(CATALOG_ENV))
}

/// The catalog in file `path` (unset or empty: the embedded one).
fn load(path: Option<std::ffi::OsString>) -> Result<Vec<CatalogImage>, CatalogError> {
    match path.filter(|path| !path.is_empty()) {
        Some(path) => {
            let path = std::path::PathBuf::from(path);
            let text = fs_err::read_to_string(&path).map_err(|source| CatalogError::Read {
                path: path.clone(),
                source,
            })?;
            parse_catalog(&text, &path.display().to_string())
        }
        None => parse_catalog(CATALOG, "images/catalog.toml"),
    }
}

/// The entry called `name`.
pub fn catalog_image(name: &str) -> Result<CatalogImage, CatalogError> {
    let all = catalog()?;
    let known = all
        .iter()
        .map(|image| image.name.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    all.iter()
        .find(|image| image.name == name)
        .cloned()
        .ok_or_else(|| CatalogError::Unknown {
            name: name.to_owned(),
            known,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_catalog_has_the_three_debian_images() {
        let all = catalog().unwrap();
        let find = |name: &str| all.iter().find(|image| image.name == name).unwrap();
        let default = find("debian-bookworm");
        assert!(default.default && default.provision && !default.docker);
        assert_eq!(default.base, CatalogBase::Suite("bookworm".into()));
        assert!(find("debian-bookworm-docker").docker);
        assert!(!find("debian-bookworm-minimal").provision);
        assert_eq!(all.iter().filter(|image| image.default).count(), 1);
        let error = catalog_image("nope").unwrap_err().to_string();
        assert!(error.contains("debian-bookworm-minimal"), "{error}");
    }

    #[test]
    fn bad_entries_are_refused() {
        let head = "schema = 1\ndefault = \"a\"\n[[image]]\nname = \"a\"\ndescription = \"\"\nkernel = \"k\"\n";
        for (body, problem) in [
            (
                "suite = \"bookworm\"\noci = \"x\"\nprovision = false\ndocker = false\n",
                "exactly one",
            ),
            (
                "oci = \"\"\nprovision = true\ndocker = false\n",
                "oci must be an image reference",
            ),
            (
                "suite = \"bookworm\"\nprovision = false\ndocker = true\n",
                "docker",
            ),
            (
                "suite = \"Bookworm!\"\nprovision = false\ndocker = false\n",
                "codename",
            ),
        ] {
            let error = parse_catalog(&format!("{head}{body}"), "test.toml")
                .unwrap_err()
                .to_string();
            assert!(error.contains(problem), "{problem}: {error}");
        }
    }

    #[test]
    fn a_catalog_file_replaces_the_embedded_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("catalog.toml");
        fs_err::write(
            &path,
            "schema = 1\ndefault = \"u\"\n[[image]]\nname = \"u\"\ndescription = \"d\"\n\
             oci = \"docker.io/library/ubuntu:24.04\"\nkernel = \"k\"\nprovision = true\ndocker = true\n",
        )
        .unwrap();
        let all = load(Some(path.clone().into())).unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(
            all[0].base,
            CatalogBase::Oci("docker.io/library/ubuntu:24.04".into())
        );
        assert!(all[0].provision && all[0].docker && all[0].default);
        assert_eq!(load(Some("".into())).unwrap(), catalog_embedded());

        let missing = dir.path().join("missing.toml");
        let error = load(Some(missing.clone().into())).unwrap_err().to_string();
        assert!(error.contains(&missing.display().to_string()), "{error}");
        assert!(error.contains(CATALOG_ENV), "{error}");
        fs_err::write(&path, "schema = ").unwrap();
        let error = load(Some(path.clone().into())).unwrap_err().to_string();
        assert!(error.contains(&path.display().to_string()), "{error}");
    }

    fn catalog_embedded() -> Vec<CatalogImage> {
        parse_catalog(CATALOG, "images/catalog.toml").unwrap()
    }
}
