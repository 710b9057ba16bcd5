//! Unit tests for validation, sizing, argv construction and progress parsing.

use std::ffi::OsString;
use std::path::Path;

use super::progress::ProgressParser;
use super::*;

#[test]
fn builtin_list_parses_and_has_the_essentials() {
    let pkgs = parse_package_list(DEFAULT_PACKAGES, "built-in").unwrap();
    for p in [
        "systemd-sysv",
        "openssh-server",
        "git",
        "curl",
        "ca-certificates",
        "less",
        "procps",
        "iproute2",
        "sudo",
        "tmux",
        "python3",
        "kmod",
        "iputils-ping",
        "udev",
    ] {
        assert!(
            pkgs.iter().any(|x| x == p),
            "{p} missing from the built-in list"
        );
    }
    // Nothing that would run a DHCP client against the static config.
    for p in ["ifupdown", "isc-dhcp-client", "network-manager", "dhcpcd5"] {
        assert!(!pkgs.iter().any(|x| x == p), "{p} must not be in the list");
    }
}

#[test]
fn package_list_comments_blanks_and_errors() {
    let text = "# header\n\nfoo  # trailing comment\n  bar-baz.1+x\nlibc6\n";
    assert_eq!(
        parse_package_list(text, "f").unwrap(),
        ["foo", "bar-baz.1+x", "libc6"]
    );
    let err = parse_package_list("ok\n--allow-unauthenticated\n", "extra.txt").unwrap_err();
    match &err {
        ImageBuildError::InvalidPackageName { origin, line, name } => {
            assert_eq!(
                (origin.as_str(), *line, name.as_str()),
                ("extra.txt", 2, "--allow-unauthenticated")
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(err.to_string().contains("extra.txt:2"));
}

#[test]
fn package_names_follow_debian_policy() {
    for ok in ["git", "g++", "libstdc++6", "python3.11", "0ad", "xz-utils"] {
        assert!(is_valid_package_name(ok), "{ok}");
    }
    for bad in [
        "",
        "a",
        "-o",
        "Git",
        "foo bar",
        "foo,bar",
        "foo=1.0",
        "foo:amd64",
        "foo/bookworm",
        ".hidden",
        "+x",
        "pkg;rm",
        "pkg$(x)",
        "ünicode",
        "?name(x)",
    ] {
        assert!(!is_valid_package_name(bad), "{bad:?} accepted");
    }
}

#[test]
fn extra_packages_file_is_merged_without_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("extra.txt");
    fs_err::write(&file, "build-essential\ngit\n# c\njq\n").unwrap();
    let spec = ImageBuildSpec {
        extra_packages_file: Some(file.clone()),
        ..Default::default()
    };
    let all = resolve_packages(&spec).unwrap();
    assert_eq!(all.iter().filter(|p| *p == "git").count(), 1);
    assert_eq!(&all[all.len() - 2..], ["build-essential", "jq"]);
    let missing = ImageBuildSpec {
        extra_packages_file: Some(dir.path().join("nope")),
        ..Default::default()
    };
    let err = resolve_packages(&missing).unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
}

#[test]
fn suites_and_mirrors_are_strict() {
    for ok in ["bookworm", "trixie", "sid", "unstable"] {
        validate_suite(ok).unwrap();
    }
    for bad in [
        "",
        "b",
        "Bookworm",
        "bookworm-backports",
        "12",
        "../x",
        "-x",
        "bookworm ",
    ] {
        assert!(validate_suite(bad).is_err(), "{bad:?}");
    }
    for ok in [
        "http://deb.debian.org/debian",
        "https://mirror.example/debian/",
        "file:///srv/mirror",
        "http://[::1]:3142/debian",
    ] {
        validate_mirror(ok).unwrap();
    }
    for bad in [
        "",
        "deb.debian.org",
        "ftp://x/debian",
        "http://",
        "http://x/debian main contrib",
        "http://x/\n",
        "-http://x",
        "http://x/'$(id)'",
    ] {
        assert!(validate_mirror(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn sizes_have_headroom_and_small_requests_are_refused() {
    let tree = 400 * MIB;
    let min = min_rootfs_size(tree, 20_000);
    assert!(min > tree + tree / 10 && min < tree * 2, "{min}");
    assert_eq!(min % MIB, 0);
    let auto = rootfs_size(tree, 20_000, None).unwrap();
    assert!(auto >= min + min / 4 && auto % (64 * MIB) == 0, "{auto}");
    assert_eq!(rootfs_size(tree, 20_000, Some(4 << 30)).unwrap(), 4 << 30);
    assert_eq!(rootfs_size(tree, 20_000, Some(min)).unwrap(), min);
    let err = rootfs_size(tree, 20_000, Some(300 * MIB)).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("314572800") && text.contains(&min.to_string()),
        "{text}"
    );
    assert!(text.contains("300 MiB"), "{text}");
}

#[test]
fn image_key_tracks_inputs() {
    let a = vec!["git".to_owned(), "curl".to_owned()];
    let b = vec!["git".to_owned()];
    assert_eq!(image_key("bookworm", &a), image_key("bookworm", &a));
    assert_ne!(image_key("bookworm", &a), image_key("bookworm", &b));
    assert_ne!(image_key("bookworm", &a), image_key("trixie", &a));
    assert_eq!(image_key("bookworm", &a).len(), 16);
}

#[test]
fn mmdebstrap_argv_is_safe_and_complete() {
    let pkgs = vec!["git".to_owned(), "openssh-server".to_owned()];
    let args = mmdebstrap_args(
        BuildMode::Root,
        "bookworm",
        DEFAULT_MIRROR,
        &pkgs,
        Path::new("/out/.stage/tree"),
        Path::new("/cache/it's here"),
        Path::new("/cache/new"),
        Path::new("/out/.stage/customise.sh"),
    );
    let s: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    assert!(s.contains(&"--mode=root".to_owned()));
    assert!(s.contains(&"--variant=minbase".to_owned()));
    assert!(s.contains(&"--include=git,openssh-server".to_owned()));
    assert!(s.contains(&"--skip=essential/unlink".to_owned()));
    assert!(s.contains(&"--dpkgopt=force-unsafe-io".to_owned()));
    assert!(s.contains(
        &r"--setup-hook=sync-in '/cache/it'\''s here' /var/cache/apt/archives/".to_owned()
    ));
    assert!(
        s.contains(&"--customize-hook=sync-out /var/cache/apt/archives '/cache/new'".to_owned())
    );
    assert!(s.contains(&"--customize-hook=/out/.stage/customise.sh".to_owned()));
    // Positional arguments come after "--", in mmdebstrap's order.
    let tail: Vec<&str> = s[s.len() - 4..].iter().map(String::as_str).collect();
    assert_eq!(tail, ["--", "bookworm", "/out/.stage/tree", DEFAULT_MIRROR]);
    let unshare = mmdebstrap_args(
        BuildMode::Unshare,
        "trixie",
        DEFAULT_MIRROR,
        &pkgs,
        Path::new("/t"),
        Path::new("/c"),
        Path::new("/n"),
        Path::new("/h"),
    );
    assert!(unshare.contains(&OsString::from("--mode=unshare")));
}

#[test]
fn shell_quote_round_trips_through_sh() {
    let nasty = "a b'c\"$(d)`e`";
    let quoted = shell_quote(std::ffi::OsStr::new(nasty));
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("printf %s {}", quoted.to_string_lossy()))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), nasty);
}

#[test]
fn progress_follows_mmdebstrap_output() {
    let log = "\
I: chroot architecture amd64 is equal to the host's architecture
I: running apt-get update...
Get:1 http://deb.debian.org/debian bookworm InRelease [151 kB]
I: downloading packages with apt...
0 upgraded, 69 newly installed, 0 to remove and 0 not upgraded.
Need to get 0 B/29.7 MB of archives.
I: extracting archives...
I: installing essential packages...
I: installing remaining packages inside the chroot...
0 upgraded, 118 newly installed, 0 to remove and 0 not upgraded.
Need to get 49.7 MB of archives.
Need to get 49.7 MB of archives.
0 upgraded, 118 newly installed, 0 to remove and 0 not upgraded.
I: running special hook: sync-out /var/cache/apt/archives '/c'
I: cleaning package lists and apt cache...
";
    let mut p = ProgressParser::default();
    let mut got: Vec<(String, String)> = log
        .lines()
        .filter_map(|l| p.line(l))
        .map(|(s, m)| (s.to_owned(), m))
        .collect();
    for i in 0..118 {
        if let Some((s, m)) = p.line(&format!("Setting up pkg{i} (1.0) ...")) {
            got.push((s.to_owned(), m));
        }
    }
    let msgs: Vec<&str> = got.iter().map(|(_, m)| m.as_str()).collect();
    assert!(msgs.contains(&"updating package lists"));
    assert!(msgs.contains(&"fetching 69 essential packages"));
    assert!(msgs.contains(&"0 B to download of 29.7 MB (rest cached)"));
    assert_eq!(
        msgs.iter().filter(|m| **m == "49.7 MB to download").count(),
        1
    );
    assert_eq!(
        msgs.iter()
            .filter(|m| **m == "downloading and installing 118 packages")
            .count(),
        1
    );
    assert!(msgs.contains(&"set up 25/118 packages"));
    assert!(msgs.contains(&"set up 118/118 packages"));
    assert!(msgs.contains(&"saving downloaded packages to the cache"));
    assert!(got.iter().any(|(s, _)| s == "resolving packages"));
}
