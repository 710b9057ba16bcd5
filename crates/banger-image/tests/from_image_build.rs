//! `image build --from-image` at the library level: a provisioned build on
//! top of an existing bare Debian image's files (ignored: minutes, needs the
//! Debian mirror and the npm registry or a primed cache, and a bare image
//! built by tests/image_build.rs in the shared cache). Real guests booting
//! the result are tested by crates/banger-cli/tests/image_from_image_e2e.rs.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;

use banger_image::image_build::base::BaseImage;
use banger_image::image_build::{ImageBuildSpec, build_debian_image};
use banger_image::provision::ProvisionSpec;

/// A bare image the other build tests left in the shared cache.
fn cached_bare_image() -> Option<(PathBuf, PathBuf)> {
    let dir = common::cache_dir().join("test-images");
    let entries = fs_err::read_dir(&dir).ok()?;
    entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .map(|path| (path.join("rootfs.ext4"), path.join("work-seed.ext4")))
        .find(|(rootfs, seed)| rootfs.is_file() && seed.is_file())
}

#[test]
#[ignore = "builds a provisioned image on a bare one (minutes); needs a bare image in the shared cache, the Debian mirror and the npm registry or a primed cache"]
fn provisioned_build_on_a_bare_image() {
    if !common::have("mmdebstrap") {
        banger_testkit::skip_or_fail("mmdebstrap not installed");
        return;
    }
    let Some((rootfs, work_seed)) = cached_bare_image() else {
        banger_testkit::skip_or_fail(
            "no bare image in the shared cache: run tests/image_build.rs first",
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let log = dir.path().join("build.log");
    let spec = ImageBuildSpec {
        provision: Some(ProvisionSpec::default()),
        base: Some(BaseImage {
            name: "bare".into(),
            id: 1,
            rootfs,
            work_seed: Some(work_seed),
        }),
        ..Default::default()
    };
    let built = build_debian_image(
        &spec,
        &out,
        &common::cache_dir().join("image-build"),
        &log,
        &mut |stage, message| eprintln!("[{stage}] {message}"),
    );
    let built = built.unwrap_or_else(|error| {
        panic!(
            "{error:?}\n{}",
            fs_err::read_to_string(&log).unwrap_or_default()
        )
    });
    eprintln!(
        "built in {:?}: tree {} MiB",
        built.elapsed,
        built.tree_bytes >> 20
    );
    let record = built.provision.unwrap();
    let base = record.base.unwrap();
    assert_eq!(
        (base.name.as_str(), base.suite.as_str()),
        ("bare", "bookworm")
    );
    assert!(
        record
            .installed_debian
            .iter()
            .any(|p| p.starts_with("tmux=")),
        "{:?}",
        record.installed_debian
    );
    let stat = |path: &str| {
        let out = std::process::Command::new("debugfs")
            .args(["-R", &format!("stat {path}")])
            .arg(&built.rootfs)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    };
    for tool in ["opencode", "claude", "pi", "mise"] {
        let found = stat(&format!("/usr/local/bin/{tool}"));
        assert!(!found.contains("File not found"), "{tool}: {found}");
    }
    let su = stat("/usr/bin/su");
    assert!(su.contains("Mode:  04755"), "su lost its setuid bit: {su}");
}
