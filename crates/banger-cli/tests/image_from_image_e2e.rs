//! `banger image build --from-image BASE` end to end (issue 15,
//! "Provisioning"): one daemon builds the catalog's bare
//! `debian-bookworm-minimal`, then provisions it as a new image with the
//! pinned tools; `image show --json` records the base; a real guest of the
//! new image (QEMU, in a network namespace the test creates) runs every
//! tool's `--version` in a login shell, and (built with `--docker`) its
//! docker engine answers and compose is there. A busybox image pulled from an OCI
//! layout is refused with an error naming it and what is supported, and
//! leaves no image and no partial directory. The builds run in the host
//! namespace (they need the Debian mirror and the npm registry, or a primed
//! cache); the daemon is then stopped so the VM commands start one inside
//! the namespace.

mod common;

use std::process::Stdio;
use std::time::Instant;

use common::oci::{oci_layout, tar_layer};
use common::vm_suite::{BARE_IMAGE, Suite};

/// Runs banger in the host namespace with the suite's environment.
fn host(suite: &Suite, args: &[&str]) -> std::process::Output {
    let mut command = suite.env.banger();
    command
        .args(args)
        .envs(suite.vars.iter().map(|(key, value)| (key, value)))
        .stdin(Stdio::null());
    command.output().expect("banger runs")
}

fn host_ok(suite: &Suite, args: &[&str]) -> String {
    let output = host(suite, args);
    assert!(
        output.status.success(),
        "banger {args:?} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A minimal OCI layout of the host's static busybox (no os-release).
fn busybox_layout(work: &std::path::Path) -> std::path::PathBuf {
    let tree = work.join("busybox");
    for sub in ["bin", "etc", "root", "tmp"] {
        fs_err::create_dir_all(tree.join(sub)).expect("mkdir");
    }
    fs_err::copy("/bin/busybox", tree.join("bin/busybox")).expect("copy busybox");
    fs_err::os::unix::fs::symlink("busybox", tree.join("bin/sh")).expect("link sh");
    let layer = work.join("busybox.tar");
    tar_layer(&tree, &layer);
    let layout = work.join("layout");
    oci_layout(&layout, "plain", &layer);
    layout
}

#[test]
fn from_image_provisions_a_debian_image_and_refuses_busybox() {
    let mut suite = Suite::bare("fromimg");
    if let Some(agent) = std::env::var_os("BANGER_AGENT_BIN").filter(|p| !p.is_empty()) {
        suite.vars.push(("BANGER_AGENT_BIN".to_owned(), agent));
    }
    let work = tempfile::tempdir().expect("tempdir");

    // The bare base (and the default kernel).
    let started = Instant::now();
    host_ok(&suite, &["image", "build", "--from-catalog", BARE_IMAGE]);
    eprintln!(
        "bare {BARE_IMAGE} built in {:.0} s",
        started.elapsed().as_secs_f64()
    );

    // A busybox image is refused before any work, naming what is supported.
    let layout = busybox_layout(work.path());
    host_ok(
        &suite,
        &[
            "image",
            "pull",
            &format!("oci:{}:plain", layout.display()),
            "--name",
            "busybox-plain",
        ],
    );
    let refused = host(
        &suite,
        &[
            "image",
            "build",
            "--name",
            "bb-prov",
            "--from-image",
            "busybox-plain",
        ],
    );
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success(),
        "busybox was provisioned: {stderr}"
    );
    assert!(
        stderr.contains("image busybox-plain cannot be provisioned")
            && stderr.contains("glibc Debian or Ubuntu"),
        "{stderr}"
    );
    let images = host_ok(&suite, &["image", "list", "--json"]);
    assert!(!images.contains("bb-prov"), "{images}");
    let images_dir = suite.env.paths().state_dir.join("images");
    let leftovers: Vec<_> = fs_err::read_dir(&images_dir)
        .expect("images dir")
        .filter_map(Result::ok)
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(".partial") || name.contains("bb-prov"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // Provision the bare image.
    let started = Instant::now();
    host_ok(
        &suite,
        &[
            "image",
            "build",
            "--name",
            "from-bare",
            "--from-image",
            BARE_IMAGE,
            // Docker too: the engine and compose from Debian, enabled.
            "--docker",
        ],
    );
    eprintln!(
        "from-bare provisioned in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    let shown: serde_json::Value =
        serde_json::from_str(&host_ok(&suite, &["image", "show", "from-bare", "--json"]))
            .expect("image JSON");
    let provision = &shown["provision"];
    assert_eq!(provision["base"]["name"], BARE_IMAGE, "{shown}");
    assert_eq!(provision["base"]["suite"], "bookworm", "{shown}");
    let tools: Vec<&str> = provision["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(|tool| tool["name"].as_str())
        .collect();
    for tool in ["opencode", "claude", "pi", "mise"] {
        assert!(tools.contains(&tool), "{tool} not recorded: {shown}");
    }
    let text = host_ok(&suite, &["image", "show", "from-bare"]);
    assert!(text.contains("built from"), "{text}");
    host_ok(&suite, &["daemon", "stop"]);

    // A real guest of the new image has every tool.
    let started = Instant::now();
    let versions = suite.ok(&[
        "vm",
        "run",
        "--name",
        "fb",
        "--image",
        "from-bare",
        "--",
        "bash",
        "-lc",
        // pi prints its version on stderr. dockerd is enabled: wait for it
        // (a TCG boot starts it late), then the server must answer.
        "opencode --version && claude --version && pi --version 2>&1 && mise --version \
         && for i in $(seq 120); do docker info >/dev/null 2>&1 && break; sleep 1; done \
         && docker version --format 'docker-server {{.Server.Version}}' \
         && docker-compose version --short && systemctl is-enabled docker containerd",
    ]);
    eprintln!(
        "vm run took {:.0} s: {versions}",
        started.elapsed().as_secs_f64()
    );
    assert!(versions.contains("docker-server 20.10."), "{versions}");
    assert!(versions.contains("enabled\nenabled"), "{versions}");
    for tool in provision["tools"].as_array().expect("tools") {
        let (name, version) = (tool["name"].as_str(), tool["version"].as_str());
        if matches!(name, Some("opencode" | "claude" | "pi" | "mise")) {
            let version = version.expect("version");
            assert!(versions.contains(version), "{name:?} {version}: {versions}");
        }
    }
}
