//! Base-image detection on small ext4 images made with `mkfs.ext4 -d`.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use super::*;

/// An ext4 image of a fake system: `os_release` at /usr/lib/os-release
/// (linked from /etc), and apt-get and the glibc loader when asked.
fn image(dir: &Path, os_release: Option<&str>, apt: bool, glibc: bool) -> BaseImage {
    let src = dir.join("src");
    for sub in ["etc", "usr/lib", "usr/bin", "root"] {
        fs_err::create_dir_all(src.join(sub)).unwrap();
    }
    if let Some(text) = os_release {
        fs_err::write(src.join("usr/lib/os-release"), text).unwrap();
        fs_err::os::unix::fs::symlink("../usr/lib/os-release", src.join("etc/os-release")).unwrap();
    }
    if apt {
        fs_err::write(src.join("usr/bin/apt-get"), "").unwrap();
    }
    if glibc {
        fs_err::os::unix::fs::symlink("usr/lib", src.join("lib64")).unwrap();
        fs_err::write(src.join("usr/lib/ld-linux-x86-64.so.2"), "").unwrap();
    }
    // A setuid file, which rdump alone would lose.
    let su = src.join("usr/bin/su");
    fs_err::write(&su, "#!/bin/sh\n").unwrap();
    fs_err::set_permissions(&su, std::fs::Permissions::from_mode(0o4755)).unwrap();
    let rootfs = dir.join("rootfs.ext4");
    let status = Command::new(super::super::run::find_program("mkfs.ext4"))
        .args(["-q", "-F", "-d"])
        .arg(&src)
        .arg(&rootfs)
        .arg("8M")
        .status()
        .unwrap();
    assert!(status.success());
    BaseImage {
        name: "base".into(),
        id: 7,
        rootfs,
        work_seed: None,
    }
}

fn have_debugfs() -> bool {
    let found = Command::new(super::super::run::find_program("debugfs"))
        .arg("-V")
        .output()
        .is_ok();
    if !found {
        banger_testkit::skip_or_fail("debugfs (e2fsprogs) is not installed");
    }
    found
}

const DEBIAN: &str =
    "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_CODENAME=bookworm\n";
const UBUNTU: &str =
    "PRETTY_NAME=\"Ubuntu 24.04 LTS\"\nID=ubuntu\nID_LIKE=debian\nVERSION_CODENAME=noble\n";
const ALPINE: &str = "NAME=\"Alpine Linux\"\nID=alpine\nVERSION_ID=3.20.0\n";

#[test]
fn debian_is_accepted_with_its_suite() {
    if !have_debugfs() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let base = image(dir.path(), Some(DEBIAN), true, true);
    let system = inspect(&base).unwrap();
    assert_eq!(system.distro, Distro::Debian);
    assert_eq!(system.suite, "bookworm");
    assert_eq!(system.pretty_name, "Debian GNU/Linux 12 (bookworm)");
    assert_eq!(system.distro.mirror(), DEBIAN_MIRROR);
}

#[test]
fn ubuntu_is_accepted_with_its_archive() {
    if !have_debugfs() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let base = image(dir.path(), Some(UBUNTU), true, true);
    let system = inspect(&base).unwrap();
    assert_eq!(system.distro, Distro::Ubuntu);
    assert_eq!(system.suite, "noble");
    assert_eq!(system.distro.mirror(), UBUNTU_MIRROR);
}

#[test]
fn alpine_is_refused_naming_what_was_found() {
    if !have_debugfs() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let base = image(dir.path(), Some(ALPINE), false, false);
    let error = inspect(&base).unwrap_err();
    assert_eq!(
        error.to_string(),
        "image base cannot be provisioned: its os-release says ID=alpine; --from-image supports glibc Debian or Ubuntu (x86-64) images with apt"
    );
}

#[test]
fn busybox_without_os_release_is_refused() {
    if !have_debugfs() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let base = image(dir.path(), None, false, false);
    let error = inspect(&base).unwrap_err();
    assert!(
        matches!(error, BaseImageError::NoOsRelease { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("no /etc/os-release"), "{error}");
}

#[test]
fn debian_without_glibc_loader_or_apt_is_refused() {
    if !have_debugfs() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let no_glibc = image(&dir.path().join("a"), Some(DEBIAN), true, false);
    let error = inspect(&no_glibc).unwrap_err();
    assert!(error.to_string().contains(GLIBC_LOADER), "{error}");
    let no_apt = image(&dir.path().join("b"), Some(DEBIAN), false, true);
    let error = inspect(&no_apt).unwrap_err();
    assert!(error.to_string().contains(APT_GET), "{error}");
}

#[test]
fn os_release_parsing_and_codename_rules() {
    let fields = parse_os_release("# c\nID='debian'\nID_LIKE=\"foo ubuntu\"\n");
    assert_eq!(fields["ID"], "debian");
    let error = classify("x", &fields).unwrap_err();
    assert!(error.to_string().contains("no VERSION_CODENAME"), "{error}");
    let mut fields = fields;
    fields.insert("VERSION_CODENAME".into(), "jammy".into());
    assert_eq!(classify("x", &fields).unwrap().distro, Distro::Ubuntu);
}

#[test]
fn extract_keeps_owners_and_setuid_bits() {
    if !have_debugfs() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let base = image(&dir.path().join("img"), Some(DEBIAN), true, true);
    let tree = dir.path().join("tree");
    let tar = dir.path().join("base.tar");
    extract(&base, &tree, &tar).unwrap();
    assert!(!tree.exists(), "the dumped tree is removed once packed");
    let listing = Command::new("tar")
        .args(["--numeric-owner", "-tvf"])
        .arg(&tar)
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    let su = listing
        .lines()
        .find(|l| l.ends_with("./usr/bin/su"))
        .unwrap_or_else(|| panic!("no su in {listing}"));
    assert!(su.starts_with("-rwsr-xr-x"), "{su}");
    assert!(!listing.contains("lost+found"), "{listing}");
}

#[test]
fn base_args_use_the_custom_variant_and_unpack_the_tar_first() {
    let args = vec![
        "--variant=minbase".into(),
        "--include=a".into(),
        "--setup-hook=mkdir x".into(),
        "--".into(),
    ];
    let args = on_base_args(args, Path::new("/s/base.tar"));
    assert_eq!(
        args,
        [
            "--variant=custom",
            "--include=a",
            "--setup-hook=tar-in '/s/base.tar' /",
            "--setup-hook=mkdir x",
            "--"
        ]
        .map(std::ffi::OsString::from)
    );
}
