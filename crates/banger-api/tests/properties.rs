//! Property tests of the API's parsers: every name type, fork names, and
//! the stored enum names.
//!
//! Cases per property: proptest's default (256), or `PROPTEST_CASES=N`.

use banger_api::names::MAX_NAME_LEN;
use banger_api::snapshots::{MAX_FORK_COUNT, VmForkRequest};
use banger_api::vms::{VmSignal, VmState};
use banger_api::{ImageName, KernelName, NameError, SessionName, SnapshotName, VmName};
use proptest::prelude::*;

/// The documented VM/image/kernel/snapshot rule, written independently of
/// `check_name`: `^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$`.
fn host_rule(raw: &str) -> bool {
    let bytes = raw.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_NAME_LEN
        && bytes[0].is_ascii_lowercase()
        && bytes.last() != Some(&b'-')
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}

/// The documented session rule: `^[a-z0-9][a-z0-9-]{0,62}$`.
fn session_rule(raw: &str) -> bool {
    let bytes = raw.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_NAME_LEN
        && bytes[0] != b'-'
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}

/// Near-miss names (the alphabet plus a few hostile characters, around the
/// length limit) and arbitrary text.
fn candidate() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9-]{0,70}",
        "[a-z][a-z0-9-]{60,64}",
        "[a-zA-Z0-9_. /\\\\\n\t\0-]{0,12}",
        "\\PC{0,70}",
        any::<String>(),
    ]
}

/// A name the rule accepts.
fn valid_name() -> impl Strategy<Value = String> {
    "[a-z]([a-z0-9-]{0,61}[a-z0-9])?"
}

/// The error message names the input (its first characters, escaped) or
/// says it is empty: a user can see what was refused.
fn names_the_input(error: &NameError, raw: &str) -> bool {
    let text = error.to_string();
    if raw.is_empty() {
        return text.contains("empty");
    }
    let head: String = raw.chars().take(10).collect();
    text.contains(&head.escape_debug().to_string())
}

proptest! {
    /// Each name type accepts exactly its documented rule; a refusal names
    /// the input; an accepted name survives Display, FromStr and serde.
    #[test]
    fn names_follow_the_documented_rule(raw in candidate()) {
        let host = host_rule(&raw);
        macro_rules! check {
            ($type:ty, $rule:expr) => {
                match <$type>::parse(&raw) {
                    Ok(name) => {
                        prop_assert!($rule, "{} accepted {:?}", stringify!($type), raw);
                        prop_assert_eq!(name.as_str(), raw.as_str());
                        prop_assert_eq!(name.to_string().parse::<$type>().ok(), Some(name.clone()));
                        let json = serde_json::to_string(&name).map_err(|e| TestCaseError::fail(e.to_string()))?;
                        let back: $type = serde_json::from_str(&json).map_err(|e| TestCaseError::fail(e.to_string()))?;
                        prop_assert_eq!(back, name);
                    }
                    Err(error) => {
                        prop_assert!(!$rule, "{} refused {:?}: {}", stringify!($type), raw, error);
                        prop_assert!(names_the_input(&error, &raw), "{:?} not named in {}", raw, error);
                        // Deserialising goes through the same rule.
                        let json = serde_json::to_string(&raw).map_err(|e| TestCaseError::fail(e.to_string()))?;
                        prop_assert!(serde_json::from_str::<$type>(&json).is_err());
                    }
                }
            };
        }
        check!(VmName, host);
        check!(ImageName, host);
        check!(KernelName, host);
        check!(SnapshotName, host);
        check!(SessionName, session_rule(&raw));
    }

    /// A refusal's message stays short however long the input: the name is
    /// shown truncated, never echoed whole.
    #[test]
    fn refusal_messages_are_bounded(prefix in "\\PC{0,20}", len in 64usize..100_000) {
        let raw = format!("{prefix}{}", "x".repeat(len));
        let error = VmName::parse(&raw).err().ok_or_else(|| TestCaseError::fail("accepted"))?;
        prop_assert!(error.to_string().len() < 400, "{}", error);
    }

    /// Fork names: counts outside 1..=MAX_FORK_COUNT are refused; inside,
    /// the names are the base alone or `base-1`..`base-count`, all valid
    /// and distinct, or a refusal naming the copy that is too long.
    #[test]
    fn fork_names_are_valid_and_distinct(base in valid_name(), count in prop_oneof![Just(None), any::<u32>().prop_map(Some), (0u32..20).prop_map(Some)]) {
        let name = VmName::parse(&base).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let request = VmForkRequest { name, count };
        let n = count.unwrap_or(1);
        match request.names() {
            Ok(names) => {
                prop_assert!((1..=MAX_FORK_COUNT).contains(&n));
                prop_assert_eq!(names.len(), n as usize);
                let mut sorted: Vec<&str> = names.iter().map(VmName::as_str).collect();
                sorted.sort_unstable();
                sorted.dedup();
                prop_assert_eq!(sorted.len(), names.len());
                if n == 1 {
                    prop_assert_eq!(names[0].as_str(), base.as_str());
                } else {
                    for (index, name) in names.iter().enumerate() {
                        let expected = format!("{base}-{}", index + 1);
                        prop_assert_eq!(name.as_str(), expected.as_str());
                    }
                }
            }
            Err(error) => {
                let in_range = (1..=MAX_FORK_COUNT).contains(&n);
                // In range, only a name pushed over the length limit fails.
                prop_assert!(!in_range || base.len() + 1 + n.to_string().len() > MAX_NAME_LEN, "{}", error);
                let text = error.to_string();
                prop_assert!(text.contains(&n.to_string()) || text.contains(&base), "{}", text);
            }
        }
    }

    /// Stored enum names parse back only from their own spelling.
    #[test]
    fn stored_names_parse_only_their_own_spelling(text in "[a-z]{0,12}|\\PC{0,12}") {
        if let Some(state) = VmState::parse(&text) {
            prop_assert_eq!(state.as_str(), text.as_str());
        }
        for state in VmState::ALL {
            prop_assert_eq!(VmState::parse(state.as_str()), Some(state));
        }
    }

    /// Signal names parse case-insensitively with or without `SIG`, or by
    /// number; anything else is refused naming the input.
    #[test]
    fn signals_parse_by_name_or_number(text in "(SIG|sig)?[A-Za-z0-9]{0,6}|\\PC{0,10}") {
        match text.parse::<VmSignal>() {
            Ok(signal) => {
                let upper = text.trim().to_ascii_uppercase();
                let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
                prop_assert!(bare == signal.as_str() || bare == signal.number().to_string());
            }
            Err(error) => {
                let quoted = format!("{text:?}");
                prop_assert!(error.to_string().contains(&quoted));
            }
        }
        for signal in VmSignal::ALL {
            prop_assert_eq!(signal.as_str().parse::<VmSignal>().ok(), Some(signal));
            prop_assert_eq!(signal.number().to_string().parse::<VmSignal>().ok(), Some(signal));
        }
    }
}
