//! The unprivileged path: as a non-root user with a subuid/subgid range,
//! `build_debian_image` runs mmdebstrap in unshare mode and still produces
//! images with root-owned files (the tree's ids are only right inside the user
//! namespace, so `mkfs.ext4 -d` runs there through `mmdebstrap --unshare-helper`);
//! then a `--from-image` build on that image (its files dumped by a non-root
//! user, owners taken from the image's listings) keeps them too.
//!
//! Ignored by default, and under `--ignored` run as root it fails under CI and
//! reports itself SKIPPED elsewhere: it needs a non-root user with
//! entries in /etc/subuid and /etc/subgid, and runs two mmdebstrap builds
//! (~2-4 min).
//! Run it as such a user, e.g.
//! `runuser -u builder -- env HOME=/home/builder <test binary> --ignored`.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::{Command, Stdio};

use banger_image::image_build::base::BaseImage;
use banger_image::image_build::{BuildMode, BuiltImage, ImageBuildSpec, build_debian_image};

fn debugfs(image: &std::path::Path, request: &str) -> String {
    let out = Command::new("/usr/sbin/debugfs")
        .arg("-R")
        .arg(request)
        .arg(image)
        .stderr(Stdio::null())
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
#[ignore = "needs a non-root user with a subuid range and a Debian mirror (~2-4 min)"]
fn unprivileged_build_has_root_owned_files() {
    if common::is_root() {
        banger_testkit::skip_or_fail("run this test as a non-root user");
        return;
    }
    assert_eq!(BuildMode::detect(), BuildMode::Unshare);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let log = dir.path().join("build.log");
    let built = build_debian_image(
        &ImageBuildSpec::default(),
        &out,
        &common::cache_dir(),
        &log,
        &mut |stage, msg| eprintln!("  [{stage}] {msg}"),
    );
    let built = match built {
        Ok(b) => b,
        Err(e) => {
            let text = fs_err::read_to_string(&log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            panic!(
                "{e}\n{}",
                lines[lines.len().saturating_sub(30)..].join("\n")
            );
        }
    };
    eprintln!("unshare build took {:?}", built.elapsed);
    assert_eq!(built.mode, BuildMode::Unshare);
    let mut names: Vec<String> = fs_err::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["rootfs.ext4", "work-seed.ext4"]);

    assert_root_owned(&built);

    // On top of it, as the same user: the base's files are dumped with the
    // user's own ids, and the tar takes the image's.
    let from = dir.path().join("from-image");
    let spec = ImageBuildSpec {
        base: Some(BaseImage {
            name: "unshare-built".into(),
            id: 1,
            rootfs: built.rootfs.clone(),
            work_seed: Some(built.work_seed.clone()),
        }),
        ..ImageBuildSpec::default()
    };
    let on_base = build_debian_image(
        &spec,
        &from,
        &common::cache_dir(),
        &log,
        &mut |stage, msg| eprintln!("  [{stage}] {msg}"),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", fs_err::read_to_string(&log).unwrap_or_default()));
    eprintln!("unshare --from-image build took {:?}", on_base.elapsed);
    assert_root_owned(&on_base);
}

/// Root owns the image's files, with their special bits and groups.
fn assert_root_owned(built: &BuiltImage) {
    let shadow = debugfs(&built.rootfs, "stat /etc/shadow");
    assert!(
        shadow.contains("User:     0") && shadow.contains("Group:    42"),
        "{shadow}"
    );
    let sudo = debugfs(&built.rootfs, "stat /usr/bin/sudo");
    assert!(
        sudo.contains("Mode:  04755") && sudo.contains("User:     0"),
        "{sudo}"
    );
    let root = debugfs(&built.rootfs, "stat /root");
    assert!(
        root.contains("Mode:  0700") && root.contains("User:     0"),
        "{root}"
    );
    assert!(!debugfs(&built.rootfs, "ls /etc/ssh").contains("ssh_host_"));
    assert!(!debugfs(&built.rootfs, "ls /root").contains(".bashrc"));
    let bashrc = debugfs(&built.work_seed, "stat /.bashrc");
    assert!(bashrc.contains("User:     0"), "{bashrc}");
    let ssh = debugfs(&built.work_seed, "stat /.ssh");
    assert!(
        ssh.contains("Mode:  0700") && ssh.contains("User:     0"),
        "{ssh}"
    );
}
