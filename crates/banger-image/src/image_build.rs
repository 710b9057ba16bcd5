//! Builds banger's default Debian image (`banger image build`) from Debian
//! packages: a read-only base `rootfs.ext4` (the VM's `vda`) and a
//! `work-seed.ext4` that the daemon clones and grows into each VM's work disk
//! (`vdc`, mounted at `/root`). See `docs/images.md`.
//!
//! Steps: validate the suite, mirror and package names (nothing user-supplied
//! reaches apt unless it is a plain Debian package name); run `mmdebstrap`
//! (variant minbase) into a staging directory inside `out_dir`, with a per-suite
//! `.deb` cache under `<cache_dir>/apt-archives/` so rebuilds do not download
//! again, and with [`customise::CUSTOMISE_SCRIPT`] as a customize hook that
//! adapts the tree to banger's initramfs; pack the tree's `/root` into the work
//! seed and the rest into the rootfs with `mkfs.ext4 -d`; rename both images
//! into place. On failure everything created in `out_dir` is removed.
//!
//! With [`ImageBuildSpec::base`] (`image build --from-image`) the build
//! starts from an installed image's files instead ([`base`]): mmdebstrap
//! runs with `--variant=custom` on top of them, with the same hooks and
//! packing.
//!
//! As root, mmdebstrap runs in `root` mode. Otherwise it runs in `unshare` mode
//! (needs unprivileged user namespaces and a subuid/subgid range in
//! `/etc/subuid` and `/etc/subgid`); the tree then belongs to subordinate ids,
//! so every step that touches it after mmdebstrap (`du`, `mkfs.ext4 -d`,
//! emptying `/root`, removing it) runs through `mmdebstrap --unshare-helper`.

pub mod base;
mod base_tar;
pub mod customise;
mod progress;
mod run;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use thiserror::Error;

pub use customise::{CUSTOMISATION_VERSION, CUSTOMISE_SCRIPT};
pub use run::mmdebstrap_args;

/// The built-in package list (`assets/image-packages.txt`).
pub const DEFAULT_PACKAGES: &str = include_str!("../../../assets/image-packages.txt");
/// Debian suite built when none is given.
pub const DEFAULT_SUITE: &str = "bookworm";
/// Mirror used when none is given.
pub const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";
/// Default size of `work-seed.ext4` (sparse; the daemon grows each VM's copy).
pub const DEFAULT_WORK_SEED_SIZE: u64 = 1 << 30;
/// Filesystem label of the base image.
pub const ROOTFS_LABEL: &str = "banger-root";
/// Filesystem label of the work seed.
pub const WORK_LABEL: &str = "banger-work";

const MIB: u64 = 1 << 20;

/// Why an image could not be built. Every variant names what failed.
#[derive(Debug, Error)]
pub enum ImageBuildError {
    /// The suite is not a plain lowercase codename.
    #[error("invalid Debian suite {suite:?}: use a codename of lowercase letters, e.g. bookworm")]
    InvalidSuite {
        /// The rejected suite.
        suite: String,
    },
    /// The mirror URL is not a plain http(s)/file URL.
    #[error(
        "invalid mirror {mirror:?}: expected an http://, https:// or file:// URL without spaces"
    )]
    InvalidMirror {
        /// The rejected mirror.
        mirror: String,
    },
    /// A package list holds something that is not a Debian package name.
    #[error(
        "{origin}:{line}: {name:?} is not a valid Debian package name (lowercase letters, digits, '+', '-', '.'; at least 2 characters, starting with a letter or digit)"
    )]
    InvalidPackageName {
        /// The package list (file path or "built-in package list").
        origin: String,
        /// 1-based line number.
        line: usize,
        /// The rejected entry.
        name: String,
    },
    /// A requested rootfs size cannot hold the tree.
    #[error("rootfs size {requested} bytes ({requested_mib} MiB) is too small: the image tree needs at least {needed} bytes ({needed_mib} MiB)", requested_mib = requested / MIB, needed_mib = needed.div_ceil(MIB))]
    RootfsTooSmall {
        /// The size asked for.
        requested: u64,
        /// The smallest size that fits the tree.
        needed: u64,
    },
    /// The work seed size cannot hold the old `/root`.
    #[error("work seed size {requested} bytes is too small: /root needs at least {needed} bytes")]
    WorkSeedTooSmall {
        /// The size asked for.
        requested: u64,
        /// The smallest size that fits.
        needed: u64,
    },
    /// `out_dir` already holds a built image; it is never overwritten because
    /// running VMs may use it.
    #[error("{path} already exists; remove it or build into another directory")]
    OutputExists {
        /// The existing file.
        path: PathBuf,
    },
    /// A filesystem operation failed.
    #[error("{path}")]
    Io {
        /// Path that failed.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// A required host tool is missing.
    #[error("cannot run {tool}: {source} (install Debian package {package})")]
    ToolMissing {
        /// The program.
        tool: String,
        /// Debian package providing it.
        package: String,
        /// Underlying error.
        source: std::io::Error,
    },
    /// mmdebstrap failed because a disk filled up: the build's output
    /// directory (its staging tree) or the package cache.
    #[error(
        "the image build ran out of disk space (its output goes to {out_dir}; the package cache is {cache}): {line}; free some space and build again; full log: {log}"
    )]
    NoSpace {
        /// Where the image was being built.
        out_dir: PathBuf,
        /// The package cache.
        cache: PathBuf,
        /// The output line that said so.
        line: String,
        /// The build log.
        log: PathBuf,
    },
    /// mmdebstrap failed; its full output is in the log.
    #[error("mmdebstrap failed ({status}); last output: {tail}; full log: {log}")]
    Mmdebstrap {
        /// Exit status.
        status: String,
        /// The last lines of its output.
        tail: String,
        /// The build log.
        log: PathBuf,
    },
    /// Provisioning (the pinned tools) failed before anything was installed.
    #[error("provisioning the image failed")]
    Provision {
        /// The cause.
        #[source]
        source: crate::provision::ProvisionError,
    },
    /// The `--from-image` base cannot be used or read.
    #[error("cannot build on base image {name}")]
    Base {
        /// The base image's name.
        name: String,
        /// The cause.
        #[source]
        source: base::BaseImageError,
    },
    /// `mkfs.ext4` (or the helper removing the tree) failed.
    #[error("{tool} for {path} failed: {detail}")]
    Tool {
        /// Program that failed.
        tool: String,
        /// The file or directory it worked on.
        path: PathBuf,
        /// Exit status and stderr.
        detail: String,
    },
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ImageBuildError + '_ {
    move |source| ImageBuildError::Io {
        path: path.to_owned(),
        source,
    }
}

/// How mmdebstrap gets the privileges to install packages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildMode {
    /// `--mode=root`: the caller is root; the tree has real ownership.
    Root,
    /// `--mode=unshare`: unprivileged, in a user namespace with the caller's
    /// subuid/subgid range.
    Unshare,
}

impl BuildMode {
    /// Root when the effective uid is 0, else unshare.
    pub fn detect() -> Self {
        // /proc/self is owned by the process's effective uid; this avoids
        // unsafe libc calls for a single check.
        use std::os::unix::fs::MetadataExt;
        match fs_err::metadata("/proc/self") {
            Ok(m) if m.uid() == 0 => BuildMode::Root,
            _ => BuildMode::Unshare,
        }
    }

    fn as_arg(self) -> &'static str {
        match self {
            BuildMode::Root => "--mode=root",
            BuildMode::Unshare => "--mode=unshare",
        }
    }
}

/// What to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageBuildSpec {
    /// Debian suite (codename), e.g. `bookworm`.
    pub suite: String,
    /// A file of extra package names (same format as the built-in list).
    pub extra_packages_file: Option<PathBuf>,
    /// Size of `rootfs.ext4`; None sizes it from the tree with headroom.
    pub rootfs_size_bytes: Option<u64>,
    /// Size of `work-seed.ext4`.
    pub work_seed_size_bytes: u64,
    /// Debian mirror; None uses [`DEFAULT_MIRROR`].
    pub mirror: Option<String>,
    /// None detects from the effective uid ([`BuildMode::detect`]).
    pub mode: Option<BuildMode>,
    /// The pinned tools ([`crate::provision`]); None builds the bare image.
    pub provision: Option<crate::provision::ProvisionSpec>,
    /// Build on an installed image's tree (`--from-image`) instead of from
    /// nothing; the suite and default mirror then come from its os-release.
    pub base: Option<base::BaseImage>,
}

impl Default for ImageBuildSpec {
    fn default() -> Self {
        Self {
            suite: DEFAULT_SUITE.to_owned(),
            extra_packages_file: None,
            rootfs_size_bytes: None,
            work_seed_size_bytes: DEFAULT_WORK_SEED_SIZE,
            mirror: None,
            mode: None,
            provision: None,
            base: None,
        }
    }
}

/// A finished image in `out_dir`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltImage {
    /// `<out_dir>/rootfs.ext4`, the read-only base (`vda`).
    pub rootfs: PathBuf,
    /// `<out_dir>/work-seed.ext4`, cloned per VM as the work disk (`vdc`).
    pub work_seed: PathBuf,
    /// The requested packages (built-in list plus extras, deduplicated).
    pub packages: Vec<String>,
    /// Every installed package as `name=version`, sorted.
    pub installed: Vec<String>,
    /// Apparent size of `rootfs.ext4`.
    pub rootfs_bytes: u64,
    /// Apparent size of `work-seed.ext4`.
    pub work_seed_bytes: u64,
    /// Bytes of the customised tree without `/root` (as `du` counts them).
    pub tree_bytes: u64,
    /// The suite built.
    pub suite: String,
    /// How mmdebstrap ran.
    pub mode: BuildMode,
    /// Wall time of the whole build.
    pub elapsed: Duration,
    /// What provisioning installed (None for a bare image).
    pub provision: Option<crate::provision::ProvisionRecord>,
}

/// True for a Debian policy package name: `[a-z0-9][a-z0-9+.-]+`. Anything
/// else (options, versions, architectures, patterns) is refused, so a package
/// file can never smuggle arguments into apt.
pub fn is_valid_package_name(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() >= 2
        && b.len() <= 128
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"+-.".contains(c))
}

/// Parses a package list: one name per line, `#` starts a comment, blank
/// lines ignored; `origin` names the list in errors.
pub fn parse_package_list(text: &str, origin: &str) -> Result<Vec<String>, ImageBuildError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        if !is_valid_package_name(line) {
            return Err(ImageBuildError::InvalidPackageName {
                origin: origin.to_owned(),
                line: i + 1,
                name: line.to_owned(),
            });
        }
        out.push(line.to_owned());
    }
    Ok(out)
}

/// Checks that `suite` is a codename of 2-32 lowercase ASCII letters.
pub fn validate_suite(suite: &str) -> Result<(), ImageBuildError> {
    if (2..=32).contains(&suite.len()) && suite.bytes().all(|c| c.is_ascii_lowercase()) {
        Ok(())
    } else {
        Err(ImageBuildError::InvalidSuite {
            suite: suite.to_owned(),
        })
    }
}

/// Checks that `mirror` is an http(s) or file URL made of URL characters only
/// (mmdebstrap would read spaces as a sources.list line).
pub fn validate_mirror(mirror: &str) -> Result<(), ImageBuildError> {
    let ok = ["http://", "https://", "file:///"]
        .iter()
        .any(|s| mirror.len() > s.len() && mirror.starts_with(s))
        && mirror
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"-._~:/?%@+=&,[]".contains(&c));
    if ok {
        Ok(())
    } else {
        Err(ImageBuildError::InvalidMirror {
            mirror: mirror.to_owned(),
        })
    }
}

/// The built-in list plus the extras from `spec`, validated, in order, without
/// duplicates.
pub fn resolve_packages(spec: &ImageBuildSpec) -> Result<Vec<String>, ImageBuildError> {
    let mut all = parse_package_list(DEFAULT_PACKAGES, "built-in package list")?;
    if let Some(file) = &spec.extra_packages_file {
        let text = fs_err::read_to_string(file).map_err(io_err(file))?;
        all.extend(parse_package_list(&text, &file.display().to_string())?);
    }
    let mut seen = std::collections::HashSet::new();
    all.retain(|p| seen.insert(p.clone()));
    Ok(all)
}

/// Smallest rootfs that holds a tree of `tree_bytes` with `inodes` entries:
/// the tree plus 10% and 32 MiB for ext4 metadata (inode tables, bitmaps,
/// directories), rounded up to a MiB. No journal: the base is never written.
pub fn min_rootfs_size(tree_bytes: u64, inodes: u64) -> u64 {
    let meta = inodes.saturating_mul(256);
    (tree_bytes + tree_bytes / 10 + meta + 32 * MIB).div_ceil(MIB) * MIB
}

/// The rootfs size to use: `requested` if it fits, else an error naming both
/// sizes; without a request the minimum plus 25% headroom (so the image can
/// later be customised in place), rounded up to 64 MiB. Sparse either way.
pub fn rootfs_size(
    tree_bytes: u64,
    inodes: u64,
    requested: Option<u64>,
) -> Result<u64, ImageBuildError> {
    let needed = min_rootfs_size(tree_bytes, inodes);
    match requested {
        Some(r) if r < needed => Err(ImageBuildError::RootfsTooSmall {
            requested: r,
            needed,
        }),
        Some(r) => Ok(r),
        None => Ok((needed + needed / 4).div_ceil(64 * MIB) * (64 * MIB)),
    }
}

/// Cache key of an image built from `packages` for `suite`: changes when the
/// package list, the suite, [`CUSTOMISE_SCRIPT`] or [`CUSTOMISATION_VERSION`]
/// changes. Stable across Rust releases (FNV-1a), as it names files in
/// long-lived caches.
pub fn image_key(suite: &str, packages: &[String]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let version = CUSTOMISATION_VERSION.to_string();
    for part in [suite, version.as_str(), CUSTOMISE_SCRIPT]
        .into_iter()
        .chain(packages.iter().map(String::as_str))
    {
        for &b in part.as_bytes().iter().chain(&[0xff]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

/// Builds the image described by `spec` into `out_dir` (`rootfs.ext4`,
/// `work-seed.ext4`), using `cache_dir` for downloaded packages and writing the
/// full mmdebstrap output to `log`. `progress(stage, message)` gets short
/// human-readable updates. Needs `mmdebstrap` and `mkfs.ext4` (e2fsprogs).
pub fn build_debian_image(
    spec: &ImageBuildSpec,
    out_dir: &Path,
    cache_dir: &Path,
    log: &Path,
    progress: &mut dyn FnMut(&str, &str),
) -> Result<BuiltImage, ImageBuildError> {
    run::build(spec, out_dir, cache_dir, log, progress)
}

/// Quotes `s` for a POSIX shell (and Perl's `shellwords`, which parses
/// mmdebstrap's special hooks).
pub(crate) fn shell_quote(s: &std::ffi::OsStr) -> OsString {
    let text = s.to_string_lossy();
    let mut out = OsString::from("'");
    out.push(text.replace('\'', "'\\''"));
    out.push("'");
    out
}

/// Elapsed time since `start`, for log lines.
pub(crate) fn secs(start: Instant) -> String {
    format!("{:.1}s", start.elapsed().as_secs_f64())
}

#[cfg(test)]
mod tests;
