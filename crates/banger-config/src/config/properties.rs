//! Property tests of config parsing: garbage files and garbage environment
//! values never panic and are refused naming the key and where it came
//! from; every accepted value prints (`value_text`) as text that loads back
//! to the same value; CIDRs round-trip through Display and FromStr.
//!
//! Cases per property: proptest's default (256), or `PROPTEST_CASES=N`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use proptest::prelude::*;

use super::*;
use crate::install::InstallMetadata;

fn paths() -> Paths {
    Paths {
        config_dir: PathBuf::from("/home/dev/.config/banger"),
        state_dir: PathBuf::from("/home/dev/.local/state/banger"),
        cache_dir: PathBuf::from("/home/dev/.cache/banger"),
        runtime_dir: PathBuf::from("/run/user/1000/banger"),
        home_dir: Some(PathBuf::from("/home/dev")),
    }
}

fn load(file: Option<&str>, env: &[(&str, &str)]) -> Result<LoadedConfig, ConfigError> {
    let mut map: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    map.entry("HOME".to_owned())
        .or_insert_with(|| "/home/dev".to_owned());
    LoadedConfig::from_parts(&paths(), file, &move |name: &str| map.get(name).cloned())
}

/// Index into KEYS (KeySpec itself has no Debug for proptest to print).
fn key() -> impl Strategy<Value = usize> {
    0..KEYS.len()
}

/// Values that are sometimes right for some key and mostly wrong.
fn value_text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "(debug|info|warn|error|auto|qemu|firecracker|pause|stop|off|none|true|false)",
        "[0-9]{1,20}(s|m|h|ms|KiB|MiB|GiB|G|T)?",
        "-[0-9]{1,5}",
        "[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}(/[0-9]{1,2}|:[0-9]{1,6})?",
        "[a-z0-9.:,/ -]{0,30}",
        "/[a-z/]{0,20}",
        "~/[a-z]{0,8}",
        "\\PC{0,30}",
        "[\0\n\t\u{1b}]{1,4}",
    ]
}

/// The error names the key and the origin: a user can find what to fix.
fn names_key_and_origin(error: &ConfigError, key: &str, origin: &str) -> bool {
    let text = error.to_string();
    text.contains(key) && text.contains(origin)
}

proptest! {
    /// Any text as the config file is loaded or refused, never a panic.
    #[test]
    fn arbitrary_config_files_are_loaded_or_refused(text in "\\PC{0,200}|[a-z_ =\"'\\[\\]\n0-9.,{}]{0,200}") {
        let _ = load(Some(&text), &[]);
    }

    /// A known key with any TOML value is accepted or refused naming the key
    /// and the file; an accepted value prints as text that, fed back through
    /// the environment, gives the same config.
    #[test]
    fn file_values_are_refused_by_key_or_round_trip(index in key(), value in value_text(), as_string in any::<bool>(), int in any::<i64>(), use_int in any::<bool>()) {
        let key = &KEYS[index];
        let literal = if use_int {
            int.to_string()
        } else if as_string {
            toml::Value::String(value.clone()).to_string()
        } else {
            value.clone()
        };
        let file = format!("{} = {literal}\n", key.name);
        match load(Some(&file), &[]) {
            Ok(loaded) => {
                let text = loaded.config.value_text(key.name).ok_or_else(|| TestCaseError::fail("no value_text"))?;
                let again = load(None, &[(key.env, &text)]).map_err(|e| TestCaseError::fail(format!("{text:?} from value_text does not load: {e}")))?;
                prop_assert_eq!(again.config, loaded.config);
            }
            Err(ConfigError::Syntax { .. }) => {}
            Err(error) => prop_assert!(names_key_and_origin(&error, key.name, "config.toml"), "{}", error),
        }
    }

    /// Any environment value for any key is accepted or refused naming the
    /// key and the variable; accepted values round-trip like file values.
    #[test]
    fn env_values_are_refused_by_key_or_round_trip(index in key(), value in value_text()) {
        let key = &KEYS[index];
        match load(None, &[(key.env, &value)]) {
            Ok(loaded) => {
                let text = loaded.config.value_text(key.name).ok_or_else(|| TestCaseError::fail("no value_text"))?;
                let again = load(None, &[(key.env, &text)]).map_err(|e| TestCaseError::fail(format!("{text:?} from value_text does not load: {e}")))?;
                prop_assert_eq!(again.config, loaded.config);
            }
            Err(error) => prop_assert!(
                names_key_and_origin(&error, key.name, key.env) || key.name == "cidr" || key.name == "bridge_ip",
                "{}", error
            ),
        }
    }

    /// A CIDR parses only with prefix 8..=30 and zero host bits, and prints
    /// back as the text that parses to it.
    #[test]
    fn cidrs_round_trip(ip in any::<[u8; 4]>(), prefix in 0u8..40, noise in "\\PC{0,4}") {
        let text = format!("{}/{prefix}", Ipv4Addr::from(ip));
        match text.parse::<Ipv4Cidr>() {
            Ok(cidr) => {
                prop_assert!((8..=30).contains(&cidr.prefix));
                let mask = u32::MAX << (32 - u32::from(cidr.prefix));
                prop_assert_eq!(u32::from(cidr.network) & !mask, 0);
                prop_assert_eq!(cidr.to_string().parse::<Ipv4Cidr>(), Ok(cidr));
                prop_assert_eq!(cidr.to_string(), text.clone());
            }
            Err(error) => prop_assert!(error.to_string().contains(&text)),
        }
        let _ = format!("{text}{noise}").parse::<Ipv4Cidr>();
    }

    /// Install metadata of any text is parsed or refused, never a panic.
    #[test]
    fn arbitrary_install_metadata_is_parsed_or_refused(text in "\\PC{0,200}|[a-z_ =\"\\[\\]\n0-9./,]{0,200}") {
        let _ = InstallMetadata::parse(Path::new("/etc/banger/install.toml"), &text);
    }
}

/// Regression (found by `env_values_are_refused_by_key_or_round_trip`):
/// `config show` printed "none" for a disabled web UI and for empty port
/// and registry lists, and that text did not load back.
#[test]
fn none_as_printed_by_config_show_loads_back() {
    for (key, env) in [
        ("web_listen_addr", "BANGER_WEB_LISTEN_ADDR"),
        ("allowed_host_ports", "BANGER_ALLOWED_HOST_PORTS"),
        ("insecure_registries", "BANGER_INSECURE_REGISTRIES"),
    ] {
        let loaded = load(None, &[(env, "none")]).expect("none loads");
        assert_eq!(loaded.config.value_text(key).as_deref(), Some("none"));
    }
    let file = load(Some("web_listen_addr = \"none\"\n"), &[]).expect("none in the file loads");
    assert_eq!(file.config.web_listen_addr, None);
}
