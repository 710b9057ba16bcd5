//! Whose banger this is: the owner's account, looked up through the name
//! service (`getent`, so LDAP and other NSS users work), and their banger
//! directories.
//!
//! The owner comes from `--owner USER`, else from `SUDO_USER` (the person
//! who ran `sudo banger system install`). Root is never the owner: root
//! runs `bangerd` itself, with no helper and no install.

use std::path::{Path, PathBuf};
use std::process::Command;

use banger_config::Paths;

/// The owner of a system install.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Owner {
    /// Login name.
    pub name: String,
    /// Uid.
    pub uid: u32,
    /// Primary gid.
    pub gid: u32,
    /// Name of the primary group.
    pub group: String,
    /// Home directory.
    pub home: PathBuf,
}

/// Finding the owner failed.
#[derive(Debug, thiserror::Error)]
pub enum OwnerError {
    /// No `--owner` and no `SUDO_USER`.
    #[error(
        "no owner given: run `sudo banger system install` from the developer's account, or name the developer with --owner USER"
    )]
    NotGiven,
    /// The owner would be root.
    #[error(
        "{name} (uid 0) cannot own a system install: root runs bangerd itself without the helper; name the developer who will use banger with --owner USER"
    )]
    Root {
        /// The name given.
        name: String,
    },
    /// The name is not a plausible login name.
    #[error("{name:?} is not a login name")]
    BadName {
        /// The name given.
        name: String,
    },
    /// The name service does not know the user.
    #[error("there is no user {name} (getent passwd {name} found nothing)")]
    Unknown {
        /// The name given.
        name: String,
    },
    /// `getent` could not run.
    #[error("cannot run getent to look up {what}")]
    Getent {
        /// What was looked up.
        what: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// `getent` printed something that is not a passwd or group entry.
    #[error("getent printed an unreadable entry for {what}: {line:?}")]
    Malformed {
        /// What was looked up.
        what: String,
        /// The line.
        line: String,
    },
    /// The owner's home is not an absolute path.
    #[error("{name}'s home directory {home:?} is not an absolute path")]
    BadHome {
        /// The owner.
        name: String,
        /// The home from the passwd entry.
        home: String,
    },
    /// The owner's banger directories could not be resolved.
    #[error("cannot resolve {name}'s banger directories")]
    Paths {
        /// The owner.
        name: String,
        /// The cause.
        #[source]
        source: banger_config::PathsError,
    },
}

/// Picks the owner's name: `--owner`, else `SUDO_USER`.
pub fn owner_name(given: Option<&str>, sudo_user: Option<&str>) -> Result<String, OwnerError> {
    given
        .or(sudo_user)
        .filter(|name| !name.is_empty())
        .map(str::to_owned)
        .ok_or(OwnerError::NotGiven)
}

/// Whether `name` is a login name banger accepts (the install metadata's rule).
pub fn valid_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

impl Owner {
    /// Looks `name` up and refuses root.
    pub fn lookup(name: &str) -> Result<Self, OwnerError> {
        if !valid_name(name) {
            return Err(OwnerError::BadName {
                name: name.to_owned(),
            });
        }
        let line = getent("passwd", name)?.ok_or_else(|| OwnerError::Unknown {
            name: name.to_owned(),
        })?;
        let mut owner = Self::parse_passwd(&line)?;
        owner.group = getent("group", &owner.gid.to_string())?
            .and_then(|line| line.split(':').next().map(str::to_owned))
            .unwrap_or_else(|| owner.gid.to_string());
        Ok(owner)
    }

    /// Parses one `getent passwd` line (the group name is filled in later)
    /// and refuses uid 0.
    pub fn parse_passwd(line: &str) -> Result<Self, OwnerError> {
        let malformed = || OwnerError::Malformed {
            what: "a user".into(),
            line: line.to_owned(),
        };
        let fields: Vec<&str> = line.trim_end().split(':').collect();
        let [name, _, uid, gid, _, home, _] = fields.as_slice() else {
            return Err(malformed());
        };
        let uid: u32 = uid.parse().map_err(|_| malformed())?;
        let gid: u32 = gid.parse().map_err(|_| malformed())?;
        if uid == 0 {
            return Err(OwnerError::Root {
                name: (*name).to_owned(),
            });
        }
        let home_path = PathBuf::from(home);
        if !home_path.is_absolute() {
            return Err(OwnerError::BadHome {
                name: (*name).to_owned(),
                home: (*home).to_owned(),
            });
        }
        Ok(Self {
            name: (*name).to_owned(),
            uid,
            gid,
            group: gid.to_string(),
            home: home_path,
        })
    }

    /// The owner's banger directories as the service sees them: the XDG
    /// defaults under their home (no environment of the caller leaks in).
    /// The runtime dir is `/run/user/<uid>/banger`, which `bangerd.service`
    /// keeps alive and the CLI finds by its usual fallback.
    pub fn paths(&self) -> Result<Paths, OwnerError> {
        let home = self.home.to_string_lossy().into_owned();
        let runtime = self.runtime_base().to_string_lossy().into_owned();
        let env = move |name: &str| match name {
            "HOME" => Some(home.clone()),
            "XDG_RUNTIME_DIR" => Some(runtime.clone()),
            _ => None,
        };
        Paths::from_lookup(&env).map_err(|source| OwnerError::Paths {
            name: self.name.clone(),
            source,
        })
    }

    /// `/run/user/<uid>`: the owner's login runtime dir, which
    /// `user-runtime-dir@<uid>.service` mounts.
    pub fn runtime_base(&self) -> PathBuf {
        PathBuf::from(format!("/run/user/{}", self.uid))
    }

    /// The runtime dir the owner's CLI uses when nothing overrides it (see
    /// banger_config::paths): `/run/user/<uid>` when it exists and is
    /// theirs, else `<temp>/banger-<uid>`.
    pub fn default_runtime_dir(&self) -> PathBuf {
        let run_user = self.runtime_base();
        match fs_err::metadata(&run_user) {
            Ok(metadata)
                if metadata.is_dir()
                    && std::os::unix::fs::MetadataExt::uid(&metadata) == self.uid =>
            {
                run_user.join("banger")
            }
            _ => std::env::temp_dir()
                .join(format!("banger-{}", self.uid))
                .join("banger"),
        }
    }

    /// A command that runs as the owner (uid, primary gid, no supplementary
    /// groups), with a minimal environment: used for everything done in the
    /// owner's home, so root never follows a link the owner planted there.
    pub fn command(&self, program: impl AsRef<Path>) -> Command {
        use std::os::unix::process::CommandExt;
        let mut command = Command::new(program.as_ref());
        command
            .uid(self.uid)
            .gid(self.gid)
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("HOME", &self.home)
            .current_dir("/");
        command
    }
}

/// `getent DATABASE KEY`: the entry, or `None` when there is none.
pub(crate) fn getent(database: &str, key: &str) -> Result<Option<String>, OwnerError> {
    let what = format!("{database} {key}");
    let output = Command::new("getent")
        .args([database, key])
        .output()
        .map_err(|source| OwnerError::Getent {
            what: what.clone(),
            source,
        })?;
    // Exit 2: no such key.
    if !output.status.success() {
        return Ok(None);
    }
    let text = String::from_utf8_lossy(&output.stdout);
    Ok(text.lines().next().map(str::to_owned))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_owner_comes_from_the_flag_then_sudo_user() {
        assert_eq!(owner_name(Some("a"), Some("b")).unwrap(), "a");
        assert_eq!(owner_name(None, Some("b")).unwrap(), "b");
        assert!(matches!(owner_name(None, None), Err(OwnerError::NotGiven)));
        assert!(matches!(
            owner_name(None, Some("")),
            Err(OwnerError::NotGiven)
        ));
    }

    #[test]
    fn root_is_refused_as_owner() {
        let error = Owner::parse_passwd("toor:x:0:0:root:/root:/bin/bash").unwrap_err();
        assert!(matches!(&error, OwnerError::Root { name } if name == "toor"));
        assert!(error.to_string().contains("--owner USER"), "{error}");
        // Through the name service too: root is uid 0 on every host.
        assert!(matches!(
            Owner::lookup("root"),
            Err(OwnerError::Root { .. })
        ));
    }

    #[test]
    fn passwd_lines_parse_and_bad_ones_are_refused() {
        let owner = Owner::parse_passwd("dev:x:1000:1000:Dev,,,:/home/dev:/bin/bash").unwrap();
        assert_eq!(
            (owner.name.as_str(), owner.uid, owner.gid),
            ("dev", 1000, 1000)
        );
        assert_eq!(owner.home, Path::new("/home/dev"));
        assert!(matches!(
            Owner::parse_passwd("dev:x:abc:1000::/home/dev:/bin/sh"),
            Err(OwnerError::Malformed { .. })
        ));
        assert!(matches!(
            Owner::parse_passwd("dev:x:1000:1000::home:/bin/sh"),
            Err(OwnerError::BadHome { .. })
        ));
        assert!(matches!(
            Owner::lookup("-rf"),
            Err(OwnerError::BadName { .. })
        ));
        assert!(matches!(
            Owner::lookup("no-such-user-banger"),
            Err(OwnerError::Unknown { .. })
        ));
    }

    #[test]
    fn the_owners_paths_are_the_xdg_defaults_under_their_home() {
        let owner = Owner::parse_passwd("dev:x:1000:1000::/home/dev:/bin/sh").unwrap();
        let paths = owner.paths().unwrap();
        assert_eq!(paths.config_dir, Path::new("/home/dev/.config/banger"));
        assert_eq!(paths.state_dir, Path::new("/home/dev/.local/state/banger"));
        assert_eq!(paths.cache_dir, Path::new("/home/dev/.cache/banger"));
        assert_eq!(
            paths.socket(),
            Path::new("/run/user/1000/banger/bangerd.sock")
        );
    }
}
