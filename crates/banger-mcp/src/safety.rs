//! Host paths an agent may name: only below the allowed roots
//! (`--allow-path DIR`, the current directory by default).
//!
//! A path is refused outright when it has a `..` component, then resolved
//! with every symlink followed (`canonicalize`) and accepted only if the
//! result is inside a root that was itself resolved the same way, so
//! neither `..` nor a symlink inside a root leads out of it. Relative
//! paths are taken from the first root.

use std::path::{Component, Path, PathBuf};

/// Why a host path was refused.
#[derive(Debug, thiserror::Error)]
pub enum HostPathError {
    /// The path has a `..` component.
    #[error("host path {path} has a `..` component; name a path inside an allowed root")]
    ParentComponent {
        /// The path as given.
        path: PathBuf,
    },
    /// The path could not be resolved (it does not exist, or a component
    /// is not a searchable directory).
    #[error("cannot resolve a host path")]
    Resolve {
        /// The cause, naming the path.
        #[source]
        source: std::io::Error,
    },
    /// The path resolves outside every allowed root.
    #[error(
        "host path {resolved} (symlinks followed) is outside the allowed roots ({roots}); start `banger mcp` with `--allow-path DIR` to allow more"
    )]
    Outside {
        /// The path as given.
        path: PathBuf,
        /// Where it leads.
        resolved: PathBuf,
        /// The allowed roots, comma-separated.
        roots: String,
    },
    /// An allowed root is not a directory.
    #[error("allowed root {path} is not a directory")]
    RootNotDirectory {
        /// The root.
        path: PathBuf,
    },
    /// No roots were given.
    #[error("no allowed roots")]
    NoRoots,
}

/// The directories host paths must stay inside, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedRoots {
    roots: Vec<PathBuf>,
}

impl AllowedRoots {
    /// Resolves `dirs` (symlinks followed); each must be a directory.
    pub fn new(dirs: &[PathBuf]) -> Result<Self, HostPathError> {
        if dirs.is_empty() {
            return Err(HostPathError::NoRoots);
        }
        let mut roots = Vec::with_capacity(dirs.len());
        for dir in dirs {
            let root =
                fs_err::canonicalize(dir).map_err(|source| HostPathError::Resolve { source })?;
            if !root.is_dir() {
                return Err(HostPathError::RootNotDirectory { path: root });
            }
            roots.push(root);
        }
        Ok(Self { roots })
    }

    /// The resolved roots, the first one being where relative paths start.
    pub fn roots(&self) -> &[PathBuf] {
        &self.roots
    }

    /// The first root (where relative paths start).
    pub fn first(&self) -> &Path {
        // `new` refuses an empty list.
        self.roots.first().map_or(Path::new("/"), PathBuf::as_path)
    }

    /// `path` resolved, if it exists and lies inside a root.
    pub fn check(&self, path: &Path) -> Result<PathBuf, HostPathError> {
        if path
            .components()
            .any(|component| component == Component::ParentDir)
        {
            return Err(HostPathError::ParentComponent {
                path: path.to_owned(),
            });
        }
        let joined = self.first().join(path);
        let resolved =
            fs_err::canonicalize(&joined).map_err(|source| HostPathError::Resolve { source })?;
        if self.contains(&resolved) {
            Ok(resolved)
        } else {
            Err(HostPathError::Outside {
                path: path.to_owned(),
                resolved,
                roots: self.describe(),
            })
        }
    }

    /// Whether an already resolved path lies inside a root.
    pub fn contains(&self, resolved: &Path) -> bool {
        self.roots.iter().any(|root| resolved.starts_with(root))
    }

    /// The roots, comma-separated, for messages.
    pub fn describe(&self) -> String {
        self.roots
            .iter()
            .map(|root| root.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_inside_a_root_resolve() {
        let temp = tempfile::tempdir().unwrap();
        let root = temp.path().join("root");
        fs_err::create_dir_all(root.join("repo/src")).unwrap();
        let roots = AllowedRoots::new(std::slice::from_ref(&root)).unwrap();
        let root = fs_err::canonicalize(&root).unwrap();
        assert_eq!(roots.check(&root.join("repo")).unwrap(), root.join("repo"));
        assert_eq!(
            roots.check(Path::new("repo/src")).unwrap(),
            root.join("repo/src")
        );
        assert_eq!(roots.check(Path::new(".")).unwrap(), root);
    }

    #[test]
    fn escapes_are_refused() {
        let temp = tempfile::tempdir().unwrap();
        let root = temp.path().join("root");
        let outside = temp.path().join("outside");
        fs_err::create_dir_all(root.join("repo")).unwrap();
        fs_err::create_dir_all(&outside).unwrap();
        fs_err::os::unix::fs::symlink(&outside, root.join("link")).unwrap();
        let roots = AllowedRoots::new(std::slice::from_ref(&root)).unwrap();

        assert!(matches!(
            roots.check(&outside),
            Err(HostPathError::Outside { .. })
        ));
        assert!(matches!(
            roots.check(&root.join("repo/../../outside")),
            Err(HostPathError::ParentComponent { .. })
        ));
        assert!(matches!(
            roots.check(Path::new("repo/..")),
            Err(HostPathError::ParentComponent { .. })
        ));
        let error = roots.check(&root.join("link")).unwrap_err();
        assert!(matches!(error, HostPathError::Outside { .. }), "{error}");
        assert!(error.to_string().contains("--allow-path"), "{error}");
        assert!(matches!(
            roots.check(&root.join("missing")),
            Err(HostPathError::Resolve { .. })
        ));
        // A sibling whose name merely starts with the root's is outside.
        fs_err::create_dir_all(temp.path().join("rootless")).unwrap();
        assert!(matches!(
            roots.check(&temp.path().join("rootless")),
            Err(HostPathError::Outside { .. })
        ));
    }

    #[test]
    fn roots_must_be_directories() {
        let temp = tempfile::tempdir().unwrap();
        let file = temp.path().join("file");
        fs_err::write(&file, "x").unwrap();
        assert!(matches!(
            AllowedRoots::new(&[file]),
            Err(HostPathError::RootNotDirectory { .. })
        ));
        assert!(matches!(
            AllowedRoots::new(&[]),
            Err(HostPathError::NoRoots)
        ));
    }
}
