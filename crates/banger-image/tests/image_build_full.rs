//! A build that runs out of space (issue 19, "Disk full"): the output
//! directory on a 48 MiB tmpfs, far too small for a Debian tree. The build
//! must fail with an error that says the disk is full and names where, and
//! leave nothing in the output directory (no staging tree, no half image).
//! Needs root (the tmpfs, mmdebstrap's root mode) and the Debian mirror or
//! a primed package cache; about 20 s.

#![allow(clippy::unwrap_used)]

mod common;

use banger_image::image_build::{ImageBuildError, ImageBuildSpec, build_debian_image};
use banger_testkit::tmpfs::SmallTmpfs;

#[test]
fn a_build_out_of_space_says_so_and_leaves_nothing() {
    if !common::is_root() {
        banger_testkit::skip_or_fail("needs root (tmpfs mount, mmdebstrap root mode)");
        return;
    }
    if !common::have("mmdebstrap") {
        banger_testkit::skip_or_fail("mmdebstrap not installed");
        return;
    }
    let Some(small) = SmallTmpfs::mount("48m") else {
        banger_testkit::skip_or_fail("cannot mount a tmpfs");
        return;
    };
    let out = small.path().join("image");
    let scratch = tempfile::tempdir().unwrap();
    let log = scratch.path().join("build.log");
    let error = build_debian_image(
        &ImageBuildSpec::default(),
        &out,
        &common::cache_dir(),
        &log,
        &mut |stage, msg| eprintln!("  build: [{stage}] {msg}"),
    )
    .expect_err("a Debian tree does not fit in 48 MiB");
    let text = format!("{error}");
    eprintln!("error: {text}");
    assert!(
        matches!(&error, ImageBuildError::NoSpace { out_dir, .. } if *out_dir == out),
        "a typed out-of-space error naming the output dir: {error:?}"
    );
    assert!(
        text.contains("ran out of disk space")
            && text.contains(&out.display().to_string())
            && text.contains("No space left on device"),
        "the error says the disk is full and where: {text}"
    );
    let left: Vec<_> = fs_err::read_dir(&out)
        .map(|entries| entries.map(|entry| entry.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(
        left.is_empty(),
        "nothing is left in the output dir: {left:?}"
    );
}
