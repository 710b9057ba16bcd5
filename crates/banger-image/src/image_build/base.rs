//! `image build --from-image BASE`: an installed image's filesystem as the
//! starting tree of a build, read with `debugfs` (no mount).
//!
//! [`inspect`] checks that the base is a glibc Debian or Ubuntu system
//! (`os-release`'s `ID`/`ID_LIKE`, `/usr/bin/apt-get`, the x86-64 glibc
//! loader) and takes the suite from `VERSION_CODENAME`. [`extract`] dumps
//! its rootfs (and its work seed as `/root`) with `debugfs rdump` and packs
//! it into a tar whose owners and modes come from the image's own listings
//! (see `base_tar`), which the build unpacks as mmdebstrap's starting tree
//! (a `tar-in` setup hook with `--variant=custom`, so mmdebstrap installs
//! only the `--include`d packages on top of it). This works for a root and
//! an unprivileged daemon alike.
//!
//! Extended attributes (file capabilities) and hard links are not carried
//! over; device nodes are skipped (mmdebstrap populates `/dev`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use thiserror::Error;

use super::base_tar::{Listing, Owner, directories, pack};

/// The x86-64 glibc dynamic loader every glibc system has at this path.
pub const GLIBC_LOADER: &str = "/lib64/ld-linux-x86-64.so.2";
/// apt's command line, needed to install packages into the base.
pub const APT_GET: &str = "/usr/bin/apt-get";
/// Mirror for Debian bases.
pub const DEBIAN_MIRROR: &str = "http://deb.debian.org/debian";
/// Mirror for Ubuntu bases (amd64).
pub const UBUNTU_MIRROR: &str = "http://archive.ubuntu.com/ubuntu";
/// What `--from-image` accepts, for error messages.
pub const SUPPORTED: &str = "glibc Debian or Ubuntu (x86-64) images with apt";

/// Why a base image cannot be used. Every variant names the image.
#[derive(Debug, Error)]
pub enum BaseImageError {
    /// The image has neither `/usr/lib/os-release` nor `/etc/os-release`.
    #[error(
        "image {image} cannot be provisioned: it has no /etc/os-release or /usr/lib/os-release; --from-image supports {SUPPORTED}"
    )]
    NoOsRelease {
        /// The base image's name.
        image: String,
    },
    /// `os-release` names another distribution.
    #[error(
        "image {image} cannot be provisioned: its os-release says ID={id}{like}; --from-image supports {SUPPORTED}",
        like = if id_like.is_empty() { String::new() } else { format!(" ID_LIKE={id_like}") }
    )]
    Unsupported {
        /// The base image's name.
        image: String,
        /// `ID`.
        id: String,
        /// `ID_LIKE` (may be empty).
        id_like: String,
    },
    /// A file every supported system has is missing.
    #[error(
        "image {image} cannot be provisioned: it has no {path} ({what}); --from-image supports {SUPPORTED}"
    )]
    Missing {
        /// The base image's name.
        image: String,
        /// The missing path.
        path: &'static str,
        /// Why it is needed.
        what: &'static str,
    },
    /// `os-release` has no usable `VERSION_CODENAME` (e.g. Debian sid/testing
    /// without one).
    #[error(
        "image {image} cannot be provisioned: its os-release has no VERSION_CODENAME of lowercase letters (found {found:?}), so its apt suite is unknown"
    )]
    NoCodename {
        /// The base image's name.
        image: String,
        /// What was found.
        found: String,
    },
    /// `debugfs` could not run or failed.
    #[error("debugfs {action} on {path} failed: {detail}")]
    Debugfs {
        /// What it was asked to do.
        action: String,
        /// The ext4 image.
        path: PathBuf,
        /// Exit status or stderr.
        detail: String,
    },
    /// A filesystem operation failed.
    #[error("{path}")]
    Io {
        /// Path that failed.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> BaseImageError + '_ {
    move |source| BaseImageError::Io {
        path: path.to_owned(),
        source,
    }
}

/// An installed image to build on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseImage {
    /// Its name (for errors and the record).
    pub name: String,
    /// Its store id (for the record).
    pub id: i64,
    /// Its root filesystem (ext4).
    pub rootfs: PathBuf,
    /// Its work seed (ext4 holding `/root`), if it has one.
    pub work_seed: Option<PathBuf>,
}

/// The supported distributions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Distro {
    /// Debian or a derivative naming debian in `ID_LIKE`.
    Debian,
    /// Ubuntu or a derivative naming ubuntu in `ID_LIKE`.
    Ubuntu,
}

impl Distro {
    /// The archive apt installs from.
    pub fn mirror(self) -> &'static str {
        match self {
            Distro::Debian => DEBIAN_MIRROR,
            Distro::Ubuntu => UBUNTU_MIRROR,
        }
    }
}

/// What [`inspect`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseSystem {
    /// The distribution family.
    pub distro: Distro,
    /// `VERSION_CODENAME`, the apt suite.
    pub suite: String,
    /// `PRETTY_NAME` (or `ID`), for the record.
    pub pretty_name: String,
}

/// `os-release` as key/value pairs (quotes removed, comments skipped).
pub fn parse_os_release(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            if line.starts_with('#') {
                return None;
            }
            let (key, value) = line.split_once('=')?;
            let value = value.trim();
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(value);
            Some((key.trim().to_owned(), value.to_owned()))
        })
        .collect()
}

/// Classifies parsed `os-release` fields of image `image`: Ubuntu when `ID`
/// or `ID_LIKE` names ubuntu, else Debian when they name debian, else an
/// error naming what was found; the suite is `VERSION_CODENAME`.
pub fn classify(
    image: &str,
    fields: &BTreeMap<String, String>,
) -> Result<BaseSystem, BaseImageError> {
    let get = |key: &str| fields.get(key).map(String::as_str).unwrap_or("");
    let id = get("ID");
    let id_like = get("ID_LIKE");
    let names: Vec<&str> = std::iter::once(id)
        .chain(id_like.split_whitespace())
        .collect();
    let distro = if names.contains(&"ubuntu") {
        Distro::Ubuntu
    } else if names.contains(&"debian") {
        Distro::Debian
    } else {
        return Err(BaseImageError::Unsupported {
            image: image.to_owned(),
            id: id.to_owned(),
            id_like: id_like.to_owned(),
        });
    };
    let codename = get("VERSION_CODENAME");
    if super::validate_suite(codename).is_err() {
        return Err(BaseImageError::NoCodename {
            image: image.to_owned(),
            found: codename.to_owned(),
        });
    }
    let pretty = get("PRETTY_NAME");
    Ok(BaseSystem {
        distro,
        suite: codename.to_owned(),
        pretty_name: if pretty.is_empty() { id } else { pretty }.to_owned(),
    })
}

fn debugfs(image: &Path, request: &str) -> Result<(Vec<u8>, String), BaseImageError> {
    let out = Command::new(super::run::find_program("debugfs"))
        .arg("-R")
        .arg(request)
        .arg(image)
        .output()
        .map_err(|source| BaseImageError::Debugfs {
            action: request.to_owned(),
            path: image.to_owned(),
            detail: format!("cannot run debugfs (Debian package e2fsprogs): {source}"),
        })?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        return Err(BaseImageError::Debugfs {
            action: request.to_owned(),
            path: image.to_owned(),
            detail: format!("{}: {}", out.status, stderr.trim()),
        });
    }
    Ok((out.stdout, stderr))
}

/// debugfs reports a missing path on stderr and still exits 0.
fn not_found(stderr: &str) -> bool {
    stderr.contains("File not found")
}

/// Whether `path` exists in the ext4 `image` (intermediate symlinks are
/// followed, so `/lib64/...` works on merged-/usr systems).
fn exists(image: &Path, path: &str) -> Result<bool, BaseImageError> {
    let (_, stderr) = debugfs(image, &format!("stat \"{path}\""))?;
    Ok(!not_found(&stderr))
}

/// Reads the base's `os-release` and checks for apt and the glibc loader.
pub fn inspect(base: &BaseImage) -> Result<BaseSystem, BaseImageError> {
    // /etc/os-release is usually a symlink, which debugfs does not follow
    // as the last component: the /usr/lib file is the real one.
    let mut text = None;
    for path in ["/usr/lib/os-release", "/etc/os-release"] {
        let (stdout, stderr) = debugfs(&base.rootfs, &format!("cat \"{path}\""))?;
        if !not_found(&stderr) && !stdout.is_empty() {
            text = Some(String::from_utf8_lossy(&stdout).into_owned());
            break;
        }
    }
    let text = text.ok_or_else(|| BaseImageError::NoOsRelease {
        image: base.name.clone(),
    })?;
    let system = classify(&base.name, &parse_os_release(&text))?;
    for (path, what) in [
        (APT_GET, "apt installs the packages"),
        (GLIBC_LOADER, "the glibc loader the pinned tools need"),
    ] {
        if !exists(&base.rootfs, path)? {
            return Err(BaseImageError::Missing {
                image: base.name.clone(),
                path,
                what,
            });
        }
    }
    Ok(system)
}

/// Dumps the ext4 `image`'s root directory into the existing `dir` (owners
/// are the caller's unless it is root; [`base_tar::pack`] takes them from
/// the image) and removes `lost+found`.
fn dump(image: &Path, dir: &Path) -> Result<(), BaseImageError> {
    let target = dir.to_str().ok_or_else(|| {
        io_err(dir)(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not valid UTF-8, which debugfs commands need",
        ))
    })?;
    if target.contains('"') {
        return Err(io_err(dir)(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "contains a double quote, which debugfs commands cannot carry",
        )));
    }
    debugfs(image, &format!("rdump / \"{target}\""))?;
    let lost = dir.join("lost+found");
    if lost.exists() {
        fs_err::remove_dir_all(&lost).map_err(io_err(&lost))?;
    }
    Ok(())
}

/// Copies `base` (its rootfs, and its work seed as `/root`) into the new
/// directory `tree` and packs it as `tar`, each entry with the owner and
/// mode the image records (so the build's namespace maps them as they
/// were), then removes `tree`. Works as root or as an unprivileged user.
pub fn extract(base: &BaseImage, tree: &Path, tar: &Path) -> Result<(), BaseImageError> {
    fs_err::create_dir(tree).map_err(io_err(tree))?;
    let script = tree.with_extension("debugfs-ls");
    let mut listing = Listing::default();
    dump(&base.rootfs, tree)?;
    listing.read(&base.rootfs, &directories(tree)?, Path::new(""), &script)?;
    if let Some(seed) = &base.work_seed {
        let root = tree.join("root");
        if !root.exists() {
            fs_err::create_dir(&root).map_err(io_err(&root))?;
        }
        dump(seed, &root)?;
        listing.read(seed, &directories(&root)?, Path::new("root"), &script)?;
    }
    if base.work_seed.is_some() {
        // /root as a Debian system has it, whatever the seed's root says.
        listing.set(
            PathBuf::from("root"),
            Owner {
                mode: 0o040700,
                uid: 0,
                gid: 0,
            },
        );
    }
    pack(tree, &listing, tar)?;
    fs_err::remove_dir_all(tree).map_err(io_err(tree))
}

/// Turns a normal build's mmdebstrap arguments into a build on top of the
/// base tree in `tar`: `--variant=custom` (only the `--include`d packages
/// are installed, with the tree's own dpkg) and the tar unpacked by the
/// first setup hook.
pub fn on_base_args(mut args: Vec<std::ffi::OsString>, tar: &Path) -> Vec<std::ffi::OsString> {
    for arg in &mut args {
        if arg == "--variant=minbase" {
            *arg = "--variant=custom".into();
        }
    }
    let mut hook = std::ffi::OsString::from("--setup-hook=tar-in ");
    hook.push(super::shell_quote(tar.as_os_str()));
    hook.push(" /");
    let at = args
        .iter()
        .position(|a| a.to_string_lossy().starts_with("--setup-hook="))
        .unwrap_or(0);
    args.insert(at, hook);
    args
}

#[cfg(test)]
#[path = "base_tests.rs"]
mod tests;
