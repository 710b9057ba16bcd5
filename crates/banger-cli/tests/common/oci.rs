//! OCI inputs for the pull tests: a tar layer of a directory and an OCI
//! image layout holding it, written the way `umoci`/`skopeo` would.

use std::path::Path;
use std::process::Command;

use banger_oci::Digest;

fn run(command: &mut Command) {
    let output = command.output().expect("command runs");
    assert!(
        output.status.success(),
        "{command:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// An uncompressed tar layer of `dir` (root-owned entries as root made them).
pub fn tar_layer(dir: &Path, out: &Path) {
    run(Command::new("tar")
        .args(["--numeric-owner", "--xattrs", "--xattrs-include=*", "-C"])
        .arg(dir)
        .arg("-cf")
        .arg(out)
        .arg("."));
}

fn blob(layout: &Path, bytes: &[u8]) -> (String, u64) {
    let digest = Digest::of(bytes);
    let path = layout.join("blobs/sha256").join(digest.hex());
    fs_err::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    fs_err::write(path, bytes).expect("write blob");
    (digest.to_string(), bytes.len() as u64)
}

/// An OCI layout at `layout` holding one amd64 image of the single
/// uncompressed `layer`, tagged `tag`.
pub fn oci_layout(layout: &Path, tag: &str, layer: &Path) {
    fs_err::create_dir_all(layout).expect("mkdir");
    fs_err::write(
        layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .expect("oci-layout");
    let layer = fs_err::read(layer).expect("read layer");
    let (layer_digest, layer_size) = blob(layout, &layer);
    drop(layer);
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"], "Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    }))
    .expect("config");
    let (config_digest, config_size) = blob(layout, &config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer_size}],
    }))
    .expect("manifest");
    let (digest, size) = blob(layout, &manifest);
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest,
            "size": size,
            "annotations": {"org.opencontainers.image.ref.name": tag},
        }],
    });
    fs_err::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).expect("index"),
    )
    .expect("index.json");
}
