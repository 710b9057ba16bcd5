//! Names of the network devices banger makes, and how it recognises them.
//!
//! Reconciliation deletes TAP devices nobody claims, so it must only ever see
//! devices banger itself created. banger therefore never accepts a TAP name
//! from a caller: it makes them ([`TapName::new`]) as `bgtap<N>` with `N` a
//! decimal `u32` without leading zeros, and [`TapName::parse`] accepts exactly
//! that form and nothing else (`bgtap01`, `bgtap`, `bgtap-1`, `tap0` are all
//! foreign). The longest name, `bgtap4294967295`, is 15 bytes: the kernel's
//! `IFNAMSIZ` limit (16 including the NUL).
//!
//! The bridge name comes from the configuration, so it is only checked to be
//! a plain interface name ([`BridgeName::new`]), the same rule `banger-config`
//! applies to `bridge_name`.

use std::fmt;

/// The prefix of every TAP device banger creates.
pub const TAP_PREFIX: &str = "bgtap";

/// The longest interface name Linux accepts (`IFNAMSIZ - 1`).
pub const MAX_IFNAME_LEN: usize = 15;

/// A name that is not acceptable for the device it was meant for.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    /// Not a TAP name banger made (`bgtap<N>`).
    #[error("{name:?} is not a banger TAP name (expected {TAP_PREFIX}<number>)")]
    NotBangerTap {
        /// The rejected name.
        name: String,
    },
    /// Not a plain interface name.
    #[error("{name:?} is not an interface name (1-15 characters of A-Z a-z 0-9 _ -)")]
    BadInterfaceName {
        /// The rejected name.
        name: String,
    },
}

/// The name of a TAP device banger created: `bgtap<N>`.
///
/// Only constructible through [`TapName::new`] (from an index) or
/// [`TapName::parse`] (which recognises exactly the names `new` makes), so a
/// value of this type is always a banger-owned identifier, never a path or a
/// caller's choice.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TapName {
    index: u32,
    name: String,
}

impl TapName {
    /// The TAP name for `index`.
    pub fn new(index: u32) -> Self {
        Self {
            index,
            name: format!("{TAP_PREFIX}{index}"),
        }
    }

    /// Recognises a banger TAP name; `None` for every other name.
    pub fn parse(name: &str) -> Option<Self> {
        let digits = name.strip_prefix(TAP_PREFIX)?;
        // Canonical decimal only: "0", or no leading zero. Anything else is
        // not a name `new` could have produced, so it is not ours.
        if digits.is_empty()
            || !digits.bytes().all(|b| b.is_ascii_digit())
            || (digits.len() > 1 && digits.starts_with('0'))
        {
            return None;
        }
        let index = digits.parse::<u32>().ok()?;
        Some(Self::new(index))
    }

    /// Like [`TapName::parse`], with an error naming the rejected string.
    pub fn try_from_str(name: &str) -> Result<Self, NameError> {
        Self::parse(name).ok_or_else(|| NameError::NotBangerTap {
            name: name.to_owned(),
        })
    }

    /// The number in the name.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// The interface name.
    pub fn as_str(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for TapName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

impl serde::Serialize for TapName {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.name)
    }
}

impl<'de> serde::Deserialize<'de> for TapName {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::try_from_str(&text).map_err(serde::de::Error::custom)
    }
}

/// A validated bridge interface name (from `bridge_name` in the config).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BridgeName(String);

impl BridgeName {
    /// Checks `name` is a plain interface name: 1-15 of `A-Z a-z 0-9 _ -`.
    ///
    /// That excludes `/`, `.`, `..`, whitespace and `:` (aliases), so the
    /// name can never be a path or reach outside the device it names.
    pub fn new(name: &str) -> Result<Self, NameError> {
        if is_interface_name(name) {
            Ok(Self(name.to_owned()))
        } else {
            Err(NameError::BadInterfaceName {
                name: name.to_owned(),
            })
        }
    }

    /// The interface name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BridgeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Written as the plain name; read back through [`BridgeName::new`], so a
/// name that arrives over the wire (`bangerd-root`) is checked again.
impl serde::Serialize for BridgeName {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for BridgeName {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::new(&text).map_err(serde::de::Error::custom)
    }
}

/// Whether `text` is a plain interface name banger is willing to pass to the
/// kernel (same rule as `banger-config`'s `bridge_name`).
pub fn is_interface_name(text: &str) -> bool {
    (1..=MAX_IFNAME_LEN).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tap_names_round_trip_and_fit_ifnamsiz() {
        for index in [0, 1, 9, 10, 12345, u32::MAX] {
            let name = TapName::new(index);
            assert!(name.as_str().len() <= MAX_IFNAME_LEN, "{name}");
            assert_eq!(TapName::parse(name.as_str()), Some(name.clone()));
            assert_eq!(name.index(), index);
        }
        assert_eq!(TapName::new(u32::MAX).as_str(), "bgtap4294967295");
    }

    #[test]
    fn foreign_names_are_not_ours() {
        for foreign in [
            "",
            "bgtap",
            "bgtap01",
            "bgtap00",
            "bgtap-1",
            "bgtap+1",
            "bgtap1a",
            "bgtap 1",
            "tap0",
            "BGTAP1",
            "xbgtap1",
            "bgtap4294967296",
            "bgtap99999999999",
            "bgtap1/..",
        ] {
            assert_eq!(TapName::parse(foreign), None, "{foreign:?}");
            assert!(TapName::try_from_str(foreign).is_err());
        }
    }

    #[test]
    fn tap_names_serialize_as_strings_and_refuse_foreign_ones() {
        let json = serde_json::to_string(&TapName::new(7)).expect("serialize");
        assert_eq!(json, "\"bgtap7\"");
        let back: TapName = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, TapName::new(7));
        assert!(serde_json::from_str::<TapName>("\"eth0\"").is_err());
    }

    #[test]
    fn bridge_names_are_checked_again_when_read() {
        let json = serde_json::to_string(&BridgeName::new("br0").expect("name")).expect("json");
        assert_eq!(json, "\"br0\"");
        assert_eq!(
            serde_json::from_str::<BridgeName>(&json).expect("read"),
            BridgeName::new("br0").expect("name")
        );
        for bad in ["\"br/0\"", "\"..\"", "\"\"", "\"a234567890123456\""] {
            assert!(serde_json::from_str::<BridgeName>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bridge_names() {
        for good in ["br0", "banger0", "br_x-1", "a23456789012345"] {
            assert!(BridgeName::new(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "a234567890123456",
            "br/0",
            "..",
            "br 0",
            "br0:1",
            "br.0",
            "bré",
        ] {
            assert_eq!(
                BridgeName::new(bad),
                Err(NameError::BadInterfaceName {
                    name: bad.to_owned()
                })
            );
        }
    }
}
