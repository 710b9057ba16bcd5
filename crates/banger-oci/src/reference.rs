//! What `banger image pull` is given: a registry reference, a `docker save`
//! archive or an OCI image layout. Parsed once, here.

use std::fmt;
use std::path::PathBuf;

use crate::digest::Digest;

/// Docker Hub's name in references.
pub const DOCKER_HUB: &str = "docker.io";
/// Docker Hub's API host.
const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// Where an image comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A registry.
    Registry(ImageRef),
    /// `docker-archive:PATH`: a `docker save` tarball.
    DockerArchive(PathBuf),
    /// `oci:DIR[:TAG]`: an OCI image layout.
    OciLayout {
        /// The layout directory.
        dir: PathBuf,
        /// The `org.opencontainers.image.ref.name` to pick, if given.
        tag: Option<String>,
    },
}

/// A registry image reference, e.g. `docker.io/library/alpine:3.20`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// Registry host (with `:port`), as written (`docker.io` for Docker Hub).
    pub registry: String,
    /// Repository path, e.g. `library/alpine`.
    pub repository: String,
    /// Tag (default `latest`, unless a digest is given).
    pub tag: Option<String>,
    /// Digest, when pinned.
    pub digest: Option<Digest>,
}

/// Why a reference was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    /// Not a valid registry reference.
    #[error(
        "{text:?} is not an image reference: expected [REGISTRY[:PORT]/]REPOSITORY[:TAG][@sha256:DIGEST] (lowercase repository), docker-archive:PATH or oci:DIR[:TAG]; {why}"
    )]
    Invalid {
        /// The text.
        text: String,
        /// What is wrong.
        why: &'static str,
    },
    /// A local input's path is relative.
    #[error("{text:?}: the path must be absolute")]
    RelativePath {
        /// The text.
        text: String,
    },
}

impl Source {
    /// Parses what the user typed. Local paths must be absolute (the CLI
    /// makes them so before they reach the daemon).
    pub fn parse(text: &str) -> Result<Self, ReferenceError> {
        if let Some(path) = text.strip_prefix("docker-archive:") {
            let path = PathBuf::from(path);
            if !path.is_absolute() {
                return Err(ReferenceError::RelativePath {
                    text: text.to_owned(),
                });
            }
            return Ok(Self::DockerArchive(path));
        }
        if let Some(rest) = text.strip_prefix("oci:") {
            // A tag never holds '/', so a last ':' after the last '/' splits it off.
            let (dir, tag) = match rest.rsplit_once(':') {
                Some((dir, tag)) if !tag.contains('/') && !tag.is_empty() => {
                    (dir, Some(tag.to_owned()))
                }
                _ => (rest, None),
            };
            let dir = PathBuf::from(dir);
            if !dir.is_absolute() {
                return Err(ReferenceError::RelativePath {
                    text: text.to_owned(),
                });
            }
            return Ok(Self::OciLayout { dir, tag });
        }
        ImageRef::parse(text).map(Self::Registry)
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Registry(reference) => reference.fmt(f),
            Self::DockerArchive(path) => write!(f, "docker-archive:{}", path.display()),
            Self::OciLayout { dir, tag: None } => write!(f, "oci:{}", dir.display()),
            Self::OciLayout {
                dir,
                tag: Some(tag),
            } => {
                write!(f, "oci:{}:{tag}", dir.display())
            }
        }
    }
}

fn is_repository_component(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-'))
        && text
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && text
            .bytes()
            .last()
            .is_some_and(|b| b.is_ascii_alphanumeric())
}

fn is_tag(text: &str) -> bool {
    (1..=128).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        && text
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn is_registry(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 255
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
}

impl ImageRef {
    /// Parses `[REGISTRY[:PORT]/]REPOSITORY[:TAG][@sha256:HEX]` with
    /// Docker's defaults (Docker Hub, `library/`, `latest`).
    pub fn parse(text: &str) -> Result<Self, ReferenceError> {
        let invalid = |why| ReferenceError::Invalid {
            text: text.to_owned(),
            why,
        };
        let (rest, digest) = match text.split_once('@') {
            Some((rest, digest)) => (
                rest,
                Some(Digest::parse(digest).map_err(|_| invalid("bad digest"))?),
            ),
            None => (text, None),
        };
        let (registry, path) = match rest.split_once('/') {
            Some((first, path))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_owned(), path)
            }
            _ => (DOCKER_HUB.to_owned(), rest),
        };
        if !is_registry(&registry) {
            return Err(invalid("bad registry host"));
        }
        let (path, tag) = match path.rsplit_once(':') {
            Some((path, tag)) if !tag.contains('/') => (path, Some(tag.to_owned())),
            _ => (path, None),
        };
        if let Some(tag) = &tag
            && !is_tag(tag)
        {
            return Err(invalid("bad tag"));
        }
        if path.is_empty() || path.len() > 255 || !path.split('/').all(is_repository_component) {
            return Err(invalid("bad repository"));
        }
        let repository = if registry == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path.to_owned()
        };
        let tag = match (&tag, &digest) {
            (None, None) => Some("latest".to_owned()),
            _ => tag,
        };
        Ok(Self {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// The host to talk to (Docker Hub's API host for `docker.io`).
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }

    /// What to ask the manifest endpoint for: the digest if pinned, else the tag.
    pub fn manifest_reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(digest), _) => digest.to_string(),
            (None, Some(tag)) => tag.clone(),
            (None, None) => "latest".to_owned(),
        }
    }

    /// The host without its port, for loopback checks.
    pub fn host_name(&self) -> &str {
        host_without_port(&self.registry)
    }
}

/// `host` of `host:port` (brackets of an IPv6 literal removed).
pub fn host_without_port(registry: &str) -> &str {
    if let Some(rest) = registry.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    registry.split(':').next().unwrap_or(registry)
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_defaults() {
        let reference = ImageRef::parse("alpine").unwrap();
        assert_eq!(reference.to_string(), "docker.io/library/alpine:latest");
        assert_eq!(reference.api_host(), "registry-1.docker.io");
        let reference = ImageRef::parse("127.0.0.1:5000/test/img:v1").unwrap();
        assert_eq!(reference.registry, "127.0.0.1:5000");
        assert_eq!(reference.repository, "test/img");
        assert_eq!(reference.tag.as_deref(), Some("v1"));
        assert_eq!(reference.host_name(), "127.0.0.1");
        let pinned = format!("localhost/x@sha256:{}", "a".repeat(64));
        let reference = ImageRef::parse(&pinned).unwrap();
        assert_eq!(reference.tag, None);
        assert_eq!(
            reference.manifest_reference(),
            format!("sha256:{}", "a".repeat(64))
        );
    }

    #[test]
    fn refuses_bad_references() {
        for bad in [
            "",
            "UPPER",
            "a/../b",
            "x:bad tag",
            "a//b",
            "-a",
            "x@sha256:zz",
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn local_inputs() {
        assert_eq!(
            Source::parse("docker-archive:/tmp/a.tar").unwrap(),
            Source::DockerArchive("/tmp/a.tar".into())
        );
        assert_eq!(
            Source::parse("oci:/tmp/lay:v2").unwrap(),
            Source::OciLayout {
                dir: "/tmp/lay".into(),
                tag: Some("v2".into())
            }
        );
        assert_eq!(
            Source::parse("oci:/tmp/lay").unwrap(),
            Source::OciLayout {
                dir: "/tmp/lay".into(),
                tag: None
            }
        );
        assert!(Source::parse("oci:rel").is_err());
        assert!(Source::parse("docker-archive:rel.tar").is_err());
    }
}
