//! Config loading tests; error messages are insta snapshots because their
//! exact wording is part of the user interface.

use std::collections::HashMap;

use super::*;

fn paths() -> Paths {
    Paths {
        config_dir: PathBuf::from("/home/dev/.config/banger"),
        state_dir: PathBuf::from("/home/dev/.local/state/banger"),
        cache_dir: PathBuf::from("/home/dev/.cache/banger"),
        runtime_dir: PathBuf::from("/run/user/1000/banger"),
        home_dir: Some(PathBuf::from("/home/dev")),
    }
}

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let mut map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    map.entry("HOME".to_owned())
        .or_insert_with(|| "/home/dev".to_owned());
    move |name| map.get(name).cloned()
}

/// The error and its causes, one per line, as the CLI prints them.
fn chain(error: &ConfigError) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str("\ncaused by: ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn load_error(file: &str, env: &[(&str, &str)]) -> String {
    let env = env_of(env);
    match LoadedConfig::from_parts(&paths(), Some(file), &env) {
        Ok(_) => panic!("expected an error for {file:?}"),
        Err(error) => chain(&error),
    }
}

#[test]
fn defaults_are_valid_and_documented() {
    let env = env_of(&[]);
    let loaded = LoadedConfig::from_parts(&paths(), None, &env).expect("defaults load");
    assert!(!loaded.file_exists);
    let rows: Vec<String> = loaded
        .entries()
        .iter()
        .map(|entry| format!("{} = {} ({})", entry.key, entry.value, entry.source))
        .collect();
    insta::assert_snapshot!(rows.join("\n"));
}

#[test]
fn file_then_env_with_sources() {
    let env = env_of(&[("BANGER_VMM", "qemu"), ("BANGER_LOG_LEVEL", "debug")]);
    let file = "vmm = \"firecracker\"\ntap_pool_size = 8\ndefault_dns = [\"10.0.0.53\"]\nssh_key_path = \"~/keys/id\"\nauto_stop_stale_after = \"2h\"\n";
    let loaded = LoadedConfig::from_parts(&paths(), Some(file), &env).expect("loads");
    assert_eq!(loaded.config.vmm, VmmChoice::Qemu);
    assert_eq!(loaded.sources["vmm"], Source::Env { var: "BANGER_VMM" });
    assert_eq!(loaded.config.log_level, LogLevel::Debug);
    assert_eq!(loaded.config.tap_pool_size, 8);
    assert_eq!(
        loaded.sources["tap_pool_size"],
        Source::File {
            path: paths().config_file()
        }
    );
    assert_eq!(
        loaded.config.ssh_key_path,
        PathBuf::from("/home/dev/keys/id")
    );
    assert_eq!(
        loaded.config.auto_stop_stale_after,
        Some(Duration::from_secs(7200))
    );
    assert_eq!(
        loaded.config.default_dns,
        vec!["10.0.0.53".parse::<IpAddr>().expect("ip")]
    );
    assert_eq!(loaded.sources["bridge_name"], Source::Default);
}

#[test]
fn allowed_host_ports_parse_from_file_and_env() {
    let env = env_of(&[]);
    let loaded = LoadedConfig::from_parts(
        &paths(),
        Some("allowed_host_ports = [\"8080\", \"443\", \"8080\"]\n"),
        &env,
    )
    .expect("loads");
    assert_eq!(loaded.config.allowed_host_ports, vec![443, 8080]);
    let env = env_of(&[("BANGER_ALLOWED_HOST_PORTS", "22, 3000")]);
    let loaded = LoadedConfig::from_parts(&paths(), None, &env).expect("loads");
    assert_eq!(loaded.config.allowed_host_ports, vec![22, 3000]);
    let env = env_of(&[("BANGER_ALLOWED_HOST_PORTS", "0")]);
    assert!(LoadedConfig::from_parts(&paths(), None, &env).is_err());
    let env = env_of(&[("BANGER_ALLOWED_HOST_PORTS", "70000")]);
    assert!(LoadedConfig::from_parts(&paths(), None, &env).is_err());
}

#[test]
fn unknown_key_error() {
    insta::assert_snapshot!(load_error("vm = \"qemu\"\n", &[]));
}

#[test]
fn unknown_table_error() {
    insta::assert_snapshot!(load_error("[network]\ncidr = \"10.0.0.0/24\"\n", &[]));
}

#[test]
fn bad_enum_value_error() {
    insta::assert_snapshot!(load_error("vmm = \"kvm\"\n", &[]));
}

#[test]
fn wrong_type_error() {
    insta::assert_snapshot!(load_error("tap_pool_size = \"four\"\n", &[]));
}

#[test]
fn out_of_range_error() {
    insta::assert_snapshot!(load_error("tap_pool_size = 1000\n", &[]));
}

#[test]
fn bad_cidr_error() {
    insta::assert_snapshot!(load_error("cidr = \"10.0.0.1/24\"\n", &[]));
}

#[test]
fn bridge_ip_outside_cidr_error() {
    insta::assert_snapshot!(load_error("bridge_ip = \"10.9.0.1\"\n", &[]));
}

#[test]
fn bad_duration_error() {
    insta::assert_snapshot!(load_error("stats_poll_interval = \"soon\"\n", &[]));
}

#[test]
fn relative_path_error() {
    insta::assert_snapshot!(load_error("ssh_key_path = \"keys/id\"\n", &[]));
}

#[test]
fn syntax_error() {
    insta::assert_snapshot!(load_error("vmm = \n", &[]));
}

#[test]
fn bad_env_value_error() {
    insta::assert_snapshot!(load_error("", &[("BANGER_LOG_LEVEL", "loud")]));
}

#[test]
fn hostile_key_is_escaped() {
    let error = load_error("\"bad\\u001b[31m\" = 1\n", &[]);
    assert!(!error.contains('\u{1b}'), "{error}");
    assert!(error.contains("bad\\u{1b}[31m"), "{error}");
}

#[test]
fn edit_distance_basics() {
    assert_eq!(edit_distance("vmm", "vm"), 1);
    assert_eq!(edit_distance("cidr", "cidr"), 0);
    assert_eq!(edit_distance("abc", "xyz"), 3);
}
