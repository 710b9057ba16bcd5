//! Unit tests: the manifest and lockfile rules, fetching (cache, offline
//! rebuild, unreachable registry, bad pin, integrity mismatch), the payload
//! tar and the managed blocks of the hook script.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;

use sha2::{Digest, Sha512};

use super::*;

#[test]
fn the_embedded_manifest_is_valid_and_pins_every_tool() {
    let plan = Plan::load(false).unwrap();
    let names: Vec<&str> = plan.tools.iter().map(|t| t.name.as_str()).collect();
    for tool in ["opencode", "claude", "mise", "node", "npm", "pi"] {
        assert!(names.contains(&tool), "{tool} missing from {names:?}");
    }
    assert!(!plan.debian.contains(&"docker.io".to_owned()));
    let docker = Plan::load(true).unwrap();
    assert!(docker.debian.contains(&"docker.io".to_owned()));
    assert!(docker.debian.contains(&"docker-compose".to_owned()));
    for wanted in [
        "tmux",
        "tmux-plugin-manager",
        "build-essential",
        "ripgrep",
        "jq",
    ] {
        assert!(plan.debian.contains(&wanted.to_owned()), "{wanted}");
    }
    // pi comes with its locked dependencies, only the linux x64 glibc ones.
    let pi = plan.tools.iter().find(|t| t.name == "pi").unwrap();
    assert!(pi.packages.len() > 50, "{}", pi.packages.len());
    assert!(
        pi.packages
            .iter()
            .any(|p| p.name == "@mariozechner/clipboard-linux-x64-gnu")
    );
    assert!(
        !pi.packages
            .iter()
            .any(|p| p.name.contains("darwin") || p.name.ends_with("-musl"))
    );
    let opencode = plan.tools.iter().find(|t| t.name == "opencode").unwrap();
    assert_eq!(
        opencode.packages[1].path,
        "node_modules/opencode-linux-x64-baseline"
    );
}

#[test]
fn integrity_round_trips_and_refuses_weak_or_broken_hashes() {
    let text = "sha512-58P1ffLRXiAY4QeoABqUjqf6DEzm1ihpovvn9Ad+oOLbLiwK/rf88wruT9IATJ7AtNjmi8iA7pC8tN4o5y799Q==";
    assert_eq!(Integrity::parse(text).unwrap().to_string(), text);
    assert!(Integrity::parse("sha1-abc=").is_none());
    assert!(Integrity::parse("sha512-AAAA").is_none());
    assert!(Integrity::parse("sha512-not base64!").is_none());
}

const ONE_TOOL: &str = r#"
schema = 1
[debian]
packages = ["tmux"]
docker = ["docker.io"]
[[tool]]
name = "hello"
version = "1.0.0"
bin = { hello = "node_modules/hello/bin/hello" }
packages = [{ name = "hello", version = "1.0.0", integrity = "INTEGRITY" }]
"#;

fn manifest(integrity: &str) -> String {
    ONE_TOOL.replace("INTEGRITY", integrity)
}

#[test]
fn bad_manifests_are_refused_naming_the_value() {
    let good = Integrity([7; 64]).to_string();
    assert!(Plan::parse(&manifest(&good), false).is_ok());
    let cases = [
        (
            manifest(&good).replace(
                "version = \"1.0.0\", integrity",
                "version = \"^1.0.0\", integrity",
            ),
            "^1.0.0",
        ),
        (manifest("sha1-xyz"), "sha1-xyz"),
        (
            manifest(&good).replace(
                "name = \"hello\", version",
                "name = \"Hello World\", version",
            ),
            "Hello World",
        ),
        (
            manifest(&good).replace("node_modules/hello/bin/hello", "../../etc/passwd"),
            "../../etc/passwd",
        ),
        (
            manifest(&good).replace("[\"tmux\"]", "[\"-o evil\"]"),
            "-o evil",
        ),
        (
            manifest(&good).replace("schema = 1", "schema = 9"),
            "schema 9",
        ),
        (
            manifest(&good).replace(
                "packages = [{",
                "lockfile = \"npm/other.json\"\npackages = [{",
            ),
            "npm/other.json",
        ),
    ];
    for (text, named) in cases {
        let error = Plan::parse(&text, false).unwrap_err().to_string();
        assert!(error.contains(named), "{named}: {error}");
    }
}

#[test]
fn lockfile_pins_must_agree_with_the_manifest() {
    let lock = super::EMBEDDED[0].1;
    let locked = locked_packages("pi", "npm/pi.package-lock.json", lock).unwrap();
    let pi = locked
        .iter()
        .find(|p| p.path == "node_modules/@mariozechner/pi-coding-agent")
        .unwrap();
    let text = MANIFEST.replace(&pi.integrity.to_string(), &Integrity([1; 64]).to_string());
    let error = Plan::parse(&text, false).unwrap_err();
    assert!(
        matches!(error, ProvisionError::PinMismatch { .. }),
        "{error}"
    );
    assert!(
        error.to_string().contains("@mariozechner/pi-coding-agent"),
        "{error}"
    );
}

/// A gzipped npm-style tarball (`package/...`) with `files`.
fn tgz(files: &[(&str, u32, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, mode, data) in files {
        let mut header = tar::Header::new_gnu();
        header.set_mode(*mode);
        header.set_size(data.len() as u64);
        header.set_entry_type(tar::EntryType::Regular);
        builder.append_data(&mut header, path, *data).unwrap();
    }
    let tar = builder.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    gz.finish().unwrap()
}

fn integrity_of(bytes: &[u8]) -> Integrity {
    Integrity(Sha512::digest(bytes).into())
}

/// A `file://` registry holding `hello-1.0.0.tgz` with `bytes`.
fn file_registry(dir: &Path, bytes: &[u8]) -> String {
    let pkg = dir.join("registry/hello/-");
    fs_err::create_dir_all(&pkg).unwrap();
    fs_err::write(pkg.join("hello-1.0.0.tgz"), bytes).unwrap();
    format!("file://{}", dir.join("registry").display())
}

fn hello() -> Vec<u8> {
    tgz(&[
        ("package/package.json", 0o644, b"{}"),
        ("package/bin/hello", 0o644, b"#!/bin/sh\necho hello\n"),
    ])
}

#[test]
fn fetch_verifies_caches_and_rebuilds_offline() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = hello();
    let plan = Plan::parse(&manifest(&integrity_of(&bytes).to_string()), false).unwrap();
    let registry = file_registry(dir.path(), &bytes);
    let cache = dir.path().join("cache");
    let mut log = Vec::new();
    let paths = fetch(&plan, &registry, &cache, &mut |m| log.push(m.to_owned())).unwrap();
    assert_eq!(fs_err::read(&paths[0]).unwrap(), bytes);
    assert!(
        log.last()
            .unwrap()
            .contains("0 from the cache, 1 downloaded"),
        "{log:?}"
    );
    // Offline: the registry is gone, the cache serves.
    fs_err::remove_dir_all(dir.path().join("registry")).unwrap();
    log.clear();
    let again = fetch(&plan, "http://127.0.0.1:1", &cache, &mut |m| {
        log.push(m.to_owned())
    })
    .unwrap();
    assert_eq!(again, paths);
    assert!(
        log.last()
            .unwrap()
            .contains("1 from the cache, 0 downloaded"),
        "{log:?}"
    );
    // A damaged cache entry is not used (and the registry is unreachable now).
    fs_err::write(&paths[0], b"damaged").unwrap();
    let error = fetch(&plan, "http://127.0.0.1:1", &cache, &mut |_| {}).unwrap_err();
    assert!(matches!(error, ProvisionError::Download { .. }), "{error}");
}

#[test]
fn an_unreachable_registry_names_the_package_and_url() {
    let dir = tempfile::tempdir().unwrap();
    let plan = Plan::parse(&manifest(&Integrity([3; 64]).to_string()), false).unwrap();
    let error = fetch(&plan, "http://127.0.0.1:1", dir.path(), &mut |_| {}).unwrap_err();
    let text = error.to_string();
    assert!(text.contains("hello@1.0.0"), "{text}");
    assert!(
        text.contains("http://127.0.0.1:1/hello/-/hello-1.0.0.tgz"),
        "{text}"
    );
    assert_eq!(
        fs_err::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing cached"
    );
    let refused = fetch(&plan, "http://example.com", dir.path(), &mut |_| {}).unwrap_err();
    assert!(
        matches!(refused, ProvisionError::RegistryUrl { .. }),
        "{refused}"
    );
}

#[test]
fn a_mismatching_tarball_is_discarded() {
    let dir = tempfile::tempdir().unwrap();
    let registry = file_registry(dir.path(), &hello());
    let plan = Plan::parse(&manifest(&Integrity([3; 64]).to_string()), false).unwrap();
    let cache = dir.path().join("cache");
    let error = fetch(&plan, &registry, &cache, &mut |_| {}).unwrap_err();
    assert!(
        matches!(error, ProvisionError::IntegrityMismatch { .. }),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .contains("integrity mismatch for hello@1.0.0"),
        "{error}"
    );
    assert_eq!(fs_err::read_dir(&cache).unwrap().count(), 0, "nothing kept");
}

/// Serves one request on loopback with `status` and `body`.
fn serve_once(status: &'static str, body: Vec<u8>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap() > 2 {
            line.clear();
        }
        let mut stream = stream;
        let _ = write!(
            stream,
            "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        );
        let _ = stream.write_all(&body);
    });
    format!("http://{address}")
}

#[test]
fn a_bad_pin_fails_with_the_registry_answer() {
    let dir = tempfile::tempdir().unwrap();
    let registry = serve_once("404 Not Found", b"{\"error\":\"not found\"}".to_vec());
    let plan = Plan::parse(&manifest(&Integrity([3; 64]).to_string()), false).unwrap();
    let error = fetch(&plan, &registry, dir.path(), &mut |_| {}).unwrap_err();
    assert!(matches!(error, ProvisionError::Download { .. }), "{error}");
    let chain = format!("{error}: {}", std::error::Error::source(&error).unwrap());
    assert!(chain.contains("404"), "{chain}");
}

#[test]
fn the_payload_is_root_owned_with_links_and_executable_bins() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = hello();
    let plan = Plan::parse(&manifest(&integrity_of(&bytes).to_string()), false).unwrap();
    let registry = file_registry(dir.path(), &bytes);
    let paths = fetch(&plan, &registry, &dir.path().join("cache"), &mut |_| {}).unwrap();
    let out = dir.path().join("payload.tar");
    stage(&plan, &paths, &plan.record(), &out, &mut |_| {}).unwrap();
    let mut archive = tar::Archive::new(fs_err::File::open(&out).unwrap());
    let mut seen = std::collections::BTreeMap::new();
    for entry in archive.entries().unwrap() {
        let entry = entry.unwrap();
        let header = entry.header();
        assert_eq!((header.uid().unwrap(), header.gid().unwrap()), (0, 0));
        let path = entry.path().unwrap().display().to_string();
        let link = entry.link_name().unwrap().map(|l| l.display().to_string());
        seen.insert(path, (header.mode().unwrap(), link));
    }
    let bin = "usr/local/lib/banger/tools/hello/node_modules/hello/bin/hello";
    assert_eq!(seen[bin].0, 0o755, "bin targets are executable");
    assert_eq!(
        seen["usr/local/lib/banger/tools/hello/node_modules/hello/package.json"].0,
        0o644
    );
    assert_eq!(
        seen["usr/local/bin/hello"].1.as_deref(),
        Some(&*format!("/{bin}"))
    );
    assert!(seen.contains_key("etc/systemd/system/opencode.service"));
    assert!(seen.contains_key("usr/local/share/banger/tmux-banger-persist/banger-persist.tmux"));
    assert!(seen.contains_key("etc/banger/provision.json"));
}

#[test]
fn a_bin_missing_from_the_packages_fails_staging() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = tgz(&[("package/package.json", 0o644, b"{}")]);
    let plan = Plan::parse(&manifest(&integrity_of(&bytes).to_string()), false).unwrap();
    let registry = file_registry(dir.path(), &bytes);
    let paths = fetch(&plan, &registry, &dir.path().join("cache"), &mut |_| {}).unwrap();
    let error = stage(
        &plan,
        &paths,
        &plan.record(),
        &dir.path().join("p.tar"),
        &mut |_| {},
    )
    .unwrap_err();
    assert!(
        matches!(error, ProvisionError::MissingBin { .. }),
        "{error}"
    );
}

#[test]
fn escaping_tarball_entries_are_refused() {
    for bad in ["package/../../etc/passwd", "/etc/passwd"] {
        let error = stage::inside_package_for_test("x@1", bad).unwrap_err();
        assert!(
            matches!(error, ProvisionError::UnsafeEntry { .. }),
            "{bad}: {error}"
        );
    }
    assert_eq!(
        stage::inside_package_for_test("x@1", "package/lib/a.js")
            .unwrap()
            .as_deref(),
        Some("lib/a.js")
    );
}

fn run_hook(tree: &Path) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(PROVISION_SCRIPT)
        .arg("provision.sh")
        .arg(tree)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_hook_keeps_one_managed_block_and_the_users_lines() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path();
    for d in ["etc", "root", "usr/local/bin", "lib/systemd/system"] {
        fs_err::create_dir_all(tree.join(d)).unwrap();
    }
    fs_err::write(tree.join("etc/bash.bashrc"), "# system bashrc\nPS1='$ '\n").unwrap();
    fs_err::write(
        tree.join("root/.tmux.conf"),
        "set -g mouse on\nbind r source-file ~/.tmux.conf\n",
    )
    .unwrap();
    fs_err::write(tree.join("lib/systemd/system/docker.service"), "").unwrap();
    run_hook(tree);
    // The user adds a line after the block; two more builds run.
    let mut conf = fs_err::read_to_string(tree.join("root/.tmux.conf")).unwrap();
    conf.push_str("set -g history-limit 50000\n");
    fs_err::write(tree.join("root/.tmux.conf"), conf).unwrap();
    run_hook(tree);
    run_hook(tree);
    let conf = fs_err::read_to_string(tree.join("root/.tmux.conf")).unwrap();
    assert_eq!(
        conf.matches("banger managed block: rewritten").count(),
        1,
        "{conf}"
    );
    assert_eq!(
        conf.matches("# <<< banger managed block <<<").count(),
        1,
        "{conf}"
    );
    assert_eq!(
        conf.matches("@plugin 'banger/tmux-banger-persist'").count(),
        1,
        "{conf}"
    );
    assert!(
        conf.starts_with("set -g mouse on\nbind r source-file ~/.tmux.conf\n# >>> banger"),
        "{conf}"
    );
    assert!(
        conf.ends_with("<<<\nset -g history-limit 50000\n"),
        "{conf}"
    );
    let bashrc = fs_err::read_to_string(tree.join("etc/bash.bashrc")).unwrap();
    assert_eq!(bashrc.matches("mise activate bash").count(), 1, "{bashrc}");
    assert!(
        bashrc.starts_with("# system bashrc\nPS1='$ '\n"),
        "{bashrc}"
    );
    let plugin = fs_err::read_link(tree.join("root/.tmux/plugins/tmux-banger-persist")).unwrap();
    assert_eq!(
        plugin,
        Path::new("/usr/local/share/banger/tmux-banger-persist")
    );
    let docker =
        fs_err::read_link(tree.join("etc/systemd/system/multi-user.target.wants/docker.service"))
            .unwrap();
    assert_eq!(docker, Path::new("/lib/systemd/system/docker.service"));
}

#[test]
fn the_hook_drops_duplicate_blocks_and_keeps_an_unterminated_one() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path();
    fs_err::create_dir_all(tree.join("etc")).unwrap();
    fs_err::create_dir_all(tree.join("root")).unwrap();
    let begin = "# >>> banger managed block: rewritten by banger image builds; edit outside it >>>";
    let end = "# <<< banger managed block <<<";
    fs_err::write(
        tree.join("root/.tmux.conf"),
        format!("a\n{begin}\nold\n{end}\nb\n{begin}\nold2\n{end}\nc\n{begin}\nmine\n"),
    )
    .unwrap();
    run_hook(tree);
    let conf = fs_err::read_to_string(tree.join("root/.tmux.conf")).unwrap();
    assert_eq!(conf.matches(end).count(), 1, "{conf}");
    assert!(!conf.contains("old"), "{conf}");
    assert!(conf.contains("\nb\nc\n"), "{conf}");
    assert!(conf.ends_with("mine\n"), "{conf}");
}

#[test]
fn a_dangling_tool_link_fails_the_hook() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path();
    fs_err::create_dir_all(tree.join("etc")).unwrap();
    fs_err::create_dir_all(tree.join("usr/local/bin")).unwrap();
    fs_err::os::unix::fs::symlink(
        "/usr/local/lib/banger/tools/x/nope",
        tree.join("usr/local/bin/x"),
    )
    .unwrap();
    let out = Command::new("sh")
        .arg("-c")
        .arg(PROVISION_SCRIPT)
        .arg("provision.sh")
        .arg(tree)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/usr/local/bin/x"));
}

#[test]
fn records_round_trip_through_the_image_directory() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(read_record(dir.path()).unwrap(), None);
    let record = Plan::load(true).unwrap().record();
    write_record(dir.path(), &record).unwrap();
    assert_eq!(read_record(dir.path()).unwrap(), Some(record));
}
