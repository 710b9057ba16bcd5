//! Pulls from a real registry on loopback: Debian's `docker-registry`
//! (the CNCF distribution registry) started on 127.0.0.1:<free port> with
//! htpasswd basic auth, or with bearer-token auth against the test's own
//! token server (`token_server/`); images written by the test's OCI
//! writer and pushed with `skopeo copy` (a multi-arch index: amd64 +
//! arm64). Checks the flattened ext4 with debugfs, credentials from a
//! Docker config, and that a second image sharing layers downloads only the
//! new one (the registry's access log counts blob GETs). No traffic leaves
//! loopback.

#![allow(clippy::unwrap_used, missing_docs)]

mod support;
mod token_server;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use banger_oci::cache::BlobCache;
use banger_oci::{ImportError, ImportOptions, ImportedImage, Limits, Source, import};
use support::{Entry, cat, gzip, ls, oci_layout, stat, tar, zstd};

const USER: &str = "alice";
const PASSWORD: &str = "s3cret-pw";

struct Registry {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tool(name: &str) -> Option<PathBuf> {
    let path = banger_oci::ext4::find_program(name);
    path.is_file().then_some(path)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts the registry with basic auth; None (after skip_or_fail) when a tool is missing.
fn start_registry(dir: &Path) -> Option<Registry> {
    let Some(htpasswd) = tool("htpasswd") else {
        banger_testkit::skip_or_fail("htpasswd is missing (apt-get install apache2-utils)");
        return None;
    };
    let output = Command::new(htpasswd)
        .args(["-Bbn", USER, PASSWORD])
        .output()
        .unwrap();
    assert!(output.status.success());
    fs_err::write(dir.join("htpasswd"), &output.stdout).unwrap();
    let auth = format!(
        "  htpasswd:\n    realm: banger-test\n    path: {}\n",
        dir.join("htpasswd").display()
    );
    start_registry_with(dir, &auth)
}

/// Starts the registry with `auth` (the YAML under `auth:`); None (after
/// skip_or_fail) when it is not installed.
fn start_registry_with(dir: &Path, auth: &str) -> Option<Registry> {
    let Some(registry) = tool("docker-registry") else {
        banger_testkit::skip_or_fail(
            "docker-registry is missing (apt-get install docker-registry)",
        );
        return None;
    };
    let port = free_port();
    let config = format!(
        "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\nauth:\n{auth}",
        dir.join("data").display(),
    );
    fs_err::write(dir.join("config.yml"), config).unwrap();
    let log = dir.join("registry.log");
    // The access log goes to stdout, the rest to stderr: both into one file.
    let file = fs_err::File::create(&log).unwrap().into_parts().0;
    let child = Command::new(registry)
        .arg("serve")
        .arg(dir.join("config.yml"))
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap();
    let registry = Registry { child, port, log };
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the registry did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(registry)
}

fn push(layout: &Path, tag: &str, port: u16, repository: &str) {
    let Some(skopeo) = tool("skopeo") else {
        panic!("skopeo is missing");
    };
    let output = Command::new(skopeo)
        .args([
            "copy",
            "--all",
            "--quiet",
            "--dest-tls-verify=false",
            "--dest-creds",
        ])
        .arg(format!("{USER}:{PASSWORD}"))
        .arg(format!("oci:{}:{tag}", layout.display()))
        .arg(format!("docker://127.0.0.1:{port}/{repository}:{tag}"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "skopeo: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn pull(
    root: &Path,
    cache: &BlobCache,
    reference: &str,
    config: Option<&Path>,
) -> Result<ImportedImage, ImportError> {
    let work = root.join("work");
    let out = root.join("out");
    fs_err::create_dir_all(&work).unwrap();
    fs_err::create_dir_all(&out).unwrap();
    let source = Source::parse(reference).unwrap();
    import(
        &ImportOptions {
            source: &source,
            cache,
            work_dir: &work,
            out_dir: &out,
            docker_config: config,
            insecure_registries: &[],
            limits: Limits::default(),
            work_seed_bytes: 64 << 20,
        },
        &mut |_| {},
    )
}

/// A Docker config `dir/name` with USER and `password` for the registry
/// on `port` (the key is the registry as written in references).
fn docker_config(dir: &Path, name: &str, port: u16, password: &str) -> PathBuf {
    use base64::Engine as _;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{password}"));
    let path = dir.join(name);
    fs_err::write(
        &path,
        format!(r#"{{"auths":{{"127.0.0.1:{port}":{{"auth":"{auth}"}}}}}}"#),
    )
    .unwrap();
    path
}

/// Successful blob GETs from `repository` in the registry's access log.
fn blob_gets(log: &Path, repository: &str) -> usize {
    let needle = format!("\"GET /v2/{repository}/blobs/sha256:");
    fs_err::read_to_string(log)
        .unwrap()
        .lines()
        .filter(|line| line.contains(&needle) && line.contains(" HTTP/1.1\" 200 "))
        .count()
}

#[test]
fn pulls_a_multi_arch_image_with_basic_auth_and_reuses_cached_layers() {
    if tool("skopeo").is_none() || tool("debugfs").is_none() {
        banger_testkit::skip_or_fail(
            "skopeo or e2fsprogs is missing (apt-get install skopeo e2fsprogs)",
        );
        return;
    }
    let dir = support::tempdir();
    let Some(registry) = start_registry(dir.path()) else {
        return;
    };
    let port = registry.port;
    let base = gzip(&tar(&[
        Entry::dir("etc", 0o755),
        Entry::file("etc/os-release", b"ID=regtest\n", 0o644),
        Entry::file("usr/bin/su", b"#!su\n", 0o4755),
        Entry::hardlink("usr/bin/su2", "usr/bin/su"),
        Entry::symlink("bin", "usr/bin"),
        Entry::dir("home/dev", 0o700).owner(1000, 1000),
        Entry::file("home/dev/f", b"f\n", 0o640).owner(1000, 1000),
        Entry::file("opt/lower", b"lower\n", 0o644),
        Entry::file("var/gone", b"gone\n", 0o644),
        Entry::chardev("dev/zero", 1, 5, 0o666),
        Entry::dir("root", 0o700),
    ]));
    let changes = zstd(&tar(&[
        Entry::whiteout("var", "gone"),
        Entry::opaque("opt"),
        Entry::file("opt/upper", b"upper\n", 0o600),
    ]));
    let top = tar(&[Entry::file("srv/one", b"1\n", 0o644)]);
    let layout = dir.path().join("layout");
    oci_layout(&layout, "v1", &[base.clone(), changes.clone(), top], true);
    push(&layout, "v1", port, "test/img");

    // Credentials come from a Docker config; the key is the registry as written.
    let good = docker_config(dir.path(), "good.json", port, PASSWORD);
    let bad = docker_config(dir.path(), "bad.json", port, "wrong");

    let cache = BlobCache::new(dir.path().join("cache"));
    let reference = format!("127.0.0.1:{port}/test/img:v1");
    let error = pull(&dir.path().join("anon"), &cache, &reference, None).unwrap_err();
    assert!(
        error.to_string().contains("requires authentication"),
        "{error}"
    );
    let error = pull(&dir.path().join("bad"), &cache, &reference, Some(&bad)).unwrap_err();
    assert!(error.to_string().contains("refused"), "{error}");

    let started = Instant::now();
    let image = pull(&dir.path().join("one"), &cache, &reference, Some(&good)).unwrap();
    eprintln!("first pull: {:?}", started.elapsed());
    assert_eq!((image.downloaded_layers, image.cached_layers), (3, 0));
    let rootfs = &image.rootfs;
    assert_eq!(cat(rootfs, "/etc/os-release"), "ID=regtest\n");
    assert_eq!(
        stat(rootfs, "/usr/bin/su").unwrap(),
        ("04755".into(), 0, 0, 2)
    );
    assert_eq!(
        stat(rootfs, "/home/dev").unwrap(),
        ("0700".into(), 1000, 1000, 2)
    );
    assert_eq!(
        stat(rootfs, "/home/dev/f").unwrap(),
        ("0640".into(), 1000, 1000, 1)
    );
    assert_eq!(ls(rootfs, "/opt"), ["upper"]);
    assert!(ls(rootfs, "/var").is_empty());
    assert!(ls(rootfs, "/").iter().all(|name| name != "arm64-only"));
    assert!(support::debugfs(rootfs, "stat /dev/zero").contains("character special"));
    assert_eq!(image.config.user.as_deref(), Some("1000:1000"));

    // A second image with the same two lower layers and a new top.
    let top2 = tar(&[Entry::file("srv/two", b"2\n", 0o644)]);
    let layout2 = dir.path().join("layout2");
    oci_layout(
        &layout2,
        "v2",
        &[base.clone(), changes.clone(), top2.clone()],
        false,
    );
    push(&layout2, "v2", port, "test/img2");
    let image2 = pull(
        &dir.path().join("two"),
        &cache,
        &format!("127.0.0.1:{port}/test/img2:v2"),
        Some(&good),
    )
    .unwrap();
    assert_eq!((image2.downloaded_layers, image2.cached_layers), (1, 2));
    assert_eq!(cat(&image2.rootfs, "/srv/two"), "2\n");
    // The registry served each shared layer once and the new one once.
    // (skopeo may re-encode layers on push, so blobs are counted, not named:
    // the config and three layers, then the config and the new layer.)
    assert_eq!(blob_gets(&registry.log, "test/img"), 4);
    assert_eq!(blob_gets(&registry.log, "test/img2"), 2);
    // The cache holds verified blobs only, and no temporary files.
    let cached = fs_err::read_dir(dir.path().join("cache/blobs/sha256"))
        .unwrap()
        .count();
    assert_eq!(cached, 4);
    let temps = fs_err::read_dir(dir.path().join("cache/tmp"))
        .unwrap()
        .count();
    assert_eq!(temps, 0);
}

#[test]
fn pulls_with_a_bearer_token_from_the_registry_token_server() {
    if tool("skopeo").is_none() || tool("debugfs").is_none() || tool("openssl").is_none() {
        banger_testkit::skip_or_fail(
            "skopeo, e2fsprogs or openssl is missing (apt-get install skopeo e2fsprogs openssl)",
        );
        return;
    }
    let dir = support::tempdir();
    let tokens = token_server::start(&dir.path().join("token"), USER, PASSWORD, &["test/tok"]);
    let Some(registry) = start_registry_with(dir.path(), &tokens.registry_auth()) else {
        return;
    };
    let port = registry.port;
    let layout = dir.path().join("layout");
    let layer = gzip(&tar(&[
        Entry::dir("etc", 0o755),
        Entry::file("etc/os-release", b"ID=tokentest\n", 0o644),
        Entry::file("etc/shadow", b"root:*:1::::::\n", 0o640).owner(0, 42),
        Entry::dir("root", 0o700),
    ]));
    oci_layout(&layout, "v1", &[layer], true);
    // skopeo takes the same token flow to push.
    push(&layout, "v1", port, "test/tok");
    let pushed = tokens.granted();
    assert!(pushed > 0, "skopeo pushed without a token");

    let config = docker_config(dir.path(), "config.json", port, PASSWORD);
    let wrong = docker_config(dir.path(), "wrong.json", port, "wrong");

    let cache = BlobCache::new(dir.path().join("cache"));
    let reference = format!("127.0.0.1:{port}/test/tok:v1");
    // Without credentials the token server refuses: authentication required.
    let error = pull(&dir.path().join("anon"), &cache, &reference, None).unwrap_err();
    assert!(
        error.to_string().contains("requires authentication"),
        "{error}"
    );
    let error = pull(&dir.path().join("wrong"), &cache, &reference, Some(&wrong)).unwrap_err();
    assert!(error.to_string().contains("refused"), "{error}");
    let refused = tokens.refused();
    assert!(refused >= 2, "the token server refused {refused} requests");

    let image = pull(&dir.path().join("ok"), &cache, &reference, Some(&config)).unwrap();
    assert!(tokens.granted() > pushed, "the pull took no token");
    assert_eq!(cat(&image.rootfs, "/etc/os-release"), "ID=tokentest\n");
    assert_eq!(
        stat(&image.rootfs, "/etc/shadow").unwrap(),
        ("0640".into(), 0, 42, 1)
    );
    // Every registry request after the challenge carried the token: the
    // manifest and blob GETs succeeded.
    assert_eq!(blob_gets(&registry.log, "test/tok"), 2);
}
