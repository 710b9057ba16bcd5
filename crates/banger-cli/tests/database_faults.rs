//! A damaged database (bytes flipped inside its pages) or one from a newer
//! banger with VMs on disk: the real daemon refuses to start with a message
//! naming the database and how to recover, and changes nothing: the
//! database keeps its bytes and the VM's disks are untouched
//! (docs/reliability.md, "Fault matrix: the daemon"). The truncated case
//! is in daemon_lifecycle.rs. No guest is needed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use banger_testkit::TestEnv;

fn run(command: &mut Command) -> Output {
    command.stdin(Stdio::null()).output().expect("command runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A daemon started and stopped once, so the database exists and is
/// checkpointed; its WAL and shared-memory files are removed so the
/// database file alone is what the next daemon reads.
fn env_with_database() -> (TestEnv, PathBuf) {
    let env = TestEnv::new();
    assert!(
        run(env.banger().args(["daemon", "status"]))
            .status
            .success()
    );
    assert!(run(env.banger().args(["daemon", "stop"])).status.success());
    let database = env.paths().database();
    for suffix in ["-wal", "-shm"] {
        let mut side = database.clone().into_os_string();
        side.push(suffix);
        let _ = fs_err::remove_file(PathBuf::from(side));
    }
    (env, database)
}

/// A VM directory with a disk holding data, as a user's VM would have.
fn vm_with_a_disk(env: &TestEnv) -> (PathBuf, Vec<u8>) {
    let dir = env.paths().state_dir.join("vms/alpha");
    fs_err::create_dir_all(&dir).expect("VM dir");
    let disk = dir.join("work.ext4");
    let bytes: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
    fs_err::write(&disk, &bytes).expect("write the disk");
    (disk, bytes)
}

/// Starting the daemon fails, no daemon stays, and its message names the
/// database; returns the message.
fn refused_at_start(env: &TestEnv, database: &Path) -> String {
    let output = run(env.banger().args(["daemon", "status"]));
    assert!(!output.status.success(), "the daemon started");
    let message = stderr(&output);
    assert!(
        message.contains(&database.display().to_string()),
        "the message does not name the database: {message}"
    );
    assert!(env.daemon_pids().is_empty(), "a daemon is left running");
    message
}

#[test]
fn a_database_with_flipped_bytes_is_refused_and_nothing_is_touched() {
    let (env, database) = env_with_database();
    let mut bytes = fs_err::read(&database).expect("read the database");
    const PAGE: usize = 4096;
    assert!(bytes.len() >= 3 * PAGE, "{} bytes", bytes.len());
    // Every page after the first: its b-tree header and cell pointers
    // flipped, as a bad sector or a stray write would leave them.
    for page in (PAGE..bytes.len()).step_by(PAGE) {
        for byte in &mut bytes[page..page + 32] {
            *byte ^= 0xA5;
        }
    }
    fs_err::write(&database, &bytes).expect("write the damaged database");
    let (disk, disk_bytes) = vm_with_a_disk(&env);

    let message = refused_at_start(&env, &database);
    assert!(
        message.contains("is damaged") || message.contains("cannot be read"),
        "{message}"
    );
    assert!(message.contains("1 VM directory"), "{message}");
    assert!(
        message.contains("Restore the database from a backup"),
        "{message}"
    );
    assert_untouched(&database, &bytes, &disk, &disk_bytes);
}

#[test]
fn a_database_from_a_newer_banger_with_vms_is_refused_and_nothing_is_touched() {
    let (env, database) = env_with_database();
    let sqlite = Command::new("sqlite3")
        .arg(&database)
        .arg("PRAGMA user_version = 999;")
        .status();
    match sqlite {
        Ok(status) if status.success() => {}
        _ => panic!("sqlite3 is needed for this test (apt-get install sqlite3)"),
    }
    let bytes = fs_err::read(&database).expect("read the database");
    let (disk, disk_bytes) = vm_with_a_disk(&env);

    let message = refused_at_start(&env, &database);
    assert!(message.contains("schema version 999"), "{message}");
    assert!(message.contains("upgrade banger"), "{message}");
    assert_untouched(&database, &bytes, &disk, &disk_bytes);
}

/// The refused start changed neither the database nor the VM's disk.
fn assert_untouched(database: &Path, bytes: &[u8], disk: &Path, disk_bytes: &[u8]) {
    assert_eq!(
        fs_err::read(database).expect("the database is kept"),
        bytes,
        "the database was changed"
    );
    assert_eq!(
        fs_err::read(disk).expect("the disk is kept"),
        disk_bytes,
        "the VM's disk was changed"
    );
}
