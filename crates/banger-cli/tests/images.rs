//! `banger image register|list|show|promote|delete` (and the `system df`
//! and dry-run `image prune`/`kernel prune` views of them) end to end, with the
//! validation table for bad root filesystems. (`image build` is exercised
//! by the VM suite, whose first `vm create` builds the default image.)

use std::path::{Path, PathBuf};
use std::process::Command;

use banger_testkit::TestEnv;
use banger_testkit::cli::{fails, json, ok};

/// A kernel to register images against: the Debian cloud kernel, imported
/// from the shared cache's unpacked package under the name `test-kernel`.
fn install_kernel(env: &TestEnv) {
    ok(env.banger().args(["kernel", "pull", "debian-cloud-amd64"]));
}

#[test]
fn bad_root_filesystems_are_refused_and_nothing_is_registered() {
    let env = TestEnv::new().with_shared_cache();
    install_kernel(&env);
    let dir = env.root().join("inputs");
    fs_err::create_dir_all(&dir).expect("dir");
    let fifo = dir.join("fifo");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo")
            .success()
    );
    let empty = dir.join("empty");
    fs_err::write(&empty, b"").expect("empty");
    let qcow = dir.join("disk.qcow2");
    let mut header = b"QFI\xfb\x00\x00\x00\x03".to_vec();
    header.resize(1 << 20, 0);
    fs_err::write(&qcow, &header).expect("qcow2");
    let random = dir.join("random.img");
    fs_err::write(
        &random,
        (0..(1u32 << 20))
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect::<Vec<_>>(),
    )
    .expect("random");
    // An ext4 image cut short, and a 1 TiB sparse file of nothing.
    let truncated = dir.join("truncated.ext4");
    banger_testkit::mkfs_ext4(&truncated, "64M");
    fs_err::OpenOptions::new()
        .write(true)
        .open(&truncated)
        .and_then(|file| file.set_len(1 << 20))
        .expect("truncate the ext4 image");
    let huge = dir.join("huge.img");
    fs_err::File::create(&huge)
        .and_then(|file| file.set_len(1 << 40))
        .expect("a 1 TiB sparse file");
    let device_link = dir.join("device-link");
    fs_err::os::unix::fs::symlink("/dev/null", &device_link).expect("symlink");
    let cases: Vec<(PathBuf, &str)> = vec![
        (dir.join("missing.ext4"), "missing.ext4"),
        (dir.clone(), "not a regular file"),
        (device_link, "character device"),
        (fifo, "FIFO"),
        (empty, "is empty"),
        (qcow, "qcow"),
        (random, "not an ext4"),
        (truncated, "truncated: the filesystem needs 67108864 bytes"),
        (huge, "not an ext4"),
    ];
    for (path, expected) in cases {
        let error = fails(
            env.banger()
                .args(["image", "register", "--name", "bad", "--rootfs"])
                .arg(&path),
        );
        assert!(
            error.contains("rootfs is not usable"),
            "{}: {error}",
            path.display()
        );
        assert!(
            error.to_lowercase().contains(&expected.to_lowercase()),
            "{}: expected {expected:?} in {error}",
            path.display()
        );
    }
    assert_eq!(
        json(&ok(env.banger().args(["image", "list", "--json"]))),
        serde_json::json!([])
    );
    let error = fails(
        env.banger()
            .args(["image", "register", "--name", "../x", "--rootfs", "/tmp/x"]),
    );
    assert!(error.contains("image name \"../x\""), "{error}");
}

#[test]
fn register_update_promote_and_delete() {
    let env = TestEnv::new().with_shared_cache();
    install_kernel(&env);
    let files = env.root().join("files");
    fs_err::create_dir_all(&files).expect("dir");
    let rootfs = files.join("root.ext4");
    let seed = files.join("seed.ext4");
    banger_testkit::mkfs_ext4(&rootfs, "64M");
    banger_testkit::mkfs_ext4(&seed, "16M");

    ok(env
        .banger()
        .args(["image", "register", "--name", "mine", "--rootfs"])
        .arg(&rootfs));
    let shown = json(&ok(env.banger().args(["image", "show", "mine", "--json"])));
    assert_eq!(shown["managed"], false);
    assert!(shown["work_seed"].is_null());
    assert_eq!(shown["kernel"], "debian-cloud-amd64");
    // Registering the same unmanaged name again updates it in place.
    ok(env
        .banger()
        .args(["image", "register", "--name", "mine", "--rootfs"])
        .arg(&rootfs)
        .arg("--work-seed")
        .arg(&seed));
    let shown = json(&ok(env.banger().args(["image", "show", "mine", "--json"])));
    assert_eq!(shown["work_seed"], seed.display().to_string());
    assert_eq!(
        json(&ok(env.banger().args(["image", "list", "--json"])))
            .as_array()
            .map(Vec::len),
        Some(1)
    );

    // The kernel cannot go while the image uses it.
    let error = fails(
        env.banger()
            .args(["kernel", "delete", "debian-cloud-amd64"]),
    );
    assert!(error.contains("used by image(s) mine"), "{error}");

    ok(env.banger().args(["image", "promote", "mine"]));
    let shown = json(&ok(env.banger().args(["image", "show", "mine", "--json"])));
    assert_eq!(shown["managed"], true);
    let managed_rootfs = PathBuf::from(shown["rootfs"].as_str().expect("rootfs"));
    assert!(
        managed_rootfs.starts_with(env.paths().state_dir.join("images/mine")),
        "{}",
        managed_rootfs.display()
    );
    assert_eq!(
        fs_err::read(&managed_rootfs).expect("copy"),
        fs_err::read(&rootfs).expect("original")
    );
    // A managed image cannot be overwritten by register.
    let error = fails(
        env.banger()
            .args(["image", "register", "--name", "mine", "--rootfs"])
            .arg(&rootfs),
    );
    assert!(error.contains("managed by banger"), "{error}");

    // system df counts the managed copy; a dry-run prune would remove it
    // (no VM uses it) and removes nothing; the kernel prune keeps the
    // kernel the image boots and says why.
    let df = json(&ok(env.banger().args(["system", "df", "--json"])));
    let image_bytes = df["images"][0]["total_bytes"].as_u64().unwrap_or(0);
    assert!(df["images"][0]["name"] == "mine" && image_bytes > 0, "{df}");
    assert!(
        df["total_bytes"].as_u64().unwrap_or(0) >= image_bytes,
        "{df}"
    );
    let dry = json(&ok(env.banger().args([
        "image",
        "prune",
        "--dry-run",
        "--json",
    ])));
    assert_eq!(dry["removed"][0]["name"], "mine", "{dry}");
    assert_eq!(dry["freed_bytes"].as_u64(), Some(image_bytes), "{dry}");
    assert!(env.paths().state_dir.join("images/mine").exists());
    let kernels = json(&ok(env.banger().args([
        "kernel",
        "prune",
        "--dry-run",
        "--json",
    ])));
    assert_eq!(kernels["removed"], serde_json::json!([]), "{kernels}");
    assert_eq!(
        kernels["kept"][0]["reason"], "used by images mine",
        "{kernels}"
    );

    ok(env.banger().args(["image", "delete", "mine"]));
    assert!(
        !env.paths().state_dir.join("images/mine").exists(),
        "managed files removed"
    );
    assert!(
        rootfs.exists() && seed.exists(),
        "the user's original files are never deleted"
    );
    let error = fails(env.banger().args(["image", "delete", "mine"]));
    assert!(error.contains("image mine does not exist"), "{error}");
}

#[test]
fn register_with_its_own_kernel_owns_that_kernel() {
    let env = TestEnv::new().with_shared_cache();
    install_kernel(&env);
    let kernel = json(&ok(env.banger().args([
        "kernel",
        "show",
        "debian-cloud-amd64",
        "--json",
    ])));
    let rootfs = env.root().join("root.ext4");
    banger_testkit::mkfs_ext4(&rootfs, "64M");
    let modules = Path::new(kernel["dir"].as_str().expect("dir"))
        .join("modules")
        .join(kernel["version"].as_str().expect("version"));
    ok(env
        .banger()
        .args(["image", "register", "--name", "custom", "--rootfs"])
        .arg(&rootfs)
        .arg("--kernel")
        .arg(kernel["bzimage"].as_str().expect("bzimage"))
        .arg("--modules")
        .arg(&modules));
    let kernels = json(&ok(env.banger().args(["kernel", "list", "--json"])));
    let custom = kernels
        .as_array()
        .expect("array")
        .iter()
        .find(|k| k["name"] == "custom")
        .expect("image kernel");
    assert_eq!(custom["source"], "image:custom");
    assert_eq!(custom["used_by_images"], serde_json::json!(["custom"]));
    ok(env.banger().args(["image", "delete", "custom"]));
    let kernels = json(&ok(env.banger().args(["kernel", "list", "--json"])));
    assert!(
        kernels
            .as_array()
            .expect("array")
            .iter()
            .all(|k| k["name"] != "custom"),
        "{kernels}"
    );
    assert!(rootfs.exists());
}
