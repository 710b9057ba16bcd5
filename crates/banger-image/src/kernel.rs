//! Obtain a Debian kernel package and unpack it into banger's cache.
//!
//! The default guest kernel is Debian's `linux-image-cloud-amd64`: small, built for
//! virtual machines, security-maintained, and fetchable with plain `apt-get
//! download` on any Debian-family host (no root, no installation). The
//! metapackage is resolved to the concrete `linux-image-<ver>-cloud-amd64`
//! package with `apt-cache depends`, the `.deb` is downloaded into a scratch dir,
//! unpacked with `dpkg-deb -x` (the real tool, never the host's package
//! database) and the tree is renamed into `<cache>/kernels/<package>/` in one
//! step, so a crash never leaves a half-unpacked kernel that looks complete.
//! A package already in the cache is reused without touching apt's network.
//!
//! A package written `NAME/SUITE` (e.g. `linux-image-cloud-amd64/bookworm-backports`)
//! comes from that suite of Debian's mirror even if the host's apt sources do
//! not list it: apt runs with a private configuration under
//! `<cache>/apt/<suite>/` (its own sources.list, lists and cache, the host's
//! Debian archive keyring), so the host's apt setup is never changed.
//!
//! The unpacked tree gets a `modules.dep` (see [`crate::modules::ensure_modules_dep`])
//! because the package ships without one.

use std::path::{Path, PathBuf};
use std::process::Command;

use thiserror::Error;

use crate::modules::{self, ModulesError};

/// Debian's metapackage that always depends on the current cloud kernel.
pub const DEBIAN_CLOUD_METAPACKAGE: &str = "linux-image-cloud-amd64";

/// Why a kernel could not be obtained.
#[derive(Debug, Error)]
pub enum KernelError {
    /// A filesystem operation failed.
    #[error("{path}")]
    Io {
        /// Path that failed.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// An external tool (apt-cache, apt-get, dpkg-deb) could not run or failed.
    #[error("{tool} failed for {package}: {detail}")]
    Tool {
        /// The program.
        tool: &'static str,
        /// Package being handled.
        package: String,
        /// Exit status and stderr.
        detail: String,
    },
    /// The package name contains characters apt would interpret (options, globs).
    #[error("invalid Debian package name {0:?}")]
    InvalidPackage(String),
    /// The unpacked package does not look like a kernel package.
    #[error("{path} is not an unpacked kernel package: {reason}")]
    NotAKernel {
        /// The unpacked tree.
        path: PathBuf,
        /// What is missing.
        reason: String,
    },
    /// Preparing the modules tree failed.
    #[error(transparent)]
    Modules(#[from] ModulesError),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> KernelError + '_ {
    move |source| KernelError::Io {
        path: path.to_owned(),
        source,
    }
}

/// An unpacked kernel ready to boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kernel {
    /// Concrete package name, e.g. `linux-image-6.1.0-56-cloud-amd64`.
    pub package: String,
    /// `uname -r` of the kernel, e.g. `6.1.0-56-cloud-amd64`.
    pub version: String,
    /// Root of the unpacked package.
    pub root: PathBuf,
    /// The compressed kernel (`boot/vmlinuz-<version>`), bootable by QEMU.
    pub vmlinuz: PathBuf,
    /// The modules tree (`lib/modules/<version>`), with a `modules.dep`.
    pub modules_dir: PathBuf,
}

/// Mirror used for `NAME/SUITE` packages.
pub const DEBIAN_MIRROR: &str = "http://deb.debian.org/debian";
/// Keyring that signs Debian's archive (Debian package `debian-archive-keyring`).
pub const DEBIAN_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// Splits `NAME/SUITE` into the package name and the suite.
pub fn split_suite(package: &str) -> (&str, Option<&str>) {
    match package.split_once('/') {
        Some((name, suite)) => (name, Some(suite)),
        None => (package, None),
    }
}

/// Checks that `name` is a plain Debian package name (policy §5.6.1: lowercase
/// alphanumerics and `+ - .`, starting alphanumeric), optionally followed by
/// `/SUITE` (lowercase letters, digits and `-`), so it can be passed to apt
/// without being taken for an option or pattern.
pub fn validate_package_name(package: &str) -> Result<(), KernelError> {
    let (name, suite) = split_suite(package);
    let suite_ok = suite.is_none_or(|suite| {
        !suite.is_empty()
            && suite.starts_with(|c: char| c.is_ascii_lowercase())
            && suite
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    });
    let ok = suite_ok
        && name.len() >= 2
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(KernelError::InvalidPackage(package.to_owned()))
    }
}

/// apt's options for a private configuration that sees one suite of
/// [`DEBIAN_MIRROR`] (empty for the host's own sources). Its lists are
/// fetched (`apt-get update`) when made.
fn apt_options(cache_dir: &Path, suite: Option<&str>) -> Result<Vec<String>, KernelError> {
    let Some(suite) = suite else {
        return Ok(Vec::new());
    };
    let dir = cache_dir.join("apt").join(suite);
    for sub in ["lists/partial", "cache/archives/partial", "sources.list.d"] {
        let path = dir.join(sub);
        fs_err::create_dir_all(&path).map_err(io_err(&path))?;
    }
    let sources = dir.join("sources.list");
    fs_err::write(
        &sources,
        format!("deb [signed-by={DEBIAN_KEYRING}] {DEBIAN_MIRROR} {suite} main\n"),
    )
    .map_err(io_err(&sources))?;
    let options: Vec<String> = [
        format!("Dir::Etc::SourceList={}", sources.display()),
        format!(
            "Dir::Etc::SourceParts={}",
            dir.join("sources.list.d").display()
        ),
        format!("Dir::State::Lists={}", dir.join("lists").display()),
        format!("Dir::Cache={}", dir.join("cache").display()),
        // Our own lists need no lock on the host's, and apt's sandbox user
        // could not write into the owner's cache.
        "Debug::NoLocking=1".to_owned(),
        "APT::Sandbox::User=root".to_owned(),
    ]
    .into_iter()
    .flat_map(|option| ["-o".to_owned(), option])
    .collect();
    run(
        "apt-get",
        suite,
        Command::new("apt-get")
            .args(&options)
            .args(["update", "-q"]),
    )?;
    Ok(options)
}

fn run(tool: &'static str, package: &str, cmd: &mut Command) -> Result<String, KernelError> {
    let out = cmd.output().map_err(|e| KernelError::Tool {
        tool,
        package: package.to_owned(),
        detail: format!("cannot run: {e}"),
    })?;
    if !out.status.success() {
        return Err(KernelError::Tool {
            tool,
            package: package.to_owned(),
            detail: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Picks the concrete kernel package out of `apt-cache depends` output: the
/// first `Depends:` on a `linux-image-*` package. None means `package` is
/// already concrete.
pub fn parse_apt_depends(output: &str) -> Option<String> {
    output.lines().find_map(|line| {
        let dep = line
            .trim()
            .trim_start_matches('|')
            .strip_prefix("Depends:")?
            .trim();
        (dep.starts_with("linux-image-") && !dep.starts_with('<')).then(|| dep.to_owned())
    })
}

/// Resolves a metapackage such as `linux-image-cloud-amd64` to the concrete
/// kernel package it currently depends on (a concrete name is returned as is).
/// Uses the local apt lists only.
pub fn resolve_package(package: &str) -> Result<String, KernelError> {
    resolve_with(package, &[])
}

fn resolve_with(package: &str, options: &[String]) -> Result<String, KernelError> {
    validate_package_name(package)?;
    let (name, _) = split_suite(package);
    let out = run(
        "apt-cache",
        package,
        Command::new("apt-cache")
            .args(options)
            .args(["depends", "--important", "--", name]),
    )?;
    Ok(parse_apt_depends(&out).unwrap_or_else(|| name.to_owned()))
}

/// Returns the kernel for `package` (a metapackage or a concrete package),
/// downloading and unpacking it under `<cache_dir>/kernels/` unless it is
/// already there.
pub fn fetch_debian_kernel(cache_dir: &Path, package: &str) -> Result<Kernel, KernelError> {
    validate_package_name(package)?;
    let options = apt_options(cache_dir, split_suite(package).1)?;
    let concrete = resolve_with(package, &options)?;
    let kernels = cache_dir.join("kernels");
    let dest = kernels.join(&concrete);
    if dest.is_dir() {
        return load_unpacked(&dest, &concrete);
    }
    fs_err::create_dir_all(&kernels).map_err(io_err(&kernels))?;
    let scratch = kernels.join(format!(".tmp-{concrete}-{}", std::process::id()));
    if scratch.exists() {
        fs_err::remove_dir_all(&scratch).map_err(io_err(&scratch))?;
    }
    let download = scratch.join("deb");
    let tree = scratch.join("tree");
    fs_err::create_dir_all(&download).map_err(io_err(&download))?;
    let result = (|| {
        // apt-get download writes into the working directory.
        run(
            "apt-get",
            &concrete,
            Command::new("apt-get")
                .args(&options)
                .args(["download", "-q", "--", &concrete])
                .current_dir(&download),
        )?;
        let deb = find_deb(&download, &concrete)?;
        run(
            "dpkg-deb",
            &concrete,
            Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&tree),
        )?;
        let kernel = load_unpacked(&tree, &concrete)?;
        modules::ensure_modules_dep(&kernel.modules_dir, &kernel.version)?;
        if let Err(e) = fs_err::rename(&tree, &dest) {
            // Another process may have finished the same fetch first; its
            // complete tree is as good as ours.
            if !dest.is_dir() {
                return Err(io_err(&dest)(e));
            }
        }
        load_unpacked(&dest, &concrete)
    })();
    // Best effort: the scratch dir only holds the .deb (and the tree on failure).
    let _ = fs_err::remove_dir_all(&scratch);
    result
}

fn find_deb(dir: &Path, package: &str) -> Result<PathBuf, KernelError> {
    for entry in fs_err::read_dir(dir).map_err(io_err(dir))? {
        let path = entry.map_err(io_err(dir))?.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.starts_with(&format!("{package}_")) && name.ends_with(".deb") {
            return Ok(path);
        }
    }
    Err(KernelError::Tool {
        tool: "apt-get",
        package: package.to_owned(),
        detail: format!("no .deb appeared in {}", dir.display()),
    })
}

/// Describes an already unpacked kernel package tree (as produced by
/// `dpkg-deb -x`): finds the single modules directory (`lib/modules/<ver>` or
/// `usr/lib/modules/<ver>`) and `boot/vmlinuz-<ver>`.
pub fn load_unpacked(root: &Path, package: &str) -> Result<Kernel, KernelError> {
    let not_kernel = |reason: String| KernelError::NotAKernel {
        path: root.to_owned(),
        reason,
    };
    let modules_parent = ["lib/modules", "usr/lib/modules"]
        .iter()
        .map(|p| root.join(p))
        .find(|p| p.is_dir())
        .ok_or_else(|| not_kernel("no lib/modules directory".into()))?;
    let mut versions = Vec::new();
    for entry in fs_err::read_dir(&modules_parent).map_err(io_err(&modules_parent))? {
        let entry = entry.map_err(io_err(&modules_parent))?;
        if entry.path().is_dir() {
            versions.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    let [version] = versions.as_slice() else {
        return Err(not_kernel(format!(
            "expected one modules directory, found {versions:?}"
        )));
    };
    let vmlinuz = root.join("boot").join(format!("vmlinuz-{version}"));
    if !vmlinuz.is_file() {
        return Err(not_kernel(format!("missing {}", vmlinuz.display())));
    }
    Ok(Kernel {
        package: package.to_owned(),
        version: version.clone(),
        root: root.to_owned(),
        vmlinuz,
        modules_dir: modules_parent.join(version),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_metapackage_dependency() {
        let out = "linux-image-cloud-amd64\n  Depends: linux-image-6.1.0-56-cloud-amd64\n";
        assert_eq!(
            parse_apt_depends(out).as_deref(),
            Some("linux-image-6.1.0-56-cloud-amd64")
        );
        let concrete = "linux-image-6.1.0-56-cloud-amd64\n  Depends: kmod\n  Depends: linux-base\n |Depends: initramfs-tools\n";
        assert_eq!(parse_apt_depends(concrete), None);
    }

    #[test]
    fn package_names_are_validated() {
        validate_package_name("linux-image-6.1.0-56-cloud-amd64").unwrap();
        validate_package_name("linux-image-cloud-amd64/bookworm-backports").unwrap();
        for bad in [
            "-o",
            "Linux",
            "a b",
            "x;rm",
            "",
            "linux*",
            "linux-image/",
            "linux-image/-o",
            "linux-image/a/b",
            "linux-image/Bookworm",
            "/bookworm",
        ] {
            assert!(validate_package_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn load_unpacked_finds_layout() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs_err::create_dir_all(root.join("usr/lib/modules/6.9.0-test")).unwrap();
        let err = load_unpacked(root, "pkg").unwrap_err();
        assert!(err.to_string().contains("vmlinuz-6.9.0-test"), "{err}");
        fs_err::create_dir_all(root.join("boot")).unwrap();
        fs_err::write(root.join("boot/vmlinuz-6.9.0-test"), b"x").unwrap();
        let k = load_unpacked(root, "pkg").unwrap();
        assert_eq!(k.version, "6.9.0-test");
        assert_eq!(k.modules_dir, root.join("usr/lib/modules/6.9.0-test"));
    }
}
