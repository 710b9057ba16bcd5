//! Provisioning: the coding agents' tools a banger image carries (mise,
//! opencode, Claude Code, pi, Node.js and npm, tmux with TPM and banger's
//! own persistence plugin, optionally docker), pinned in one manifest in the
//! repository (`images/provision.toml`, embedded here) and shown by
//! `banger image show`. See `docs/images.md`, "Provisioning".
//!
//! One implementation, used by `image build` (and by `--from-image` later):
//! - [`Plan::load`] parses and validates the manifest (and the npm lockfiles
//!   it names) into exact packages with their integrity hashes;
//! - [`fetch`] downloads every npm tarball once into a content-addressed
//!   cache under the build cache, verifying its sha512 (a rebuild works
//!   offline);
//! - [`stage`] turns the verified tarballs and banger's own files (tmux
//!   plugin, opencode unit, shell activation) into one root-owned tar that
//!   mmdebstrap unpacks into the tree (`tar-in`, so ownership is right in
//!   both root and unshare mode); [`PROVISION_SCRIPT`] then runs as a
//!   customize hook for what depends on the tree's existing files (managed
//!   blocks in `/etc/bash.bashrc` and `/root/.tmux.conf`).
//!
//! Debian packages come in through mmdebstrap's `--include` with the image's
//! own list. No install scripts from npm packages run: each tool's platform
//! package is listed explicitly, which is what those scripts would pick.

pub mod catalog;
mod fetch;
mod record;
mod stage;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde::Deserialize;
use thiserror::Error;

pub use fetch::{DEFAULT_REGISTRY, fetch, tarball_url};
pub use record::{
    BaseRecord, PROVISION_RECORD, ProvisionRecord, ToolRecord, read_record, write_record,
};
pub use stage::{TOOLS_DIR, stage};

/// The manifest, `images/provision.toml`.
pub const MANIFEST: &str = include_str!("../../../../images/provision.toml");

/// Files the manifest may name (npm lockfiles), embedded with it.
const EMBEDDED: &[(&str, &str)] = &[(
    "npm/pi.package-lock.json",
    include_str!("../../../../images/npm/pi.package-lock.json"),
)];

/// The customize hook run after the payload is unpacked: managed blocks,
/// plugin link, docker units, checks. Argument 1 is the tree.
pub const PROVISION_SCRIPT: &str = include_str!("provision.sh");

/// The manifest schema this code reads.
pub const SCHEMA: u32 = 1;

/// Why provisioning could not be planned, fetched or staged. Every variant
/// names the package, file or URL involved.
#[derive(Debug, Error)]
pub enum ProvisionError {
    /// The manifest is not valid TOML of the expected shape.
    #[error("the provisioning manifest images/provision.toml is invalid")]
    Manifest {
        /// The parse error.
        #[source]
        source: Box<toml::de::Error>,
    },
    /// The manifest's schema is not this code's.
    #[error("the provisioning manifest has schema {found}; this banger reads schema {SCHEMA}")]
    Schema {
        /// The schema found.
        found: u32,
    },
    /// A value in the manifest breaks its rule.
    #[error("provisioning manifest, {what}: {value:?} {rule}")]
    Invalid {
        /// Which field.
        what: String,
        /// The rejected value.
        value: String,
        /// What it must look like.
        rule: &'static str,
    },
    /// A lockfile the manifest names is not embedded.
    #[error(
        "provisioning manifest, tool {tool}: lockfile {path} is not one of banger's embedded files"
    )]
    UnknownLockfile {
        /// The tool.
        tool: String,
        /// The path given.
        path: String,
    },
    /// A lockfile is not valid JSON of npm's lockfile v2/v3 shape.
    #[error("npm lockfile {path} (tool {tool}) is invalid")]
    Lockfile {
        /// The tool.
        tool: String,
        /// The lockfile.
        path: String,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// The manifest's pin of a package differs from its lockfile's.
    #[error(
        "tool {tool}: the manifest pins {package} {pinned} but its lockfile has {locked}; regenerate one of them"
    )]
    PinMismatch {
        /// The tool.
        tool: String,
        /// The package.
        package: String,
        /// `version integrity` in the manifest.
        pinned: String,
        /// `version integrity` in the lockfile.
        locked: String,
    },
    /// The registry URL is not https (or http to loopback, or file://).
    #[error(
        "npm registry {url:?} is not usable: use https://, http:// to a loopback address, or file:///"
    )]
    RegistryUrl {
        /// The URL.
        url: String,
    },
    /// A download failed (registry unreachable, package or version missing).
    #[error(
        "cannot download {package} from {url} (is the npm registry reachable and the pin right?)"
    )]
    Download {
        /// `name@version`.
        package: String,
        /// The tarball URL.
        url: String,
        /// The cause.
        #[source]
        source: Box<ureq::Error>,
    },
    /// A tarball's sha512 is not the pinned one.
    #[error(
        "integrity mismatch for {package} from {url}: expected {expected}, got {actual}; the download was discarded"
    )]
    IntegrityMismatch {
        /// `name@version`.
        package: String,
        /// Where it came from.
        url: String,
        /// The pinned integrity.
        expected: String,
        /// The integrity of the received bytes.
        actual: String,
    },
    /// A tarball holds a path outside its package (absolute or `..`).
    #[error("{package}: tarball entry {entry:?} escapes the package directory")]
    UnsafeEntry {
        /// `name@version`.
        package: String,
        /// The entry's path.
        entry: String,
    },
    /// A tarball cannot be read.
    #[error("{package}: cannot read tarball {path}")]
    Tarball {
        /// `name@version`.
        package: String,
        /// The cached file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A tool's `bin` names a file its packages do not contain.
    #[error("tool {tool}: bin {bin} points at {target}, which its packages do not contain")]
    MissingBin {
        /// The tool.
        tool: String,
        /// The command name.
        bin: String,
        /// The path inside the tool directory.
        target: String,
    },
    /// A filesystem operation failed.
    #[error("cannot {action} {path}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// `provision.json` cannot be encoded or decoded.
    #[error("{path} is not a valid provisioning record")]
    Record {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
}

pub(crate) fn io(
    action: &'static str,
    path: &std::path::Path,
) -> impl FnOnce(std::io::Error) -> ProvisionError + use<> {
    let path = path.to_owned();
    move |source| ProvisionError::Io {
        action,
        path,
        source,
    }
}

/// What to provision, as the build asks for it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProvisionSpec {
    /// Add the docker engine and compose (`--docker`).
    pub docker: bool,
    /// The npm registry (default [`DEFAULT_REGISTRY`]); tests point it at a
    /// loopback server or a `file://` directory.
    pub registry: Option<String>,
}

/// A sha512 integrity hash (`sha512-<base64>`, as npm writes it).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Integrity([u8; 64]);

impl Integrity {
    /// Parses npm's `sha512-<base64>` form; other algorithms are refused
    /// (sha1 is not enough to pin a download).
    pub fn parse(text: &str) -> Option<Self> {
        use base64::Engine as _;
        let encoded = text.strip_prefix("sha512-")?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .ok()?;
        Some(Self(bytes.try_into().ok()?))
    }

    /// The digest bytes.
    pub fn digest(&self) -> &[u8; 64] {
        &self.0
    }

    /// Lowercase hex, for cache file names.
    pub fn hex(&self) -> String {
        self.0.iter().map(|byte| format!("{byte:02x}")).collect()
    }
}

impl std::fmt::Display for Integrity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use base64::Engine as _;
        write!(
            f,
            "sha512-{}",
            base64::engine::general_purpose::STANDARD.encode(self.0)
        )
    }
}

/// One npm tarball to install.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NpmPackage {
    /// Registry name, e.g. `@scope/name`.
    pub name: String,
    /// Exact version.
    pub version: String,
    /// Its pinned sha512.
    pub integrity: Integrity,
    /// Where it goes inside the tool's directory, e.g. `node_modules/name`.
    pub path: String,
}

impl NpmPackage {
    /// `name@version`, for messages.
    pub fn id(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }
}

/// One tool: its packages, installed into `/usr/local/lib/banger/tools/<name>/`,
/// and its commands linked from `/usr/local/bin`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tool {
    /// Tool name (also its directory).
    pub name: String,
    /// The version shown to users.
    pub version: String,
    /// Command name → path inside the tool directory.
    pub bins: BTreeMap<String, String>,
    /// Every tarball, in install order.
    pub packages: Vec<NpmPackage>,
}

/// The validated manifest for one build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Debian packages to add to the image's list.
    pub debian: Vec<String>,
    /// The tools.
    pub tools: Vec<Tool>,
    /// Whether docker is part of it.
    pub docker: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    schema: u32,
    debian: RawDebian,
    #[serde(rename = "tool")]
    tools: Vec<RawTool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDebian {
    packages: Vec<String>,
    docker: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTool {
    name: String,
    version: String,
    bin: BTreeMap<String, String>,
    packages: Vec<RawPin>,
    #[serde(default)]
    lockfile: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPin {
    name: String,
    version: String,
    integrity: String,
}

#[derive(Deserialize)]
struct RawLock {
    packages: BTreeMap<String, RawLocked>,
}

#[derive(Deserialize)]
struct RawLocked {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    integrity: Option<String>,
    #[serde(default)]
    dev: bool,
    #[serde(default)]
    link: bool,
    #[serde(default)]
    os: Option<Vec<String>>,
    #[serde(default)]
    cpu: Option<Vec<String>>,
    #[serde(default)]
    libc: Option<Vec<String>>,
}

fn invalid(what: impl Into<String>, value: &str, rule: &'static str) -> ProvisionError {
    ProvisionError::Invalid {
        what: what.into(),
        value: value.to_owned(),
        rule,
    }
}

/// npm's package name rule (lowercase, URL-safe, optional `@scope/`).
pub fn is_valid_npm_name(name: &str) -> bool {
    let part = |p: &str| {
        !p.is_empty()
            && p.len() <= 214
            && !p.starts_with('.')
            && p.bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"-._~".contains(&c))
    };
    match name.strip_prefix('@') {
        Some(scoped) => scoped
            .split_once('/')
            .is_some_and(|(scope, rest)| part(scope) && part(rest)),
        None => part(name),
    }
}

/// An exact semver version (no ranges): digits, letters, `.`, `-`, `+`.
fn is_exact_version(version: &str) -> bool {
    version.starts_with(|c: char| c.is_ascii_digit())
        && version
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b".-+".contains(&c))
}

/// A relative path of plain components (no `..`, `.`, empty or absolute).
fn is_plain_relative(path: &str) -> bool {
    !path.is_empty()
        && path.split('/').all(|component| {
            !component.is_empty()
                && component != "."
                && component != ".."
                && component
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || b"-._@+~".contains(&c))
        })
}

/// A tool or command name: lowercase letters, digits and `-`.
fn is_simple_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
}

fn pin(tool: &str, raw: &RawPin) -> Result<NpmPackage, ProvisionError> {
    if !is_valid_npm_name(&raw.name) {
        return Err(invalid(
            format!("tool {tool}, package name"),
            &raw.name,
            "is not an npm package name",
        ));
    }
    if !is_exact_version(&raw.version) {
        return Err(invalid(
            format!("tool {tool}, {} version", raw.name),
            &raw.version,
            "is not an exact version",
        ));
    }
    let integrity = Integrity::parse(&raw.integrity).ok_or_else(|| {
        invalid(
            format!("tool {tool}, {} integrity", raw.name),
            &raw.integrity,
            "is not sha512-<base64 of 64 bytes>",
        )
    })?;
    Ok(NpmPackage {
        path: format!("node_modules/{}", raw.name),
        name: raw.name.clone(),
        version: raw.version.clone(),
        integrity,
    })
}

/// The packages of an npm lockfile (v2/v3 `packages` map) that a linux x64
/// glibc install needs: not dev, not links, matching `os`/`cpu`/`libc`.
fn locked_packages(tool: &str, path: &str, text: &str) -> Result<Vec<NpmPackage>, ProvisionError> {
    let lock: RawLock = serde_json::from_str(text).map_err(|source| ProvisionError::Lockfile {
        tool: tool.to_owned(),
        path: path.to_owned(),
        source,
    })?;
    let fits = |list: &Option<Vec<String>>, ours: &str| {
        list.as_ref().is_none_or(|values| {
            // npm allows "!value" exclusions as well as inclusions.
            let excluded = values.iter().any(|v| v.strip_prefix('!') == Some(ours));
            let included = values.iter().filter(|v| !v.starts_with('!')).count() == 0
                || values.iter().any(|v| v == ours);
            included && !excluded
        })
    };
    let mut out = Vec::new();
    for (key, entry) in &lock.packages {
        if key.is_empty() || entry.dev || entry.link {
            continue;
        }
        if !(fits(&entry.os, "linux") && fits(&entry.cpu, "x64") && fits(&entry.libc, "glibc")) {
            continue;
        }
        let what = format!("lockfile {path}, {key}");
        if !key.starts_with("node_modules/") || !is_plain_relative(key) {
            return Err(invalid(what, key, "is not a node_modules path"));
        }
        let name = entry.name.clone().unwrap_or_else(|| {
            key.rsplit_once("node_modules/")
                .map_or(key.as_str(), |(_, name)| name)
                .to_owned()
        });
        let raw = RawPin {
            name,
            version: entry.version.clone().unwrap_or_default(),
            integrity: entry.integrity.clone().unwrap_or_default(),
        };
        let mut package = pin(tool, &raw)?;
        package.path = key.clone();
        out.push(package);
    }
    Ok(out)
}

impl Plan {
    /// The embedded manifest, with docker packages when `docker`.
    pub fn load(docker: bool) -> Result<Self, ProvisionError> {
        Self::parse(MANIFEST, docker)
    }

    /// Parses and validates a manifest's text.
    pub fn parse(text: &str, docker: bool) -> Result<Self, ProvisionError> {
        let raw: RawManifest = toml::from_str(text).map_err(|source| ProvisionError::Manifest {
            source: Box::new(source),
        })?;
        if raw.schema != SCHEMA {
            return Err(ProvisionError::Schema { found: raw.schema });
        }
        let mut debian = raw.debian.packages.clone();
        if docker {
            debian.extend(raw.debian.docker.iter().cloned());
        }
        for package in raw.debian.packages.iter().chain(&raw.debian.docker) {
            if !crate::image_build::is_valid_package_name(package) {
                return Err(invalid(
                    "debian package",
                    package,
                    "is not a Debian package name",
                ));
            }
        }
        let mut names = BTreeSet::new();
        let mut commands = BTreeSet::new();
        let mut tools = Vec::new();
        for raw_tool in &raw.tools {
            let tool = raw_tool.name.as_str();
            if !is_simple_name(tool) || !names.insert(tool.to_owned()) {
                return Err(invalid(
                    "tool name",
                    tool,
                    "must be unique lowercase letters, digits and '-'",
                ));
            }
            if !is_exact_version(&raw_tool.version) {
                return Err(invalid(
                    format!("tool {tool}, version"),
                    &raw_tool.version,
                    "is not an exact version",
                ));
            }
            for (command, target) in &raw_tool.bin {
                if !is_simple_name(command) || !commands.insert(command.clone()) {
                    return Err(invalid(
                        format!("tool {tool}, bin"),
                        command,
                        "must be a unique command name",
                    ));
                }
                if !is_plain_relative(target) {
                    return Err(invalid(
                        format!("tool {tool}, bin {command}"),
                        target,
                        "must be a relative path inside the tool directory",
                    ));
                }
            }
            let pins = raw_tool
                .packages
                .iter()
                .map(|raw| pin(tool, raw))
                .collect::<Result<Vec<_>, _>>()?;
            let packages = match &raw_tool.lockfile {
                None => pins,
                Some(path) => {
                    let text = EMBEDDED
                        .iter()
                        .find(|(name, _)| name == path)
                        .map(|(_, text)| *text)
                        .ok_or_else(|| ProvisionError::UnknownLockfile {
                            tool: tool.to_owned(),
                            path: path.clone(),
                        })?;
                    let locked = locked_packages(tool, path, text)?;
                    for wanted in &pins {
                        let found = locked.iter().find(|p| p.path == wanted.path);
                        if found.is_none_or(|p| {
                            p.version != wanted.version || p.integrity != wanted.integrity
                        }) {
                            return Err(ProvisionError::PinMismatch {
                                tool: tool.to_owned(),
                                package: wanted.name.clone(),
                                pinned: format!("{} {}", wanted.version, wanted.integrity),
                                locked: found.map_or_else(
                                    || "nothing".to_owned(),
                                    |p| format!("{} {}", p.version, p.integrity),
                                ),
                            });
                        }
                    }
                    locked
                }
            };
            tools.push(Tool {
                name: tool.to_owned(),
                version: raw_tool.version.clone(),
                bins: raw_tool.bin.clone(),
                packages,
            });
        }
        Ok(Self {
            debian,
            tools,
            docker,
        })
    }

    /// Every tarball of every tool.
    pub fn packages(&self) -> impl Iterator<Item = &NpmPackage> {
        self.tools.iter().flat_map(|tool| tool.packages.iter())
    }

    /// What `image show` reports about an image built from this plan.
    pub fn record(&self) -> ProvisionRecord {
        ProvisionRecord {
            schema: SCHEMA,
            docker: self.docker,
            debian_packages: self.debian.clone(),
            tools: self
                .tools
                .iter()
                .map(|tool| ToolRecord {
                    name: tool.name.clone(),
                    version: tool.version.clone(),
                    commands: tool.bins.keys().cloned().collect(),
                    packages: tool.packages.len(),
                })
                .collect(),
            installed_debian: Vec::new(),
            base: None,
        }
    }
}
