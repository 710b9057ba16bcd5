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

/// A fake system whose owners and modes only the image knows once dumped
/// by a non-root user: a setuid file, a group-owned secret, a user's
/// private home, a read-only directory and an unreadable file in it.
fn owned_image(dir: &Path) -> BaseImage {
    let base = image(dir, Some(DEBIAN), true, true);
    let src = dir.join("src");
    let file = |rel: &str, mode: u32, uid: u32, gid: u32| {
        let path = src.join(rel);
        fs_err::create_dir_all(path.parent().unwrap()).unwrap();
        fs_err::write(&path, rel).unwrap();
        fs_err::os::unix::fs::chown(&path, Some(uid), Some(gid)).unwrap();
        fs_err::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    let directory = |rel: &str, mode: u32, uid: u32, gid: u32| {
        let path = src.join(rel);
        fs_err::create_dir_all(&path).unwrap();
        fs_err::os::unix::fs::chown(&path, Some(uid), Some(gid)).unwrap();
        fs_err::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    file("etc/shadow", 0o640, 0, 42);
    directory("home/dev", 0o700, 1000, 1000);
    file("home/dev/notes", 0o600, 1000, 1000);
    file("srv/ro/secret", 0o000, 1234, 5678);
    directory("srv/ro", 0o555, 1234, 5678);
    fs_err::remove_file(&base.rootfs).unwrap();
    let status = Command::new(super::super::run::find_program("mkfs.ext4"))
        .args(["-q", "-F", "-d"])
        .arg(&src)
        .arg(&base.rootfs)
        .arg("8M")
        .status()
        .unwrap();
    assert!(status.success());
    base
}

/// Each tar entry's path, type, mode and owner.
fn tar_entries(tar: &Path) -> std::collections::BTreeMap<String, (char, u32, u64, u64)> {
    let mut archive = ::tar::Archive::new(fs_err::File::open(tar).unwrap());
    archive
        .entries()
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            let header = entry.header();
            let kind = match header.entry_type() {
                ::tar::EntryType::Directory => 'd',
                ::tar::EntryType::Symlink => 'l',
                ::tar::EntryType::Regular => '-',
                other => panic!("unexpected {other:?}"),
            };
            (
                entry.path().unwrap().to_string_lossy().into_owned(),
                (
                    kind,
                    header.mode().unwrap(),
                    header.uid().unwrap(),
                    header.gid().unwrap(),
                ),
            )
        })
        .collect()
}

/// What [`owned_image`]'s tar must say, whoever extracted it.
fn assert_owners_kept(tar: &Path) {
    let entries = tar_entries(tar);
    let get = |path: &str| {
        *entries
            .get(path)
            .unwrap_or_else(|| panic!("no {path} in {entries:?}"))
    };
    assert_eq!(get("usr/bin/su"), ('-', 0o4755, 0, 0));
    assert_eq!(get("etc/shadow"), ('-', 0o640, 0, 42));
    assert_eq!(get("home/dev"), ('d', 0o700, 1000, 1000));
    assert_eq!(get("home/dev/notes"), ('-', 0o600, 1000, 1000));
    assert_eq!(get("srv/ro"), ('d', 0o555, 1234, 5678));
    assert_eq!(get("srv/ro/secret"), ('-', 0o000, 1234, 5678));
    assert_eq!(get("etc/os-release"), ('l', 0o777, 0, 0));
    assert!(
        !entries.keys().any(|k| k.contains("lost+found")),
        "{entries:?}"
    );
    let mut archive = ::tar::Archive::new(fs_err::File::open(tar).unwrap());
    let mut secret = archive
        .entries()
        .unwrap()
        .map(Result::unwrap)
        .find(|e| e.path().unwrap().to_str() == Some("srv/ro/secret"))
        .unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut secret, &mut text).unwrap();
    assert_eq!(text, "srv/ro/secret", "the unreadable file's contents");
}

#[test]
fn extract_keeps_owners_and_setuid_bits() {
    if !have_debugfs() {
        return;
    }
    if super::super::BuildMode::detect() != super::super::BuildMode::Root {
        banger_testkit::skip_or_fail("making an image with other owners needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let base = owned_image(&dir.path().join("img"));
    let tree = dir.path().join("tree");
    let tar = dir.path().join("base.tar");
    extract(&base, &tree, &tar).unwrap();
    assert!(!tree.exists(), "the dumped tree is removed once packed");
    assert_owners_kept(&tar);
}

/// The variable that tells [`unprivileged_extract_child`] where to work.
const CHILD_DIR: &str = "BANGER_TEST_UNPRIVILEGED_EXTRACT_DIR";

#[test]
fn an_unprivileged_extract_takes_owners_from_the_image() {
    if !have_debugfs() {
        return;
    }
    if super::super::BuildMode::detect() != super::super::BuildMode::Root {
        banger_testkit::skip_or_fail("making an image with other owners needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let base = owned_image(&dir.path().join("img"));
    // The child (user nobody) reads the image and writes next to it.
    for path in [dir.path(), &dir.path().join("img"), &base.rootfs] {
        fs_err::os::unix::fs::chown(path, Some(65534), Some(65534)).unwrap();
    }
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "image_build::base::tests::unprivileged_extract_child",
            "--include-ignored",
            "--nocapture",
        ])
        .env(CHILD_DIR, dir.path())
        .output()
        .unwrap();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{log}");
    assert!(log.contains("1 passed"), "the child ran: {log}");
    assert_owners_kept(&dir.path().join("base.tar"));
}

/// Run as user nobody by [`an_unprivileged_extract_takes_owners_from_the_image`].
#[test]
#[ignore = "run as another user by an_unprivileged_extract_takes_owners_from_the_image"]
fn unprivileged_extract_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR).map(std::path::PathBuf::from) else {
        banger_testkit::skip_or_fail(
            "this runs only inside an_unprivileged_extract_takes_owners_from_the_image",
        );
        return;
    };
    assert_eq!(
        super::super::BuildMode::detect(),
        super::super::BuildMode::Unshare,
        "the child must not be root"
    );
    let base = BaseImage {
        name: "base".into(),
        id: 7,
        rootfs: dir.join("img/rootfs.ext4"),
        work_seed: None,
    };
    let tree = dir.join("tree");
    extract(&base, &tree, &dir.join("base.tar")).unwrap();
    assert!(!tree.exists(), "the dumped tree is removed once packed");
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
