//! Provisioned image builds (`image_build` with `provision`): a failure while
//! fetching the pinned tools (unreachable registry, integrity mismatch)
//! fails the build with an error naming the package and leaves no half image
//! and nothing half-downloaded in the cache; and (ignored, minutes, needs the
//! mirror and the npm registry or a primed cache) a real provisioned build
//! whose tree is checked with debugfs. Real guests are tested by
//! crates/banger-cli/tests/vm_provisioned_e2e.rs.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Command;

use banger_image::image_build::{ImageBuildError, ImageBuildSpec, build_debian_image};
use banger_image::provision::{ProvisionError, ProvisionSpec};

fn spec(registry: &str) -> ImageBuildSpec {
    ImageBuildSpec {
        provision: Some(ProvisionSpec {
            docker: false,
            registry: Some(registry.to_owned()),
        }),
        ..Default::default()
    }
}

fn entries(dir: &Path) -> Vec<String> {
    fs_err::read_dir(dir)
        .map(|read| {
            read.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn an_unreachable_registry_fails_the_build_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (out, cache, log) = (
        dir.path().join("out"),
        dir.path().join("cache"),
        dir.path().join("build.log"),
    );
    let error = build_debian_image(
        &spec("http://127.0.0.1:1"),
        &out,
        &cache,
        &log,
        &mut |_, _| {},
    )
    .unwrap_err();
    let ImageBuildError::Provision { source } = &error else {
        panic!("not a provisioning error: {error}");
    };
    assert!(
        matches!(source, ProvisionError::Download { .. }),
        "{source}"
    );
    assert!(source.to_string().contains("127.0.0.1:1"), "{source}");
    assert!(entries(&out).is_empty(), "half image: {:?}", entries(&out));
    assert!(entries(&cache.join("npm")).is_empty());
}

#[test]
fn an_integrity_mismatch_fails_the_build_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // A file:// registry whose first package is a different tarball.
    let plan = banger_image::provision::Plan::load(false).unwrap();
    let first = plan.packages().next().unwrap();
    let registry = format!("file://{}/registry", dir.path().display());
    let url = banger_image::provision::tarball_url(&registry, first);
    let path = Path::new(url.strip_prefix("file://").unwrap());
    fs_err::create_dir_all(path.parent().unwrap()).unwrap();
    fs_err::write(path, b"not the pinned tarball").unwrap();
    let (out, cache, log) = (
        dir.path().join("out"),
        dir.path().join("cache"),
        dir.path().join("build.log"),
    );
    let error =
        build_debian_image(&spec(&registry), &out, &cache, &log, &mut |_, _| {}).unwrap_err();
    let ImageBuildError::Provision { source } = &error else {
        panic!("not a provisioning error: {error}");
    };
    assert!(
        matches!(source, ProvisionError::IntegrityMismatch { .. }),
        "{source}"
    );
    assert!(source.to_string().contains(&first.id()), "{source}");
    assert!(entries(&out).is_empty(), "half image: {:?}", entries(&out));
    assert!(entries(&cache.join("npm")).is_empty());
}

fn debugfs(image: &Path, request: &str) -> String {
    let out = Command::new("debugfs")
        .args(["-R", request])
        .arg(image)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A full provisioned build (mirror + npm registry, or the shared cache):
/// tools linked, unit enabled, managed tmux block in the seed.
#[test]
#[ignore = "builds a provisioned image (minutes); needs the Debian mirror and npm registry or a primed cache"]
fn provisioned_build_has_the_tools() {
    if !common::have("mmdebstrap") {
        banger_testkit::skip_or_fail("mmdebstrap not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let cache = common::cache_dir().join("image-build");
    let log = dir.path().join("build.log");
    let spec = ImageBuildSpec {
        provision: Some(ProvisionSpec::default()),
        ..Default::default()
    };
    let built = build_debian_image(&spec, &out, &cache, &log, &mut |stage, message| {
        eprintln!("[{stage}] {message}")
    })
    .unwrap();
    eprintln!(
        "built in {:?}: tree {} MiB, rootfs {} MiB",
        built.elapsed,
        built.tree_bytes >> 20,
        built.rootfs_bytes >> 20
    );
    let record = built.provision.unwrap();
    assert!(
        record
            .installed_debian
            .iter()
            .any(|p| p.starts_with("tmux=")),
        "{record:?}"
    );
    for bin in [
        "opencode",
        "claude",
        "pi",
        "mise",
        "node",
        "npm",
        "banger-tmux",
    ] {
        let stat = debugfs(&built.rootfs, &format!("stat /usr/local/bin/{bin}"));
        assert!(stat.contains("Type: symlink"), "{bin}: {stat}");
    }
    let wants = debugfs(
        &built.rootfs,
        "stat /etc/systemd/system/multi-user.target.wants/opencode.service",
    );
    assert!(wants.contains("Type: symlink"), "{wants}");
    let conf = debugfs(&built.work_seed, "cat /.tmux.conf");
    assert_eq!(
        conf.matches("@plugin 'banger/tmux-banger-persist'").count(),
        1,
        "{conf}"
    );
}
