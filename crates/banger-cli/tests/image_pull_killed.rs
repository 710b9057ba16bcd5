//! A killed pull leaves nothing (issue 14): `banger image pull` of a large
//! OCI layout, the daemon SIGKILLed while the image is being written. The
//! client fails clearly; the next daemon removes the partial image and the
//! blob cache's temporary files at start; no image is listed; the same pull
//! then succeeds. No guest is booted.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use banger_testkit::TestEnv;
use banger_testkit::cli::{json, ok};
use common::oci::{oci_layout, tar_layer};

/// Entries of `dir` whose name starts with `prefix` (none if `dir` is absent).
fn entries(dir: &Path, prefix: &str) -> Vec<String> {
    let Ok(read) = fs_err::read_dir(dir) else {
        return Vec::new();
    };
    read.flatten()
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter(|name| name.starts_with(prefix))
        .collect()
}

#[test]
fn a_pull_killed_with_the_daemon_leaves_nothing_and_can_be_retried() {
    let env = TestEnv::new().with_shared_cache();
    ok(env.banger().args(["kernel", "pull", "debian-cloud-amd64"]));

    // One uncompressed layer of 384 MiB of random data: hashing, unpacking
    // and writing it into ext4 takes seconds, long enough to be killed in.
    let tree = env.root().join("tree");
    fs_err::create_dir_all(tree.join("etc")).expect("mkdir");
    fs_err::create_dir_all(tree.join("data")).expect("mkdir");
    fs_err::write(tree.join("etc/os-release"), "ID=killed\n").expect("os-release");
    let status = Command::new("head")
        .args(["-c", "384M", "/dev/urandom"])
        .stdout(
            fs_err::File::create(tree.join("data/blob"))
                .expect("create")
                .into_parts()
                .0,
        )
        .status()
        .expect("head runs");
    assert!(status.success());
    let layer = env.root().join("layer.tar");
    tar_layer(&tree, &layer);
    fs_err::remove_dir_all(&tree).expect("remove tree");
    let layout = env.root().join("layout");
    oci_layout(&layout, "v1", &layer);
    fs_err::remove_file(&layer).expect("remove layer");
    let reference = format!("oci:{}:v1", layout.display());

    let images = env.paths().state_dir.join("images");
    let mut pull = env
        .banger()
        .args(["image", "pull", &reference, "--name", "big"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("banger image pull starts");
    // Wait for the partial image, then kill the daemon writing it.
    let deadline = Instant::now() + Duration::from_secs(120);
    while entries(&images, ".partial-big-").is_empty() {
        assert!(
            Instant::now() < deadline,
            "no partial image appeared in {}",
            images.display()
        );
        assert!(
            pull.try_wait().expect("try_wait").is_none(),
            "the pull ended before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    let daemons = env.daemon_pids();
    assert_eq!(daemons.len(), 1, "one daemon: {daemons:?}");
    for pid in &daemons {
        rustix::process::kill_process(
            rustix::process::Pid::from_raw(*pid).expect("pid"),
            rustix::process::Signal::KILL,
        )
        .expect("SIGKILL the daemon");
    }
    let output = pull.wait_with_output().expect("the pull client ends");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "the pull succeeded: {stderr}");
    assert!(stderr.contains("error"), "no error shown: {stderr}");
    assert!(env.wait_for_no_daemon(Duration::from_secs(10)));
    // What the killed daemon left: its partial image (the debris to clean).
    assert_eq!(entries(&images, ".partial-big-").len(), 1);

    // The next daemon (started by the CLI) removes it at start.
    let listed = json(&ok(env.banger().args(["image", "list", "--json"])));
    assert!(
        listed
            .as_array()
            .expect("list")
            .iter()
            .all(|image| image["name"] != "big"),
        "{listed}"
    );
    assert!(
        entries(&images, ".partial-").is_empty(),
        "{:?} {:?}",
        entries(&images, ""),
        daemons
            .iter()
            .map(|pid| fs_err::read_to_string(format!("/proc/{pid}/stat")).ok())
            .collect::<Vec<_>>()
    );
    assert!(!images.join("big").exists());
    let temps = env.paths().cache_dir.join("oci/tmp");
    assert!(entries(&temps, "").is_empty(), "{:?}", entries(&temps, ""));

    // The same pull now works.
    let image = json(&ok(env
        .banger()
        .args(["image", "pull", &reference, "--name", "big", "--json"])));
    assert_eq!(image["name"], "big", "{image}");
    assert_eq!(entries(&images, ".partial-"), Vec::<String>::new());
    ok(env.banger().args(["daemon", "stop"]));
}
