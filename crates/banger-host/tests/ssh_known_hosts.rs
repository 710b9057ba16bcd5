//! Tests for banger's known_hosts file: set, replace, remove, validation
//! and concurrent writers.

use fs_err as fs;
use std::sync::Arc;

use banger_host::ssh::{KnownHostsError, generate_host_key, host_keys, remove_host, set_host};

fn key_part(public_line: &str) -> String {
    public_line
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn set_replace_remove() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ssh/known_hosts");
    let k1 = generate_host_key().expect("k1");
    let k2 = generate_host_key().expect("k2");
    let k3 = generate_host_key().expect("k3");

    // Missing file: remove is a no-op, set creates it.
    assert!(!remove_host(&path, "devbox.vm").expect("remove missing"));
    assert!(
        !path.exists(),
        "removing from a missing file writes nothing"
    );
    assert!(host_keys(&path, "devbox.vm").expect("read").is_empty());

    set_host(&path, "devbox.vm", &format!("{} a comment", k1.public_line)).expect("set");
    set_host(&path, "other.vm", &k2.public_line).expect("set other");
    assert_eq!(
        fs::read_to_string(&path).expect("read"),
        format!(
            "devbox.vm {}\nother.vm {}\n",
            k1.public_line, k2.public_line
        )
    );

    // Replacing keeps exactly one line for the alias.
    set_host(&path, "devbox.vm", &k3.public_line).expect("replace");
    let text = fs::read_to_string(&path).expect("read");
    assert_eq!(text.matches("devbox.vm ").count(), 1, "{text}");
    assert!(!text.contains(&key_part(&k1.public_line)), "{text}");
    assert_eq!(
        host_keys(&path, "devbox.vm").expect("read"),
        vec![k3.public_line.clone()]
    );
    assert_eq!(
        host_keys(&path, "other.vm").expect("read"),
        vec![k2.public_line.clone()]
    );

    assert!(remove_host(&path, "devbox.vm").expect("remove"));
    assert!(!remove_host(&path, "devbox.vm").expect("remove again"));
    assert_eq!(
        fs::read_to_string(&path).expect("read"),
        format!("other.vm {}\n", k2.public_line)
    );
    assert!(remove_host(&path, "other.vm").expect("remove last"));
    assert_eq!(fs::read_to_string(&path).expect("read"), "");

    // Only the file and its lock remain: no temp files.
    let mut names: Vec<_> = fs::read_dir(dir.path().join("ssh"))
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["known_hosts", "known_hosts.lock"]);
}

#[test]
fn an_alias_that_prefixes_another_is_not_touched() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("known_hosts");
    let k = generate_host_key().expect("k");
    set_host(&path, "ab.vm", &k.public_line).expect("set");
    set_host(&path, "b.vm", &k.public_line).expect("set");
    assert!(remove_host(&path, "b.vm").expect("remove"));
    assert_eq!(host_keys(&path, "ab.vm").expect("read").len(), 1);
}

#[test]
fn bad_aliases_and_keys_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("known_hosts");
    let k = generate_host_key().expect("k");
    for alias in [
        "",
        "DevBox.vm",
        "dev box",
        "*",
        "dev,box",
        "dev.vm\nevil",
        "-x",
        "[x]:22",
    ] {
        let error = set_host(&path, alias, &k.public_line).expect_err(alias);
        assert!(
            matches!(&error, KnownHostsError::InvalidAlias { .. }),
            "{error:?}"
        );
        assert!(error.to_string().contains("known_hosts"), "{error}");
        assert!(remove_host(&path, alias).is_err());
    }
    for line in ["", "ssh-ed25519", "ssh-ed25519 $$$notbase64$$$$$$$"] {
        let error = set_host(&path, "ok.vm", line).expect_err(line);
        assert!(
            matches!(&error, KnownHostsError::InvalidKey { .. }),
            "{error:?}"
        );
    }
    assert!(!path.exists());
}

#[test]
fn concurrent_writers_all_land() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = Arc::new(dir.path().join("ssh/known_hosts"));
    let keys: Vec<_> = (0..8).map(|_| generate_host_key().expect("key")).collect();
    let keys = Arc::new(keys);
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let path = Arc::clone(&path);
            let keys = Arc::clone(&keys);
            std::thread::spawn(move || {
                for round in 0..10 {
                    let alias = format!("vm-{i}.vm");
                    set_host(&path, &alias, &keys[(i + round) % keys.len()].public_line)
                        .expect("set");
                    // A scratch alias per thread, added and removed again.
                    let scratch = format!("scratch-{i}.vm");
                    set_host(&path, &scratch, &keys[i].public_line).expect("set scratch");
                    assert!(remove_host(&path, &scratch).expect("remove scratch"));
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().expect("writer thread");
    }
    let text = fs::read_to_string(&*path).expect("read");
    assert_eq!(text.lines().count(), 8, "{text}");
    for i in 0..8 {
        let pinned = host_keys(&path, &format!("vm-{i}.vm")).expect("read");
        assert_eq!(pinned, vec![keys[(i + 9) % keys.len()].public_line.clone()]);
    }
    assert!(!text.contains("scratch"), "{text}");
}
