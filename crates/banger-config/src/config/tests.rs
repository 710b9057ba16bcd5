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
fn max_disk_size_accepts_units_and_byte_counts() {
    let env = env_of(&[]);
    let defaults = LoadedConfig::from_parts(&paths(), None, &env).expect("loads");
    assert_eq!(defaults.config.max_disk_size, 1 << 40);
    for (file, bytes, shown) in [
        ("max_disk_size = \"500G\"\n", 500 << 30, "500G"),
        ("max_disk_size = \"2TiB\"\n", 2 << 40, "2T"),
        ("max_disk_size = 1073741824\n", 1 << 30, "1G"),
        ("max_disk_size = \"1536 MB\"\n", 1536 << 20, "1536M"),
    ] {
        let loaded = LoadedConfig::from_parts(&paths(), Some(file), &env).expect(file);
        assert_eq!(loaded.config.max_disk_size, bytes, "{file}");
        assert_eq!(
            loaded.config.value_text("max_disk_size").as_deref(),
            Some(shown),
            "{file}"
        );
    }
    let env = env_of(&[("BANGER_MAX_DISK_SIZE", "3T")]);
    let loaded = LoadedConfig::from_parts(&paths(), None, &env).expect("loads");
    assert_eq!(loaded.config.max_disk_size, 3 << 40);
}

#[test]
fn bad_max_disk_size_errors() {
    for file in [
        "max_disk_size = \"100M\"\n",
        "max_disk_size = \"lots\"\n",
        "max_disk_size = \"4P\"\n",
        "max_disk_size = -1\n",
        "max_disk_size = \"99999999999T\"\n",
    ] {
        let error = load_error(file, &[]);
        assert!(
            error.contains("key `max_disk_size`") && error.contains("at least 1G"),
            "{file}: {error}"
        );
    }
    insta::assert_snapshot!(load_error("max_disk_size = \"100M\"\n", &[]));
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

#[test]
fn bad_default_image_name_error() {
    // Image names follow banger_api::ImageName: no '.', '_' or leading digit.
    insta::assert_snapshot!(load_error("default_image_name = \"Debian_12\"\n", &[]));
    let env = env_of(&[]);
    for bad in ["9lives", "debian.12", "trailing-", ""] {
        let file = format!("default_image_name = {bad:?}\n");
        let error = LoadedConfig::from_parts(&paths(), Some(&file), &env)
            .expect_err("a name outside the image rule is refused");
        assert!(
            matches!(
                error,
                ConfigError::BadValue {
                    key: "default_image_name",
                    ..
                }
            ),
            "{bad:?}: {error}"
        );
    }
    let env = env_of(&[("BANGER_DEFAULT_IMAGE_NAME", "my_image")]);
    let error = LoadedConfig::from_parts(&paths(), None, &env).expect_err("env refused too");
    assert!(matches!(
        error,
        ConfigError::BadValue {
            key: "default_image_name",
            ..
        }
    ));
}

#[test]
fn default_image_name_parses_into_an_image_name() {
    let env = env_of(&[]);
    let loaded =
        LoadedConfig::from_parts(&paths(), Some("default_image_name = \"alpine-3\"\n"), &env)
            .expect("loads");
    assert_eq!(loaded.config.default_image_name.as_str(), "alpine-3");
}

/// Paths whose config dir is a fresh temporary directory.
fn temp_paths(dir: &tempfile::TempDir) -> Paths {
    Paths {
        config_dir: dir.path().to_owned(),
        ..paths()
    }
}

/// Loads the config file at `paths`, with the temporary dir shown as `<dir>`.
fn file_load_error(dir: &tempfile::TempDir) -> String {
    let env = env_of(&[]);
    match LoadedConfig::load_with(&temp_paths(dir), &env) {
        Ok(_) => panic!("expected an error"),
        Err(error) => chain(&error).replace(&dir.path().display().to_string(), "<dir>"),
    }
}

#[test]
fn fifo_config_file_is_refused_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = temp_paths(&dir).config_file();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &file,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .expect("mkfifo");
    // No writer ever opens the FIFO: a blocking open would hang here.
    let (sender, receiver) = std::sync::mpsc::channel();
    let paths = temp_paths(&dir);
    std::thread::spawn(move || {
        let env = env_of(&[]);
        let result = LoadedConfig::load_with(&paths, &env).map(|_| ());
        let _ = sender.send(result);
    });
    let result = receiver
        .recv_timeout(std::time::Duration::from_secs(5))
        .expect("loading a FIFO config returns at once");
    assert!(matches!(
        result,
        Err(ConfigError::NotRegularFile { kind: "FIFO", .. })
    ));
    insta::assert_snapshot!(file_load_error(&dir));
}

#[test]
fn symlink_to_dev_zero_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs_err::os::unix::fs::symlink("/dev/zero", temp_paths(&dir).config_file()).expect("symlink");
    insta::assert_snapshot!(file_load_error(&dir));
}

#[test]
fn oversize_config_file_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut text = String::from("vmm = \"qemu\"\n");
    let limit = usize::try_from(MAX_CONFIG_FILE_BYTES).expect("fits");
    text.push_str(&"#".repeat(limit));
    text.push('\n');
    fs_err::write(temp_paths(&dir).config_file(), text).expect("write");
    insta::assert_snapshot!(file_load_error(&dir));
}

#[test]
fn config_file_at_the_limit_loads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut text = String::from("vmm = \"qemu\"\n#");
    let limit = usize::try_from(MAX_CONFIG_FILE_BYTES).expect("fits");
    text.push_str(&"x".repeat(limit - text.len()));
    fs_err::write(temp_paths(&dir).config_file(), text).expect("write");
    let env = env_of(&[]);
    let loaded = LoadedConfig::load_with(&temp_paths(&dir), &env).expect("loads");
    assert_eq!(loaded.config.vmm, VmmChoice::Qemu);
}

#[test]
fn symlink_to_regular_config_file_loads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dotfiles = dir.path().join("dotfiles");
    fs_err::create_dir(&dotfiles).expect("mkdir");
    let target = dotfiles.join("banger.toml");
    fs_err::write(&target, "vmm = \"qemu\"\ndefault_image_name = \"alpine\"\n").expect("write");
    fs_err::os::unix::fs::symlink(&target, temp_paths(&dir).config_file()).expect("symlink");
    let env = env_of(&[]);
    let loaded = LoadedConfig::load_with(&temp_paths(&dir), &env).expect("loads");
    assert!(loaded.file_exists);
    assert_eq!(loaded.config.vmm, VmmChoice::Qemu);
    assert_eq!(loaded.config.default_image_name.as_str(), "alpine");
}

#[test]
fn missing_config_file_is_defaults() {
    let dir = tempfile::tempdir().expect("tempdir");
    let env = env_of(&[]);
    let loaded = LoadedConfig::load_with(&temp_paths(&dir), &env).expect("loads");
    assert!(!loaded.file_exists);
}

#[test]
fn insecure_registries_are_hosts_with_optional_ports() {
    let env = env_of(&[]);
    let file = "insecure_registries = [\"registry.lan:5000\", \"10.0.0.7\", \"[fd00::1]:5000\", \"registry.lan:5000\"]\n";
    let loaded = LoadedConfig::from_parts(&paths(), Some(file), &env).expect("loads");
    assert_eq!(
        loaded.config.insecure_registries,
        ["10.0.0.7", "[fd00::1]:5000", "registry.lan:5000"]
    );
    let defaults = LoadedConfig::from_parts(&paths(), None, &env).expect("loads");
    assert!(defaults.config.insecure_registries.is_empty());
    for bad in [
        "[\"http://registry.lan\"]",
        "[\"registry.lan/path\"]",
        "[\"host:0\"]",
        "[\"host:99999\"]",
        "[\"-bad.lan\"]",
        "[\"\"]",
        "\"registry.lan\"",
    ] {
        let file = format!("insecure_registries = {bad}\n");
        let error = LoadedConfig::from_parts(&paths(), Some(&file), &env).unwrap_err();
        assert!(
            error.to_string().contains("insecure_registries"),
            "{bad}: {error}"
        );
    }
    let env = env_of(&[("BANGER_INSECURE_REGISTRIES", "a.lan:5000, b.lan")]);
    let loaded = LoadedConfig::from_parts(&paths(), None, &env).expect("loads");
    assert_eq!(loaded.config.insecure_registries, ["a.lan:5000", "b.lan"]);
}

#[test]
fn idle_action_and_auto_resume_parse_from_file_and_env() {
    let file = "idle_action = \"stop\"\nauto_resume = false\n";
    let loaded = LoadedConfig::from_parts(&paths(), Some(file), &env_of(&[])).expect("loads");
    assert_eq!(loaded.config.idle_action, super::IdleAction::Stop);
    assert!(!loaded.config.auto_resume);
    let env = env_of(&[
        ("BANGER_IDLE_ACTION", "pause"),
        ("BANGER_AUTO_RESUME", "true"),
    ]);
    let loaded = LoadedConfig::from_parts(&paths(), Some(file), &env).expect("loads");
    assert_eq!(loaded.config.idle_action, super::IdleAction::Pause);
    assert!(loaded.config.auto_resume);
    for bad in ["idle_action = \"sleep\"\n", "auto_resume = \"yes\"\n"] {
        assert!(
            LoadedConfig::from_parts(&paths(), Some(bad), &env_of(&[])).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn web_listen_addr_defaults_to_loopback_7777_and_empty_disables() {
    let env = env_of(&[]);
    let loaded = LoadedConfig::from_parts(&paths(), None, &env).expect("defaults load");
    assert_eq!(
        loaded.config.web_listen_addr,
        Some(SocketAddr::from(([127, 0, 0, 1], 7777)))
    );
    assert!(!loaded.config.web_allow_remote);

    let loaded = LoadedConfig::from_parts(&paths(), Some("web_listen_addr = \"\"\n"), &env)
        .expect("an empty address loads");
    assert_eq!(loaded.config.web_listen_addr, None);
    assert_eq!(
        loaded.config.value_text("web_listen_addr").as_deref(),
        Some("none")
    );

    let env = env_of(&[
        ("BANGER_WEB_LISTEN_ADDR", "0.0.0.0:8080"),
        ("BANGER_WEB_ALLOW_REMOTE", "true"),
    ]);
    let loaded = LoadedConfig::from_parts(&paths(), None, &env).expect("env loads");
    assert_eq!(
        loaded.config.web_listen_addr,
        Some(SocketAddr::from(([0, 0, 0, 0], 8080)))
    );
    assert!(loaded.config.web_allow_remote);
}

#[test]
fn bad_web_allow_remote_is_refused() {
    let error = load_error("web_allow_remote = \"yes please\"\n", &[]);
    assert!(error.contains("web_allow_remote"), "{error}");
    assert!(error.contains("true or false"), "{error}");
}
