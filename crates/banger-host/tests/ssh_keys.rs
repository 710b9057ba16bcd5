//! Tests for the SSH user key and host keys, checked against the real
//! `ssh-keygen` (openssh-client).

use fs_err as fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use banger_host::ssh::{SshKeyError, ensure_user_key, generate_host_key, public_key_path};

fn mode(path: &Path) -> u32 {
    fs::metadata(path).expect("metadata").mode() & 0o7777
}

/// `ssh-keygen -l -f path`, returning its stdout; panics if it refuses.
fn keygen_fingerprint(path: &Path) -> String {
    let output = Command::new("ssh-keygen")
        .arg("-l")
        .arg("-E")
        .arg("sha256")
        .arg("-f")
        .arg(path)
        .output()
        .expect("run ssh-keygen");
    assert!(
        output.status.success(),
        "ssh-keygen -l -f {} failed: {}",
        path.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn generates_then_loads_the_same_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key_path = dir.path().join("state/ssh/id_ed25519");
    let created = ensure_user_key(&key_path).expect("create");
    assert_eq!(created.private_key, key_path);
    assert!(created.public_key_line.starts_with("ssh-ed25519 "));
    assert!(!created.public_key_line.contains('\n'));

    let pub_path = public_key_path(&key_path);
    assert_eq!(mode(&key_path), 0o600);
    assert_eq!(mode(&pub_path), 0o644);
    assert_eq!(mode(&dir.path().join("state/ssh")), 0o700);
    assert_eq!(mode(&dir.path().join("state")), 0o700);
    assert_eq!(
        fs::read_to_string(&pub_path).expect("read pub"),
        format!("{}\n", created.public_key_line)
    );
    // No temp files left behind.
    let names: Vec<_> = fs::read_dir(dir.path().join("state/ssh"))
        .expect("read dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");

    // ssh-keygen accepts both halves, and they agree.
    let from_private = keygen_fingerprint(&key_path);
    let from_public = keygen_fingerprint(&pub_path);
    assert!(from_private.contains("(ED25519)"), "{from_private}");
    assert_eq!(
        from_private.split_whitespace().nth(1),
        from_public.split_whitespace().nth(1)
    );
    // ssh-keygen -y derives the same public key from the private file.
    let derived = Command::new("ssh-keygen")
        .arg("-y")
        .arg("-f")
        .arg(&key_path)
        .output()
        .expect("ssh-keygen -y");
    assert!(derived.status.success());
    let derived = String::from_utf8_lossy(&derived.stdout);
    let blob = created.public_key_line.split(' ').nth(1).expect("blob");
    assert!(derived.contains(blob), "{derived}");

    // Loading again returns the same key and leaves the files alone.
    let before = fs::read(&key_path).expect("read");
    let loaded = ensure_user_key(&key_path).expect("load");
    assert_eq!(loaded, created);
    assert_eq!(fs::read(&key_path).expect("read"), before);
}

#[test]
fn missing_public_half_is_recreated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key_path = dir.path().join("id");
    let created = ensure_user_key(&key_path).expect("create");
    let pub_path = public_key_path(&key_path);
    fs::remove_file(&pub_path).expect("rm pub");
    let loaded = ensure_user_key(&key_path).expect("load");
    assert_eq!(loaded.public_key_line, created.public_key_line);
    assert_eq!(mode(&pub_path), 0o644);
    keygen_fingerprint(&pub_path);
}

#[test]
fn loads_a_key_made_by_ssh_keygen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key_path = dir.path().join("id_ed25519");
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "me@host", "-f"])
        .arg(&key_path)
        .status()
        .expect("ssh-keygen");
    assert!(status.success());
    let expected = fs::read_to_string(public_key_path(&key_path)).expect("read pub");
    let loaded = ensure_user_key(&key_path).expect("load");
    assert_eq!(loaded.public_key_line, expected.trim());
}

#[test]
fn encrypted_key_is_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key_path = dir.path().join("id_ed25519");
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "secret passphrase", "-f"])
        .arg(&key_path)
        .status()
        .expect("ssh-keygen");
    assert!(status.success());
    let error = ensure_user_key(&key_path).expect_err("encrypted");
    assert!(
        matches!(&error, SshKeyError::Encrypted { path } if path == &key_path),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains(&key_path.display().to_string()),
        "{message}"
    );
    assert!(message.contains("passphrase"), "{message}");
    assert!(message.contains("unencrypted"), "{message}");
}

#[test]
fn too_open_private_key_we_own_is_tightened() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key_path = dir.path().join("id");
    let created = ensure_user_key(&key_path).expect("create");
    fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let loaded = ensure_user_key(&key_path).expect("load");
    assert_eq!(loaded, created);
    assert_eq!(mode(&key_path), 0o600);
}

#[test]
fn too_open_private_key_owned_by_someone_else_is_refused() {
    if !rustix::process::geteuid().is_root() {
        banger_testkit::skip_or_fail("needs root to chown the key to another user");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let key_path = dir.path().join("id");
    ensure_user_key(&key_path).expect("create");
    fs_err::os::unix::fs::chown(&key_path, Some(65534), Some(65534)).expect("chown");
    fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    let error = ensure_user_key(&key_path).expect_err("refused");
    assert!(
        matches!(
            &error,
            SshKeyError::PermissionsTooOpen {
                mode: 0o640,
                owner: 65534,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("chmod 600"), "{error}");
    assert_eq!(mode(&key_path), 0o640, "someone else's file is not changed");
}

#[test]
fn garbage_and_mismatched_files_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key_path = dir.path().join("id");
    fs::write(&key_path, "not a key\n").expect("write");
    fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let error = ensure_user_key(&key_path).expect_err("garbage");
    assert!(matches!(error, SshKeyError::Parse { .. }), "{error:?}");
    assert!(error.to_string().contains(&key_path.display().to_string()));

    let a = dir.path().join("a");
    let b = dir.path().join("b");
    ensure_user_key(&a).expect("a");
    ensure_user_key(&b).expect("b");
    fs::copy(public_key_path(&b), public_key_path(&a)).expect("copy");
    let error = ensure_user_key(&a).expect_err("mismatch");
    assert!(matches!(error, SshKeyError::Mismatch { .. }), "{error:?}");

    let error = ensure_user_key(dir.path()).expect_err("directory");
    assert!(matches!(error, SshKeyError::NotAFile { .. }), "{error:?}");
}

#[test]
fn concurrent_creators_agree_on_one_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key_path = dir.path().join("ssh/id");
    let lines: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..6)
            .map(|_| scope.spawn(|| ensure_user_key(&key_path).expect("ensure").public_key_line))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("join"))
            .collect()
    });
    assert!(lines.windows(2).all(|w| w[0] == w[1]), "{lines:?}");
    let on_disk = ensure_user_key(&key_path).expect("load");
    assert_eq!(on_disk.public_key_line, lines[0]);
}

#[test]
fn host_keys_are_accepted_by_ssh_keygen_and_fingerprint_matches() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = generate_host_key().expect("generate");
    let other = generate_host_key().expect("generate");
    assert_ne!(key.public_line, other.public_line);

    let private = dir.path().join("ssh_host_ed25519_key");
    fs::write(&private, &key.private_openssh).expect("write");
    fs::set_permissions(&private, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    fs::write(
        dir.path().join("ssh_host_ed25519_key.pub"),
        format!("{}\n", key.public_line),
    )
    .expect("write pub");
    let listing = keygen_fingerprint(&private);
    assert!(listing.contains(&key.fingerprint_sha256), "{listing}");
    let listing = keygen_fingerprint(&dir.path().join("ssh_host_ed25519_key.pub"));
    assert!(listing.contains(&key.fingerprint_sha256), "{listing}");
}
