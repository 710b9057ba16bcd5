//! The name rules, and the adjective-noun generator for unnamed VMs.
//!
//! A VM name becomes a DNS label (`<name>.vm`), a directory name under the
//! state dir and a column in the database, so the rule is the strictest of
//! the three: a lowercase RFC 1123 label. Images and kernels follow the same
//! rule so every name banger stores is safe as a path component. Session
//! names follow the guest agent's rule (`[a-z0-9][a-z0-9-]{0,62}`, see
//! `banger_agent_proto::validate_session_name`): they name a directory in
//! the guest, not a host. Every component parses names through
//! [`VmName::parse`], [`ImageName::parse`], [`KernelName::parse`] or
//! [`SessionName::parse`] (or deserialises them, which calls those);
//! nothing else decides what a valid name is.

use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Longest allowed name: the DNS label limit.
pub const MAX_NAME_LEN: usize = 63;

/// Why a proposed name was refused. Messages show the name escaped, so a
/// hostile name cannot inject terminal control sequences.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name is empty.
    #[error(
        "{kind} is empty: use 1 to {MAX_NAME_LEN} lowercase letters, digits or '-', starting with a letter"
    )]
    Empty {
        /// What was being named.
        kind: NameKind,
    },
    /// The name is longer than [`MAX_NAME_LEN`].
    #[error("{kind} {shown} is {len} characters long; the limit is {MAX_NAME_LEN}")]
    TooLong {
        /// What was being named.
        kind: NameKind,
        /// The name, escaped and shortened for display.
        shown: String,
        /// Its length in characters.
        len: usize,
    },
    /// The first character is not a lowercase ASCII letter.
    #[error("{kind} {shown} must start with a lowercase letter (a-z)")]
    BadStart {
        /// What was being named.
        kind: NameKind,
        /// The name, escaped for display.
        shown: String,
    },
    /// The name starts with '-' (session names, which may start with a digit).
    #[error("{kind} {shown} must start with a lowercase letter or a digit, not '-'")]
    LeadingHyphen {
        /// What was being named.
        kind: NameKind,
        /// The name, escaped for display.
        shown: String,
    },
    /// The name ends with '-'.
    #[error("{kind} {shown} must not end with '-'")]
    TrailingHyphen {
        /// What was being named.
        kind: NameKind,
        /// The name, escaped for display.
        shown: String,
    },
    /// The name contains a character outside `[a-z0-9-]`.
    #[error(
        "{kind} {shown} contains {character:?} at position {position}; use only lowercase letters, digits and '-'"
    )]
    BadCharacter {
        /// What was being named.
        kind: NameKind,
        /// The name, escaped for display.
        shown: String,
        /// The offending character.
        character: char,
        /// Its 1-based character position.
        position: usize,
    },
}

/// What a name names; it only changes error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    /// A VM.
    Vm,
    /// An image.
    Image,
    /// A kernel.
    Kernel,
    /// A guest session (its own rule, see [`SessionName`]).
    Session,
    /// A VM snapshot.
    Snapshot,
}

impl fmt::Display for NameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Vm => "VM name",
            Self::Image => "image name",
            Self::Kernel => "kernel name",
            Self::Session => "session name",
            Self::Snapshot => "snapshot name",
        })
    }
}

/// Checks `raw` against the name rule of `kind`: for VMs, images and
/// kernels `^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$`, for sessions
/// `^[a-z0-9][a-z0-9-]{0,62}$`.
pub fn check_name(kind: NameKind, raw: &str) -> Result<(), NameError> {
    // Session names may start with a digit and end with '-'.
    let session = kind == NameKind::Session;
    let shown = || display_name(raw);
    let len = raw.chars().count();
    if len == 0 {
        return Err(NameError::Empty { kind });
    }
    if len > MAX_NAME_LEN {
        return Err(NameError::TooLong {
            kind,
            shown: shown(),
            len,
        });
    }
    for (index, character) in raw.chars().enumerate() {
        let allowed = character.is_ascii_lowercase()
            || (character.is_ascii_digit() && (index > 0 || session))
            || (character == '-' && index > 0);
        if !allowed {
            if index == 0 && character == '-' && session {
                return Err(NameError::LeadingHyphen {
                    kind,
                    shown: shown(),
                });
            }
            if index == 0 && (character.is_ascii_digit() || character == '-') {
                return Err(NameError::BadStart {
                    kind,
                    shown: shown(),
                });
            }
            return Err(NameError::BadCharacter {
                kind,
                shown: shown(),
                character,
                position: index + 1,
            });
        }
    }
    if !session && raw.ends_with('-') {
        return Err(NameError::TrailingHyphen {
            kind,
            shown: shown(),
        });
    }
    Ok(())
}

/// A validated name type: parsed with [`check_name`] for `$kind`, shown in
/// the OpenAPI document as a string with `$pattern` (the same rule as a
/// regular expression).
macro_rules! validated_name {
    ($(#[$doc:meta])* $type:ident, $kind:expr, $pattern:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
        #[serde(try_from = "String", into = "String")]
        #[schema(value_type = String, pattern = $pattern)]
        pub struct $type(String);

        impl $type {
            /// Checks `raw` against the name rule.
            pub fn parse(raw: &str) -> Result<Self, NameError> {
                check_name($kind, raw)?;
                Ok(Self(raw.to_owned()))
            }

            /// The name as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $type {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl TryFrom<String> for $type {
            type Error = NameError;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                Self::parse(&value)
            }
        }

        impl From<$type> for String {
            fn from(value: $type) -> Self {
                value.0
            }
        }

        impl std::str::FromStr for $type {
            type Err = NameError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }
    };
}

validated_name!(
    /// A validated VM name. The only way to get one is [`VmName::parse`] (or
    /// deserialisation, which calls it), so holding a `VmName` proves validity.
    VmName,
    NameKind::Vm,
    "^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$"
);
validated_name!(
    /// A validated image name.
    ImageName,
    NameKind::Image,
    "^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$"
);
validated_name!(
    /// A validated kernel name.
    KernelName,
    NameKind::Kernel,
    "^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$"
);
validated_name!(
    /// A validated session name, unique within its VM: 1 to 63 of `a-z`,
    /// `0-9` and `-`, not starting with `-` (the guest agent's rule).
    SessionName,
    NameKind::Session,
    "^[a-z0-9][a-z0-9-]{0,62}$"
);

validated_name!(
    /// A validated snapshot name, unique within its VM (the VM name rule).
    SnapshotName,
    NameKind::Snapshot,
    "^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$"
);

/// Images and kernels share one name rule, so every image name is a kernel
/// name: `image register --kernel` installs the kernel under the image's name.
impl From<&ImageName> for KernelName {
    fn from(name: &ImageName) -> Self {
        Self(name.0.clone())
    }
}

/// Quotes and escapes a refused name, keeping at most 40 characters, so error
/// messages stay one readable line whatever the input was.
fn display_name(raw: &str) -> String {
    const SHOWN_CHARS: usize = 40;
    let mut shown: String = raw.chars().take(SHOWN_CHARS).collect();
    let truncated = shown.len() < raw.len();
    shown = shown.escape_debug().to_string();
    if truncated {
        format!("\"{shown}...\"")
    } else {
        format!("\"{shown}\"")
    }
}

const ADJECTIVES: &[&str] = &[
    "amber", "bold", "brave", "breezy", "bright", "calm", "clever", "cosy", "crisp", "curious",
    "daring", "dapper", "eager", "early", "fancy", "fast", "fuzzy", "gentle", "giddy", "glad",
    "golden", "grand", "happy", "hardy", "hazy", "humble", "jolly", "keen", "kind", "lively",
    "lucky", "mellow", "merry", "mighty", "misty", "modest", "nimble", "noble", "plucky", "polite",
    "proud", "quick", "quiet", "rapid", "rosy", "rustic", "shiny", "silent", "sleepy", "smooth",
    "snappy", "spry", "steady", "sunny", "swift", "tidy", "tiny", "trusty", "vivid", "warm",
    "wild", "witty", "zany", "zesty",
];

const NOUNS: &[&str] = &[
    "badger", "beacon", "bison", "canyon", "cedar", "comet", "coral", "crane", "delta", "dune",
    "falcon", "fern", "fjord", "gecko", "glacier", "harbor", "hazel", "heron", "island", "jaguar",
    "kestrel", "lagoon", "lantern", "lark", "lemur", "lynx", "maple", "marmot", "meadow", "mesa",
    "moose", "nebula", "newt", "oasis", "orca", "otter", "panda", "pebble", "pine", "planet",
    "puffin", "quail", "quartz", "raven", "reef", "river", "rocket", "sable", "salmon", "sparrow",
    "spruce", "summit", "tiger", "tundra", "turtle", "valley", "walrus", "willow", "wombat", "yak",
    "zebra", "breeze", "ember", "galaxy",
];

/// How many random adjective-noun pairs to try before falling back to numbered
/// names; with 4096 pairs, a busy host still almost always gets a plain pair.
const RANDOM_ATTEMPTS: usize = 64;

/// Generates a readable `adjective-noun` name for which `is_taken` is false.
///
/// Random pairs are tried first; if they all collide, numbered variants
/// (`adjective-noun-2`, ...) are tried, so the function always terminates with
/// a free name as long as fewer than billions of VMs exist.
pub fn generate_name(rng: &mut fastrand::Rng, mut is_taken: impl FnMut(&VmName) -> bool) -> VmName {
    let pick = |rng: &mut fastrand::Rng| {
        let adjective = ADJECTIVES[rng.usize(..ADJECTIVES.len())];
        let noun = NOUNS[rng.usize(..NOUNS.len())];
        format!("{adjective}-{noun}")
    };
    for _ in 0..RANDOM_ATTEMPTS {
        let name = VmName(pick(rng));
        if !is_taken(&name) {
            return name;
        }
    }
    let base = pick(rng);
    let mut suffix: u64 = 2;
    loop {
        let name = VmName(format!("{base}-{suffix}"));
        if !is_taken(&name) {
            return name;
        }
        suffix += 1;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn name_rule_table() {
        let long_ok = "a".repeat(MAX_NAME_LEN);
        let long_bad = "a".repeat(300);
        let cases: &[(&str, bool)] = &[
            ("dev", true),
            ("a", true),
            ("my-vm-2", true),
            ("x86", true),
            (long_ok.as_str(), true),
            ("", false),
            ("../x", false),
            ("a/b", false),
            ("foo\nbar", false),
            ("foo\u{1b}[31m", false),
            ("Dev", false),
            ("2fast", false),
            ("-dev", false),
            ("dev-", false),
            ("dev.vm", false),
            ("dev_1", false),
            ("dév", false),
            (" dev", false),
            ("dev ", false),
            (long_bad.as_str(), false),
        ];
        for (name, valid) in cases {
            assert_eq!(VmName::parse(name).is_ok(), *valid, "name {name:?}");
        }
    }

    #[test]
    fn session_name_rule_table() {
        let long_ok = "a".repeat(MAX_NAME_LEN);
        let long_bad = "a".repeat(MAX_NAME_LEN + 1);
        let cases: &[(&str, bool)] = &[
            ("web", true),
            ("a", true),
            ("0", true),
            ("2fast", true),
            ("web-", true),
            ("web-1", true),
            (long_ok.as_str(), true),
            ("", false),
            ("-a", false),
            ("A", false),
            ("a_b", false),
            ("a.b", false),
            ("../x", false),
            ("a/b", false),
            ("é", false),
            ("Web Server", false),
            (long_bad.as_str(), false),
        ];
        for (name, valid) in cases {
            assert_eq!(SessionName::parse(name).is_ok(), *valid, "name {name:?}");
        }
        assert_eq!(
            SessionName::parse("-a").unwrap_err().to_string(),
            r#"session name "-a" must start with a lowercase letter or a digit, not '-'"#
        );
        assert!(serde_json::from_str::<SessionName>("\"web-1\"").is_ok());
        assert!(serde_json::from_str::<SessionName>("\"Web\"").is_err());
    }

    #[test]
    fn every_image_name_is_a_kernel_name() {
        let image = ImageName::parse("my-image-2").expect("valid");
        assert_eq!(KernelName::from(&image).as_str(), image.as_str());
    }

    #[test]
    fn errors_name_the_problem_and_escape_input() {
        let error = VmName::parse("foo\nbar").unwrap_err().to_string();
        assert_eq!(
            error,
            r#"VM name "foo\nbar" contains '\n' at position 4; use only lowercase letters, digits and '-'"#
        );
        let error = VmName::parse(&"a".repeat(300)).unwrap_err().to_string();
        assert!(
            error.contains("300 characters long; the limit is 63"),
            "{error}"
        );
        assert!(error.len() < 120, "error stays one short line: {error}");
        let error = VmName::parse("../x").unwrap_err().to_string();
        assert_eq!(
            error,
            r#"VM name "../x" contains '.' at position 1; use only lowercase letters, digits and '-'"#
        );
    }

    #[test]
    fn deserialising_applies_the_rule() {
        assert!(serde_json::from_str::<VmName>("\"ok-name\"").is_ok());
        assert!(serde_json::from_str::<VmName>("\"../x\"").is_err());
    }

    #[test]
    fn generated_names_are_valid_and_avoid_taken_ones() {
        let mut rng = fastrand::Rng::with_seed(7);
        let mut taken = HashSet::new();
        for _ in 0..500 {
            let name = generate_name(&mut rng, |name| taken.contains(name.as_str()));
            assert!(VmName::parse(name.as_str()).is_ok(), "{name}");
            assert!(taken.insert(name.as_str().to_owned()), "duplicate {name}");
        }
    }

    #[test]
    fn generator_falls_back_to_numbered_names_when_all_pairs_are_taken() {
        let mut rng = fastrand::Rng::with_seed(1);
        let name = generate_name(&mut rng, |name| name.as_str().matches('-').count() == 1);
        assert!(name.as_str().ends_with("-2"), "{name}");
    }
}
