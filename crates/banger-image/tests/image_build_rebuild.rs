//! A second build of the default image with a primed `.deb` cache downloads
//! nothing, and a rootfs size too small for the tree fails after mmdebstrap
//! with an error naming both sizes and leaves `out_dir` empty.
//!
//! Ignored by default because it runs a whole mmdebstrap (~70 s warm; needs
//! root and a Debian mirror for the package lists). Run with
//! `cargo test -p banger-image --test image_build_rebuild -- --ignored`.
//! It primes the cache itself when it is empty, then builds again.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::Instant;

use banger_image::image_build::{ImageBuildError, ImageBuildSpec, build_debian_image};

fn build(cache: &Path, size: Option<u64>) -> (Result<(), ImageBuildError>, Vec<String>, bool) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let spec = ImageBuildSpec {
        rootfs_size_bytes: size,
        ..Default::default()
    };
    let mut messages = Vec::new();
    let start = Instant::now();
    let r = build_debian_image(&spec, &out, cache, &dir.path().join("log"), &mut |s, m| {
        messages.push(format!("[{s}] {m}"));
    });
    eprintln!(
        "build took {:?}: {:?}",
        start.elapsed(),
        r.as_ref().map(|b| b.rootfs_bytes)
    );
    let empty = !out.exists() || fs_err::read_dir(&out).unwrap().next().is_none();
    (r.map(|_| ()), messages, empty)
}

#[test]
#[ignore = "runs a full mmdebstrap (~70 s); needs root and a Debian mirror"]
fn warm_rebuild_downloads_nothing_and_small_size_is_refused() {
    if !common::is_root() || !common::have("mmdebstrap") {
        banger_testkit::skip_or_fail("needs root and mmdebstrap");
        return;
    }
    let cache = common::cache_dir();
    let archives = cache.join("apt-archives/bookworm");
    let primed = archives.is_dir()
        && fs_err::read_dir(&archives)
            .unwrap()
            .any(|e| e.unwrap().path().extension().is_some_and(|x| x == "deb"));
    if !primed {
        let (r, _, _) = build(&cache, None);
        r.unwrap();
    }
    let (r, messages, empty) = build(&cache, Some(64 << 20));
    for m in &messages {
        eprintln!("  {m}");
    }
    match r {
        Err(ImageBuildError::RootfsTooSmall { requested, needed }) => {
            assert_eq!(requested, 64 << 20);
            assert!(needed > 300 << 20, "{needed}");
        }
        other => panic!("expected RootfsTooSmall, got {other:?}"),
    }
    assert!(empty, "out_dir not cleaned after a failed build");
    let downloads: Vec<&String> = messages
        .iter()
        .filter(|m| m.contains("to download"))
        .collect();
    assert_eq!(downloads.len(), 2, "{messages:?}");
    for m in downloads {
        assert!(m.contains("0 B to download"), "downloaded again: {m}");
    }
}
