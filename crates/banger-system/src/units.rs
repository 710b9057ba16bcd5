//! The two systemd units, rendered from templates (`src/units/*.service.in`)
//! with the owner's account, the layout and the owner's banger directories.
//!
//! Every substituted value is checked to be a plain path or name (letters,
//! digits, `/ . _ - + @`), so no value can add a directive, quote, specifier
//! (`%`) or line of its own; anything else is refused.

use std::path::{Path, PathBuf};

use crate::layout::Layout;
use crate::owner::{Owner, OwnerError};

/// The root helper's unit name.
pub const ROOT_UNIT: &str = "bangerd-root.service";
/// The owner's daemon's unit name.
pub const DAEMON_UNIT: &str = "bangerd.service";

const ROOT_TEMPLATE: &str = include_str!("units/bangerd-root.service.in");
const DAEMON_TEMPLATE: &str = include_str!("units/bangerd.service.in");

/// Rendering a unit failed.
#[derive(Debug, thiserror::Error)]
pub enum UnitError {
    /// A value would not be safe in a unit file.
    #[error(
        "{what} {value:?} cannot go into a unit file: only letters, digits and / . _ - + @ are allowed"
    )]
    UnsafeValue {
        /// What the value is (the owner's home, the bin dir, ...).
        what: &'static str,
        /// The value.
        value: String,
    },
    /// The owner's directories could not be resolved.
    #[error(transparent)]
    Owner(#[from] OwnerError),
}

/// One rendered unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedUnit {
    /// Its name (`bangerd-root.service`, `bangerd.service`).
    pub name: &'static str,
    /// Its text.
    pub text: String,
}

/// Renders both units.
pub fn render(layout: &Layout, owner: &Owner) -> Result<[RenderedUnit; 2], UnitError> {
    let paths = owner.paths()?;
    let path_value = |what: &'static str, path: &Path| checked(what, &path.to_string_lossy());
    let values: Vec<(&str, String)> = vec![
        ("owner", checked("owner name", &owner.name)?),
        ("group", checked("owner's group", &owner.group)?),
        ("uid", owner.uid.to_string()),
        ("home", path_value("owner's home", &owner.home)?),
        ("bin_dir", path_value("bin dir", &layout.bin_dir)?),
        ("metadata", path_value("metadata path", &layout.metadata)?),
        ("config_dir", path_value("config dir", &paths.config_dir)?),
        ("state_dir", path_value("state dir", &paths.state_dir)?),
        ("cache_dir", path_value("cache dir", &paths.cache_dir)?),
    ];
    Ok([
        RenderedUnit {
            name: ROOT_UNIT,
            text: substitute(ROOT_TEMPLATE, &values),
        },
        RenderedUnit {
            name: DAEMON_UNIT,
            text: substitute(DAEMON_TEMPLATE, &values),
        },
    ])
}

/// The unit file path for `name` in the layout's unit dir.
pub fn unit_path(layout: &Layout, name: &str) -> PathBuf {
    layout.unit_dir.join(name)
}

fn checked(what: &'static str, value: &str) -> Result<String, UnitError> {
    let safe = !value.is_empty()
        && value.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'_' | b'-' | b'+' | b'@')
        });
    if safe {
        Ok(value.to_owned())
    } else {
        Err(UnitError::UnsafeValue {
            what,
            value: value.to_owned(),
        })
    }
}

fn substitute(template: &str, values: &[(&str, String)]) -> String {
    let mut text = template.to_owned();
    for (key, value) in values {
        text = text.replace(&format!("{{{{{key}}}}}"), value);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(home: &str) -> Owner {
        Owner {
            name: "dev".into(),
            uid: 1000,
            gid: 1000,
            group: "dev".into(),
            home: home.into(),
        }
    }

    #[test]
    fn units_render_with_the_owner_and_layout() {
        let layout = Layout::with_prefix(Path::new("/usr/local"));
        let [root, daemon] = render(&layout, &owner("/home/dev")).unwrap();
        assert_eq!(root.name, ROOT_UNIT);
        assert_eq!(daemon.name, DAEMON_UNIT);
        assert!(!root.text.contains("{{"), "{}", root.text);
        assert!(!daemon.text.contains("{{"), "{}", daemon.text);
        insta::assert_snapshot!("bangerd-root.service", root.text);
        insta::assert_snapshot!("bangerd.service", daemon.text);
    }

    #[test]
    fn values_that_could_inject_directives_are_refused() {
        let layout = Layout::with_prefix(Path::new("/usr/local"));
        for home in [
            "/home/dev\nExecStartPre=/bin/sh",
            "/home/my dev",
            "/home/%h",
            "/home/\"dev\"",
        ] {
            assert!(
                matches!(
                    render(&layout, &owner(home)),
                    Err(UnitError::UnsafeValue {
                        what: "owner's home",
                        ..
                    })
                ),
                "{home:?}"
            );
        }
        let layout = Layout::with_prefix(Path::new("/opt/my banger"));
        assert!(matches!(
            render(&layout, &owner("/home/dev")),
            Err(UnitError::UnsafeValue {
                what: "bin dir",
                ..
            })
        ));
    }
}
