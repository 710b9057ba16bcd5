//! `banger kernel ...` end to end through the real daemon: catalog pull of
//! Debian's cloud kernel (cached across runs in the shared cache dir),
//! import, delete, and failures that must leave nothing behind.

use std::path::{Path, PathBuf};
use std::process::Command;

use banger_testkit::TestEnv;
use banger_testkit::cli::{fails, json, ok};

fn kernels_dir(env: &TestEnv) -> PathBuf {
    env.paths().state_dir.join("kernels")
}

fn entries(dir: &Path) -> Vec<String> {
    match fs_err::read_dir(dir) {
        Ok(entries) => entries
            .map(|entry| {
                entry
                    .expect("entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect(),
        Err(_) => Vec::new(),
    }
}

#[test]
fn pull_show_import_and_delete_the_debian_cloud_kernel() {
    let env = TestEnv::new().with_shared_cache();
    let available = json(&ok(env.banger().args([
        "kernel",
        "list",
        "--available",
        "--json",
    ])));
    assert_eq!(available[0]["name"], "debian-cloud-amd64");
    assert_eq!(available[0]["default"], true);

    ok(env.banger().args(["kernel", "pull", "debian-cloud-amd64"]));
    let shown = json(&ok(env.banger().args([
        "kernel",
        "show",
        "debian-cloud-amd64",
        "--json",
    ])));
    let version = shown["version"].as_str().expect("version").to_owned();
    assert!(version.ends_with("-cloud-amd64"), "{version}");
    for key in ["bzimage", "vmlinux", "initramfs", "modules_disk"] {
        let path = shown[key]
            .as_str()
            .unwrap_or_else(|| panic!("{key} missing: {shown}"));
        assert!(Path::new(path).is_file(), "{key}: {path}");
    }
    let vmlinux = fs_err::read(shown["vmlinux"].as_str().expect("vmlinux")).expect("read vmlinux");
    assert_eq!(&vmlinux[..4], b"\x7fELF");
    // Pulling again is a no-op that succeeds.
    ok(env.banger().args(["kernel", "pull", "debian-cloud-amd64"]));

    // Import the same kernel files under another name.
    let modules = Path::new(shown["dir"].as_str().expect("dir"))
        .join("modules")
        .join(&version);
    ok(env
        .banger()
        .args(["kernel", "import", "--name", "mine"])
        .arg("--kernel")
        .arg(shown["bzimage"].as_str().expect("bzimage"))
        .arg("--modules")
        .arg(&modules));
    let list = json(&ok(env.banger().args(["kernel", "list", "--json"])));
    let names: Vec<&str> = list
        .as_array()
        .expect("array")
        .iter()
        .map(|k| k["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["debian-cloud-amd64", "mine"]);
    assert_eq!(list[1]["source"], "import");
    assert_eq!(list[1]["version"], version.as_str());

    // Importing over a catalog kernel's name is refused.
    let error = fails(
        env.banger()
            .args(["kernel", "import", "--name", "debian-cloud-amd64"])
            .arg("--kernel")
            .arg(shown["bzimage"].as_str().expect("bzimage")),
    );
    assert!(
        error.contains("already installed (from catalog:debian-cloud-amd64)"),
        "{error}"
    );

    // A `url` catalog entry (here a file:// mirror) with the right digest
    // installs; without a modules tree the initramfs has no modules.
    let bzimage = shown["bzimage"].as_str().expect("bzimage");
    let digest = ok(Command::new("sha256sum").arg(bzimage));
    let digest = digest.split_whitespace().next().expect("digest");
    let catalog = env.root().join("catalog.toml");
    fs_err::write(
        &catalog,
        format!(
            "version = 1\ndefault = \"mirrored\"\n\n[kernel.mirrored]\narch = \"x86_64\"\nsource = \"url\"\nurl = \"file://{bzimage}\"\nsha256 = \"{digest}\"\nformat = \"bzimage\"\nversion = \"{version}\"\n"
        ),
    )
    .expect("catalog");
    // The daemon reads BANGER_KERNEL_CATALOG; restart it with the variable.
    ok(env.banger().args(["daemon", "stop"]));
    ok(env
        .banger()
        .env("BANGER_KERNEL_CATALOG", &catalog)
        .args(["kernel", "pull", "mirrored"]));
    let mirrored = json(&ok(env
        .banger()
        .args(["kernel", "show", "mirrored", "--json"])));
    assert_eq!(mirrored["version"], version.as_str());
    assert_eq!(mirrored["source"], "catalog:mirrored");
    assert!(mirrored["modules_disk"].is_null());
    ok(env.banger().args(["kernel", "delete", "mirrored"]));

    ok(env.banger().args(["kernel", "delete", "mine"]));
    assert_eq!(entries(&kernels_dir(&env)), ["debian-cloud-amd64"]);
    let error = fails(env.banger().args(["kernel", "delete", "mine"]));
    assert!(error.contains("kernel mine is not installed"), "{error}");
}

#[test]
fn bad_inputs_are_refused_and_leave_nothing_behind() {
    let env = TestEnv::new();
    let error = fails(env.banger().args(["kernel", "pull", "no-such-kernel"]));
    assert!(
        error.contains("not in the catalog; available: debian-cloud-amd64"),
        "{error}"
    );
    let error = fails(env.banger().args(["kernel", "pull", "../x"]));
    assert!(error.contains("kernel name \"../x\""), "{error}");
    let error = fails(env.banger().args([
        "kernel",
        "import",
        "--name",
        "bad",
        "--kernel",
        "/etc/passwd",
    ]));
    assert!(error.contains("/etc/passwd is not a kernel"), "{error}");
    let error = fails(env.banger().args([
        "kernel",
        "import",
        "--name",
        "bad",
        "--kernel",
        "/nonexistent/vmlinuz",
    ]));
    assert!(error.contains("/nonexistent/vmlinuz"), "{error}");
    let fifo = env.root().join("fifo");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo")
            .success()
    );
    let error = fails(
        env.banger()
            .args(["kernel", "import", "--name", "bad", "--kernel"])
            .arg(&fifo),
    );
    assert!(error.contains("is not a regular file"), "{error}");
    assert!(
        entries(&kernels_dir(&env)).is_empty(),
        "{:?}",
        entries(&kernels_dir(&env))
    );
    let list = json(&ok(env.banger().args(["kernel", "list", "--json"])));
    assert_eq!(list, serde_json::json!([]));
}

#[test]
fn url_kernel_with_a_wrong_checksum_leaves_nothing_behind() {
    let env = TestEnv::new();
    // A bzImage-shaped file served from a file:// "mirror".
    let mirror = env.root().join("mirror");
    fs_err::create_dir_all(&mirror).expect("mirror dir");
    let kernel = mirror.join("vmlinuz");
    let mut bytes = vec![0u8; 4096];
    bytes[0x202..0x206].copy_from_slice(b"HdrS");
    fs_err::write(&kernel, &bytes).expect("kernel file");
    let catalog = env.root().join("catalog.toml");
    fs_err::write(
        &catalog,
        format!(
            "version = 1\ndefault = \"mirrored\"\n\n[kernel.mirrored]\ndescription = \"test\"\narch = \"x86_64\"\nsource = \"url\"\nurl = \"file://{}\"\nsha256 = \"{}\"\nformat = \"bzimage\"\nversion = \"6.1.0-test\"\n",
            kernel.display(),
            "ab".repeat(32)
        ),
    )
    .expect("catalog");
    let error = fails(
        env.banger()
            .env("BANGER_KERNEL_CATALOG", &catalog)
            .args(["kernel", "pull", "mirrored"]),
    );
    assert!(error.contains("checksum mismatch"), "{error}");
    assert!(error.contains(&"ab".repeat(32)), "{error}");
    assert!(entries(&kernels_dir(&env)).is_empty());
    let downloads = env.paths().cache_dir.join("downloads");
    assert!(
        entries(&downloads).is_empty(),
        "no partial download kept: {:?}",
        entries(&downloads)
    );
}
