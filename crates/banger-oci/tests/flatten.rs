//! Flattening images from disk (OCI layouts and docker archives) into ext4:
//! whiteouts, opaque directories, hardlinks, symlinks, setuid files,
//! devices, owners and modes checked with debugfs; hostile layers with
//! canary files on the host; limits.

#![allow(clippy::unwrap_used, missing_docs)]

mod support;

use std::path::Path;

use banger_oci::cache::BlobCache;
use banger_oci::{ImportError, ImportOptions, ImportedImage, Limits, Source, import};
use support::{Entry, cat, debugfs, docker_archive, gzip, ls, oci_layout, stat, tar, zstd};

fn have_e2fsprogs() -> bool {
    banger_oci::ext4::find_program("debugfs").is_file()
        && banger_oci::ext4::find_program("mkfs.ext4").is_file()
}

fn pull(root: &Path, source: &Source, limits: Limits) -> Result<ImportedImage, ImportError> {
    let (cache, work, out) = support::paths(root);
    let cache = BlobCache::new(cache);
    let options = ImportOptions {
        source,
        cache: &cache,
        work_dir: &work,
        out_dir: &out,
        docker_config: None,
        insecure_registries: &[],
        limits,
        work_seed_bytes: 64 << 20,
    };
    import(&options, &mut |_| {})
}

/// Three layers: a base (gzip), changes with whiteouts and an opaque
/// directory (zstd), and an uncompressed top.
fn layered_image() -> Vec<Vec<u8>> {
    let base = tar(&[
        Entry::dir("etc", 0o755),
        Entry::file("etc/os-release", b"ID=bangertest\n", 0o644),
        Entry::file("etc/shadow", b"root:*:1::::::\n", 0o640).owner(0, 42),
        Entry::dir("usr/bin", 0o755),
        Entry::file("usr/bin/sudo", b"#!sudo\n", 0o4755),
        Entry::file("usr/bin/wall", b"#!wall\n", 0o2755).owner(0, 5),
        Entry::file("usr/bin/ping", b"#!ping\n", 0o755).xattr(
            "security.capability",
            &[
                1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            ],
        ),
        Entry::hardlink("usr/bin/sudoedit", "usr/bin/sudo"),
        Entry::symlink("bin", "usr/bin"),
        Entry::dir("home/dev", 0o750).owner(1000, 1000),
        Entry::file("home/dev/notes.txt", b"notes\n", 0o600).owner(1000, 1000),
        Entry::dir("opt/app", 0o755),
        Entry::file("opt/app/old.conf", b"old\n", 0o644),
        Entry::file("opt/app/keep-not", b"lower\n", 0o644),
        Entry::file("var/gone.txt", b"bye\n", 0o644),
        Entry::dir("tmp", 0o1777),
        Entry::dir("dev", 0o755),
        Entry::chardev("dev/null", 1, 3, 0o666),
        Entry::fifo("run-fifo", 0o600),
        Entry::dir("root", 0o700),
        Entry::file("root/.profile", b"export PS1\n", 0o644),
    ]);
    let changes = tar(&[
        Entry::whiteout("var", "gone.txt"),
        Entry::opaque("opt/app"),
        Entry::file("opt/app/new.conf", b"new\n", 0o644),
        Entry::file("etc/os-release", b"ID=bangertest\nVERSION=2\n", 0o644),
    ]);
    let top = tar(&[Entry::file("srv/data", b"data\n", 0o640).owner(1000, 1000)]);
    vec![gzip(&base), zstd(&changes), top]
}

fn check_layered(image: &ImportedImage) {
    let rootfs = &image.rootfs;
    assert_eq!(cat(rootfs, "/etc/os-release"), "ID=bangertest\nVERSION=2\n");
    assert_eq!(
        stat(rootfs, "/etc/shadow").unwrap(),
        ("0640".into(), 0, 42, 1)
    );
    // setuid / setgid bits survive; the hardlink shares the inode.
    assert_eq!(
        stat(rootfs, "/usr/bin/sudo").unwrap(),
        ("04755".into(), 0, 0, 2)
    );
    assert_eq!(
        stat(rootfs, "/usr/bin/sudoedit").unwrap(),
        ("04755".into(), 0, 0, 2)
    );
    assert_eq!(
        stat(rootfs, "/usr/bin/wall").unwrap(),
        ("02755".into(), 0, 5, 1)
    );
    assert!(debugfs(rootfs, "ea_list /usr/bin/ping").contains("security.capability"));
    // Owned by 1000:1000.
    assert_eq!(
        stat(rootfs, "/home/dev").unwrap(),
        ("0750".into(), 1000, 1000, 2)
    );
    assert_eq!(
        stat(rootfs, "/home/dev/notes.txt").unwrap(),
        ("0600".into(), 1000, 1000, 1)
    );
    assert_eq!(
        stat(rootfs, "/srv/data").unwrap(),
        ("0640".into(), 1000, 1000, 1)
    );
    // Whiteout and opaque directory.
    assert!(!ls(rootfs, "/var").contains(&"gone.txt".to_owned()));
    assert_eq!(ls(rootfs, "/opt/app"), ["new.conf"]);
    // Symlink, device, FIFO, sticky dir.
    assert!(debugfs(rootfs, "stat /bin").contains("Fast link dest: \"usr/bin\""));
    let null = debugfs(rootfs, "stat /dev/null");
    assert!(null.contains("Type: character special"), "{null}");
    assert!(null.contains("Device major/minor number: 01:03"), "{null}");
    assert_eq!(stat(rootfs, "/dev/null").unwrap().0, "0666");
    assert!(debugfs(rootfs, "stat /run-fifo").contains("Type: FIFO"));
    assert_eq!(stat(rootfs, "/tmp").unwrap().0, "01777");
    // /root is an empty 0700 mount point; its content is in the work seed.
    assert!(ls(rootfs, "/root").iter().all(|name| name == "lost+found"));
    assert_eq!(stat(rootfs, "/root").unwrap().0, "0700");
    let seed = image.work_seed.as_ref().unwrap();
    assert_eq!(cat(seed, "/.profile"), "export PS1\n");
    assert_eq!(stat(seed, "/").unwrap().0, "0700");
    // The filesystems are consistent.
    for image in [rootfs, seed] {
        let fsck = std::process::Command::new(banger_oci::ext4::find_program("e2fsck"))
            .args(["-fn"])
            .arg(image)
            .output()
            .unwrap();
        assert!(
            fsck.status.success(),
            "{}",
            String::from_utf8_lossy(&fsck.stdout)
        );
    }
    // The config is recorded.
    assert_eq!(image.config.user.as_deref(), Some("1000:1000"));
    assert_eq!(image.config.working_dir.as_deref(), Some("/srv"));
    assert_eq!(
        image.config.entrypoint.as_deref(),
        Some(&["/bin/entry".to_owned()][..])
    );
}

#[test]
fn oci_layout_with_a_multi_arch_index_is_flattened_exactly() {
    if !have_e2fsprogs() {
        banger_testkit::skip_or_fail("e2fsprogs (mkfs.ext4, debugfs) is not installed");
        return;
    }
    let dir = support::tempdir();
    let layout = dir.path().join("layout");
    oci_layout(&layout, "v1", &layered_image(), true);
    let source = Source::parse(&format!("oci:{}:v1", layout.display())).unwrap();
    let image = pull(dir.path(), &source, Limits::default()).unwrap();
    assert!(image.manifest_digest.is_some());
    check_layered(&image);
    // The arm64 image's layer was not applied.
    assert!(
        ls(&image.rootfs, "/")
            .iter()
            .all(|name| name != "arm64-only")
    );
    // A wrong tag names the tags on offer.
    let wrong = Source::parse(&format!("oci:{}:nope", layout.display())).unwrap();
    let error = pull(&dir.path().join("again"), &wrong, Limits::default()).unwrap_err();
    assert!(error.to_string().contains("v1"), "{error}");
}

#[test]
fn docker_archive_is_flattened_exactly() {
    if !have_e2fsprogs() {
        banger_testkit::skip_or_fail("e2fsprogs (mkfs.ext4, debugfs) is not installed");
        return;
    }
    let dir = support::tempdir();
    // docker save stores layers uncompressed.
    let layers: Vec<Vec<u8>> = layered_image()
        .into_iter()
        .map(|layer| {
            let mut out = Vec::new();
            std::io::copy(
                &mut banger_oci::layer::decompress(&layer[..]).unwrap(),
                &mut out,
            )
            .unwrap();
            out
        })
        .collect();
    let archive = dir.path().join("image.tar");
    docker_archive(&archive, &layers);
    let source = Source::parse(&format!("docker-archive:{}", archive.display())).unwrap();
    let image = pull(dir.path(), &source, Limits::default()).unwrap();
    assert!(image.manifest_digest.is_none());
    check_layered(&image);
}

/// Files on the host next to the pull's directories that hostile layers aim at.
struct Canaries {
    files: Vec<(std::path::PathBuf, Vec<u8>)>,
}

impl Canaries {
    fn plant(root: &Path) -> Self {
        let mut files = Vec::new();
        for name in ["canary", "work/canary", "etc/passwd"] {
            let path = root.join(name);
            fs_err::create_dir_all(path.parent().unwrap()).unwrap();
            fs_err::write(&path, b"untouched\n").unwrap();
            files.push((path, b"untouched\n".to_vec()));
        }
        Self { files }
    }

    fn check(&self, root: &Path) {
        for (path, content) in &self.files {
            assert_eq!(&fs_err::read(path).unwrap(), content, "{}", path.display());
        }
        // Nothing but the pull's own directories and the canaries appeared.
        let mut names: Vec<String> = fs_err::read_dir(root)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["cache", "canary", "etc", "layout", "out", "work"]);
        let etc: Vec<_> = fs_err::read_dir(root.join("etc")).unwrap().collect();
        assert_eq!(etc.len(), 1);
    }
}

#[test]
fn hostile_layers_stay_inside_the_image() {
    if !have_e2fsprogs() {
        banger_testkit::skip_or_fail("e2fsprogs (mkfs.ext4, debugfs) is not installed");
        return;
    }
    let dir = support::tempdir();
    let root = dir.path();
    let canaries = Canaries::plant(root);
    let depth = "../".repeat(30);
    let host_root = root.display().to_string();
    let first = tar(&[
        Entry::file(&format!("{depth}canary"), b"escaped-dotdot\n", 0o644),
        Entry::file(&format!("{host_root}/canary"), b"escaped-absolute\n", 0o644),
        Entry::file("/etc/passwd", b"inside\n", 0o644),
        // A symlink out of the image, then a write through it.
        Entry::symlink("out", &host_root),
        Entry::symlink("up", &depth),
        // Symlinks named `.` and `/` must not replace the root.
        Entry::symlink(".", &host_root),
        Entry::symlink("/", "/tmp"),
        Entry::dir("data", 0o755),
        Entry::file("dup", b"first\n", 0o644),
        Entry::file("dup", b"second\n", 0o600),
        // A device node is made inside the image only.
        Entry::chardev("evil-disk", 8, 0, 0o666),
    ]);
    let second = tar(&[
        Entry::file("out/canary", b"through-symlink\n", 0o644),
        Entry::file("up/work/canary", b"through-dotdot-symlink\n", 0o644),
        Entry::hardlink("stolen", &format!("{depth}etc/passwd")),
        Entry::hardlink("stolen-abs", "/etc/passwd"),
    ]);
    let layout = root.join("layout");
    oci_layout(&layout, "latest", &[first, second], false);
    let source = Source::parse(&format!("oci:{}", layout.display())).unwrap();
    let image = pull(root, &source, Limits::default()).unwrap();
    canaries.check(root);
    let rootfs = &image.rootfs;
    // Every write landed inside the image.
    assert_eq!(cat(rootfs, "/canary"), "escaped-dotdot\n");
    assert_eq!(
        cat(rootfs, &format!("{host_root}/canary")),
        "through-symlink\n"
    );
    assert_eq!(cat(rootfs, "/work/canary"), "through-dotdot-symlink\n");
    assert_eq!(cat(rootfs, "/etc/passwd"), "inside\n");
    assert_eq!(cat(rootfs, "/stolen"), "inside\n");
    assert_eq!(stat(rootfs, "/etc/passwd").unwrap().3, 3);
    assert_eq!(cat(rootfs, "/dup"), "second\n");
    assert_eq!(stat(rootfs, "/dup").unwrap().0, "0600");
    assert!(debugfs(rootfs, "stat /").contains("Type: directory"));
    assert!(debugfs(rootfs, "stat /evil-disk").contains("Type: character special"));
    // The work directory holds only plain files and directories.
    let mut stack = vec![root.join("work")];
    while let Some(dir) = stack.pop() {
        for entry in fs_err::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let kind = entry.file_type().unwrap();
            assert!(
                kind.is_file() || kind.is_dir(),
                "{}",
                entry.path().display()
            );
            if kind.is_dir() {
                stack.push(entry.path());
            }
        }
    }
}

#[test]
fn hardlinks_to_missing_targets_are_refused() {
    if !have_e2fsprogs() {
        banger_testkit::skip_or_fail("e2fsprogs (mkfs.ext4, debugfs) is not installed");
        return;
    }
    let dir = support::tempdir();
    let layout = dir.path().join("layout");
    oci_layout(
        &layout,
        "latest",
        &[tar(&[Entry::hardlink("x", "../../../nope")])],
        false,
    );
    let source = Source::parse(&format!("oci:{}", layout.display())).unwrap();
    let error = pull(dir.path(), &source, Limits::default()).unwrap_err();
    let text = format!(
        "{error}: {}",
        std::error::Error::source(&error)
            .map(ToString::to_string)
            .unwrap_or_default()
    );
    assert!(text.contains("layer 1/1"), "{text}");
    assert!(text.contains("does not exist"), "{text}");
}

#[test]
fn bombs_and_oversized_layers_hit_the_limits() {
    let dir = support::tempdir();
    // 64 MiB of zeros compress to a few hundred KiB.
    let bomb = gzip(&tar(&[Entry::file("zeros", &vec![0u8; 64 << 20], 0o644)]));
    assert!(bomb.len() < 1 << 20);
    let layout = dir.path().join("layout");
    oci_layout(&layout, "latest", &[bomb], false);
    let source = Source::parse(&format!("oci:{}", layout.display())).unwrap();
    let limits = Limits {
        max_layer_bytes: 16 << 20,
        ..Limits::default()
    };
    let error = pull(&dir.path().join("a"), &source, limits).unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("layer 1/1") && text.contains(&(16u64 << 20).to_string()),
        "{text}"
    );
    assert!(text.contains("max layer size"), "{text}");
    let limits = Limits {
        max_image_bytes: 1 << 20,
        ..Limits::default()
    };
    let error = pull(&dir.path().join("b"), &source, limits).unwrap_err();
    assert!(error.to_string().contains("max image size"), "{error}");
    // Nothing of the refused pulls is left in the work directory's content.
    for sub in ["a", "b"] {
        let content = dir.path().join(sub).join("work/content");
        let left = fs_err::read_dir(&content)
            .map(|entries| entries.count())
            .unwrap_or(0);
        assert_eq!(left, 0, "{}", content.display());
    }
}

#[test]
fn corrupted_local_layers_are_refused() {
    let dir = support::tempdir();
    let layout = dir.path().join("layout");
    let layer = tar(&[Entry::file("a", b"a\n", 0o644)]);
    oci_layout(&layout, "latest", std::slice::from_ref(&layer), false);
    let blob = layout
        .join("blobs/sha256")
        .join(banger_oci::Digest::of(&layer).hex());
    let mut bytes = fs_err::read(&blob).unwrap();
    bytes[600] ^= 1;
    fs_err::write(&blob, bytes).unwrap();
    let source = Source::parse(&format!("oci:{}", layout.display())).unwrap();
    let error = pull(dir.path(), &source, Limits::default()).unwrap_err();
    assert!(matches!(error, ImportError::LayerDigest { .. }), "{error}");
}
