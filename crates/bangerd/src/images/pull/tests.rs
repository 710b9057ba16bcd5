//! Domain tests of `image pull` from an OCI layout on disk: the managed
//! image and its recorded config, names refused when taken, and failures
//! (and a killed daemon's leftovers) leave no row and no directory.

use std::path::{Path, PathBuf};
use std::process::Command;

use banger_api::{ErrorCode, ImageName, KernelName};
use banger_oci::Digest;

use super::*;
use crate::store::KernelRow;

fn blob(layout: &Path, bytes: &[u8]) -> (Digest, usize) {
    let digest = Digest::of(bytes);
    let dir = layout.join("blobs/sha256");
    fs_err::create_dir_all(&dir).expect("blobs dir");
    fs_err::write(dir.join(digest.hex()), bytes).expect("blob");
    (digest, bytes.len())
}

/// An OCI layout with one layer made by `tar` from a small tree.
fn layout(root: &Path) -> PathBuf {
    let tree = root.join("tree");
    fs_err::create_dir_all(tree.join("etc")).expect("etc");
    fs_err::create_dir_all(tree.join("root")).expect("root");
    fs_err::write(tree.join("etc/os-release"), "ID=pulltest\n").expect("os-release");
    fs_err::write(tree.join("root/.profile"), "PS1=x\n").expect("profile");
    let layer = root.join("layer.tar");
    let status = Command::new("tar")
        .args(["--owner=0", "--group=0", "-cf"])
        .arg(&layer)
        .arg("-C")
        .arg(&tree)
        .arg(".")
        .status()
        .expect("tar");
    assert!(status.success());
    let layout = root.join("layout");
    let (layer_digest, layer_size) = blob(&layout, &fs_err::read(&layer).expect("layer"));
    let config = serde_json::json!({"architecture": "amd64", "os": "linux",
        "config": {"Env": ["A=1"], "Cmd": ["/bin/sh"], "WorkingDir": "/root", "User": "0"}});
    let (config_digest, config_size) = blob(&layout, config.to_string().as_bytes());
    let manifest = serde_json::json!({"schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest.to_string(), "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest.to_string(), "size": layer_size}]});
    let (manifest_digest, manifest_size) = blob(&layout, manifest.to_string().as_bytes());
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_digest.to_string(), "size": manifest_size,
        "annotations": {"org.opencontainers.image.ref.name": "v1"}}]});
    fs_err::write(layout.join("index.json"), index.to_string()).expect("index");
    layout
}

fn fixture() -> (AppState, tempfile::TempDir) {
    let temp = tempfile::tempdir().expect("tempdir");
    let (state, _) = AppState::for_tests(temp.path());
    let dir = temp.path().join("state/kernels/k1");
    fs_err::create_dir_all(&dir).expect("kernel dir");
    fs_err::write(dir.join("vmlinux"), "kernel").expect("vmlinux");
    fs_err::write(dir.join("initramfs.img"), "initramfs").expect("initramfs");
    state
        .store()
        .upsert_kernel(&KernelRow {
            id: 0,
            name: KernelName::parse("k1").expect("name"),
            version: "6.1.0-test".into(),
            source: "test".into(),
            dir: dir.clone(),
            bzimage: None,
            vmlinux: Some(dir.join("vmlinux")),
            initramfs: dir.join("initramfs.img"),
            modules_disk: None,
            size_bytes: 1,
            created_at: 0,
        })
        .expect("kernel row");
    (state, temp)
}

fn request(name: &str, reference: String) -> ImagePullRequest {
    ImagePullRequest {
        name: ImageName::parse(name).expect("name"),
        reference,
        kernel_ref: Some(KernelName::parse("k1").expect("kernel")),
        max_layer_bytes: None,
        max_image_bytes: None,
    }
}

fn images_root(state: &AppState) -> PathBuf {
    images_dir(&state.paths().state_dir)
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs_err::read_dir(dir)
        .map(|entries| {
            entries
                .map(|entry| {
                    entry
                        .expect("entry")
                        .file_name()
                        .to_string_lossy()
                        .into_owned()
                })
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn pulls_an_oci_layout_into_a_managed_image_with_its_config() {
    let (state, temp) = fixture();
    let layout = layout(temp.path());
    // A partial directory of a daemon that was killed mid-pull.
    let stale = images_root(&state).join(".partial-old-999999999");
    fs_err::create_dir_all(stale.join("work")).expect("stale");
    let image = pull(
        &state,
        &request("pulled", format!("oci:{}:v1", layout.display())),
        &ProgressSink::discard(),
    )
    .expect("pull");
    assert!(image.managed);
    assert!(
        image.rootfs.ends_with("images/pulled/rootfs.ext4"),
        "{}",
        image.rootfs
    );
    assert!(
        image
            .work_seed
            .as_deref()
            .is_some_and(|seed| seed.ends_with("work-seed.ext4"))
    );
    let oci = image.oci.expect("origin recorded");
    assert_eq!(oci.env, ["A=1"]);
    assert_eq!(oci.cmd.as_deref(), Some(&["/bin/sh".to_owned()][..]));
    assert_eq!(oci.working_dir.as_deref(), Some("/root"));
    assert!(oci.manifest_digest.is_some());
    assert!(oci.source.starts_with("oci:"));
    // Shown again from the row; the stale partial is gone; no work files left.
    let shown = super::super::show(&state.store(), &image.name).expect("show");
    assert_eq!(
        shown.oci.as_ref().map(|oci| &oci.config_digest),
        Some(&oci.config_digest)
    );
    assert_eq!(entries(&images_root(&state)), ["pulled"]);
    assert_eq!(
        entries(&images_root(&state).join("pulled")),
        ["rootfs.ext4", "work-seed.ext4"]
    );
    // The name is taken now.
    let error = pull(
        &state,
        &request("pulled", format!("oci:{}:v1", layout.display())),
        &ProgressSink::discard(),
    )
    .expect_err("name taken");
    assert_eq!(error.code(), ErrorCode::Conflict);
}

#[test]
fn a_failed_pull_leaves_no_row_and_no_directory() {
    let (state, temp) = fixture();
    let layout = layout(temp.path());
    let error = pull(
        &state,
        &request("broken", format!("oci:{}:nope", layout.display())),
        &ProgressSink::discard(),
    )
    .expect_err("no such tag");
    assert_eq!(error.code(), ErrorCode::BadRequest);
    assert!(
        state
            .store()
            .image(&ImageName::parse("broken").expect("name"))
            .expect("query")
            .is_none()
    );
    assert!(entries(&images_root(&state)).is_empty());
    let error = pull(
        &state,
        &request("relative", "oci:relative/dir".to_owned()),
        &ProgressSink::discard(),
    )
    .expect_err("relative path");
    assert_eq!(error.code(), ErrorCode::BadRequest);
}
