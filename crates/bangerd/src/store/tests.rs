//! Store tests: migrations from scratch, refusal of newer schemas and of
//! empty, truncated or foreign database files (kept byte for byte), integrity
//! checks and collision-free name generation.

use super::*;

/// A minimal VM row, for tests about names and integrity.
fn insert_vm_row(store: &Store, name: &str, index: u32) {
    store
        .connection
        .execute(
            "INSERT INTO vms (name, state, image_name, vcpus, memory_mib, disk_bytes, ip, mac, vsock_cid, dir, created_at, updated_at)
             VALUES (?1, 'stopped', 'img', 1, 512, 0, ?2, '02:00:00:00:00:00', ?3, '/nonexistent', 0, 0)",
            rusqlite::params![name, format!("10.{}.{}.{}", index / 65536, index / 256 % 256, index % 256), index + 3],
        )
        .expect("insert");
}

#[test]
fn migrates_an_empty_database_to_the_latest_version() {
    let temp = tempfile::tempdir().expect("tempdir");
    let path = temp.path().join("banger.db");
    let store = Store::open(&path, temp.path()).expect("open");
    assert_eq!(store.schema_version().expect("version"), LATEST_VERSION);
    let mode: String = store
        .connection
        .query_row("PRAGMA journal_mode", [], |row| row.get(0))
        .expect("mode");
    assert_eq!(mode, "wal");
    let synchronous: i64 = store
        .connection
        .query_row("PRAGMA synchronous", [], |row| row.get(0))
        .expect("sync");
    assert_eq!(synchronous, 2, "synchronous=FULL");
    drop(store);
    // Reopening is a no-op migration.
    let store = Store::open(&path, temp.path()).expect("reopen");
    assert_eq!(store.schema_version().expect("version"), LATEST_VERSION);
}

#[test]
fn refuses_a_database_from_a_newer_banger() {
    let temp = tempfile::tempdir().expect("tempdir");
    let path = temp.path().join("banger.db");
    let store = Store::open(&path, temp.path()).expect("open");
    store
        .connection
        .pragma_update(None, "user_version", LATEST_VERSION + 5)
        .expect("bump");
    store
        .connection
        .execute(
            "UPDATE meta SET value = '9.9.9' WHERE key = 'last_writer_version'",
            [],
        )
        .expect("writer");
    drop(store);
    let error = Store::open(&path, temp.path()).expect_err("newer schema refused");
    let message = error.to_string();
    assert!(
        matches!(error, StoreError::NewerSchema { found, .. } if found == LATEST_VERSION + 5),
        "{message}"
    );
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(
        message.contains("last written by banger 9.9.9"),
        "{message}"
    );
    assert!(message.contains("upgrade banger"), "{message}");
    // The refusal changed nothing.
    let connection = Connection::open(&path).expect("raw open");
    assert_eq!(
        migrations::user_version(&connection).expect("version"),
        LATEST_VERSION + 5
    );
}

#[test]
fn a_database_from_a_newer_banger_is_refused_before_anything_writes_to_it() {
    let temp = tempfile::tempdir().expect("tempdir");
    let path = temp.path().join("banger.db");
    {
        let store = Store::open(&path, temp.path()).expect("open");
        store
            .connection
            .pragma_update(None, "user_version", LATEST_VERSION + 1)
            .expect("bump");
        // A newer banger may not use WAL: switching it on would rewrite the
        // header.
        store
            .connection
            .pragma_update(None, "journal_mode", "DELETE")
            .expect("leave wal");
    }
    let before = fs_err::read(&path).expect("read");
    let error = Store::open(&path, temp.path()).expect_err("newer schema refused");
    assert!(matches!(error, StoreError::NewerSchema { .. }), "{error}");
    assert!(
        fs_err::read(&path).expect("read") == before,
        "the refusal rewrote the database file"
    );
}

#[test]
fn a_newer_schema_still_in_the_wal_is_refused_and_nothing_is_written() {
    // A newer banger that was killed leaves its last commits in the WAL:
    // the file's header still shows the old version.
    let temp = tempfile::tempdir().expect("tempdir");
    let source = temp.path().join("source.db");
    let state = temp.path().join("state");
    fs_err::create_dir(&state).expect("state dir");
    let path = state.join("banger.db");
    let store = Store::open(&source, temp.path()).expect("open");
    store
        .connection
        .pragma_update(None, "wal_autocheckpoint", 0)
        .expect("no checkpoints");
    store
        .connection
        .pragma_update(None, "user_version", LATEST_VERSION + 1)
        .expect("bump");
    // Copy the files while the writer is still open, as a crash leaves them.
    fs_err::copy(&source, &path).expect("copy database");
    fs_err::copy(
        temp.path().join("source.db-wal"),
        state.join("banger.db-wal"),
    )
    .expect("copy wal");
    drop(store);
    let before = fs_err::read(&path).expect("read");
    assert!(
        u32::from_be_bytes([before[60], before[61], before[62], before[63]]) <= LATEST_VERSION,
        "the header does not show the newer version"
    );
    let error = Store::open(&path, &state).expect_err("newer schema refused");
    assert!(
        matches!(error, StoreError::NewerSchema { found, .. } if found == LATEST_VERSION + 1),
        "{error}"
    );
    assert!(
        fs_err::read(&path).expect("read") == before,
        "the refusal rewrote the database file"
    );
}

/// A real database with some rows, closed cleanly (its WAL checkpointed).
fn real_database_bytes() -> Vec<u8> {
    let temp = tempfile::tempdir().expect("tempdir");
    let path = temp.path().join("banger.db");
    {
        let store = Store::open(&path, temp.path()).expect("open");
        for index in 0..200 {
            insert_vm_row(&store, &format!("vm-{index}"), index);
        }
    }
    fs_err::read(&path).expect("read")
}

/// A state dir holding the database `bytes` and one VM directory.
fn state_with_a_vm(bytes: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let temp = tempfile::tempdir().expect("tempdir");
    fs_err::create_dir_all(temp.path().join("vms/alpha")).expect("vm dir");
    let path = temp.path().join("banger.db");
    fs_err::write(&path, bytes).expect("write");
    (temp, path)
}

/// Opens the database, expects [`StoreError::Unusable`] and checks the
/// file is still there with the same bytes.
fn refused(path: &Path, state_dir: &Path) -> (DatabaseProblem, String) {
    let before = fs_err::read(path).expect("read before");
    let error = Store::open(path, state_dir).expect_err("refused");
    let message = error.to_string();
    assert!(
        fs_err::read(path).expect("the file is kept") == before,
        "the refusal changed the file"
    );
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("move it away"), "{message}");
    match error {
        StoreError::Unusable { problem, .. } => (problem, message),
        other => panic!("expected Unusable, got {other}"),
    }
}

#[test]
fn an_empty_database_is_refused_and_kept_while_a_vm_directory_exists() {
    let (temp, path) = state_with_a_vm(b"");
    fs_err::create_dir_all(temp.path().join("images/base")).expect("image dir");
    let (problem, message) = refused(&path, temp.path());
    assert!(matches!(problem, DatabaseProblem::Empty), "{message}");
    assert_eq!(fs_err::metadata(&path).expect("kept").len(), 0);
    assert!(message.contains("is empty (0 bytes)"), "{message}");
    assert!(message.contains("1 VM directory (vms/)"), "{message}");
    assert!(message.contains("1 image directory (images/)"), "{message}");
    assert!(message.contains("0 kernel directories"), "{message}");
    assert!(
        message.contains("your VM directories are kept and are not registered in it"),
        "{message}"
    );
    assert!(!temp.path().join("banger.db-wal").exists());
}

#[test]
fn an_empty_database_without_vm_or_image_directories_is_initialised() {
    let temp = tempfile::tempdir().expect("tempdir");
    // Work in progress (hidden) is not an image.
    fs_err::create_dir_all(temp.path().join("images/.partial-base-1")).expect("partial");
    fs_err::create_dir_all(temp.path().join("vms")).expect("empty vms dir");
    let path = temp.path().join("banger.db");
    fs_err::write(&path, b"").expect("write");
    let store = Store::open(&path, temp.path()).expect("first run initialises");
    assert_eq!(store.schema_version().expect("version"), LATEST_VERSION);
}

#[test]
fn a_truncated_database_is_refused_and_kept_while_a_vm_directory_exists() {
    let bytes = real_database_bytes();
    assert!(bytes.len() > 3 * 4096, "{} bytes", bytes.len());
    // Cut at a page boundary: the header says more pages than there are.
    let (temp, path) = state_with_a_vm(&bytes[..2 * 4096]);
    let (problem, message) = refused(&path, temp.path());
    assert!(
        matches!(problem, DatabaseProblem::Truncated { len: 8192, .. }),
        "{message}"
    );
    // Shorter than the header.
    let (temp, path) = state_with_a_vm(&bytes[..50]);
    let (problem, message) = refused(&path, temp.path());
    assert!(
        matches!(problem, DatabaseProblem::ShorterThanHeader { len: 50 }),
        "{message}"
    );
    // A header whose page count is not trusted: quick_check finds it.
    let mut stale = bytes[..2 * 4096].to_vec();
    stale[92..96].copy_from_slice(&[0xFF; 4]);
    let (temp, path) = state_with_a_vm(&stale);
    let (problem, message) = refused(&path, temp.path());
    assert!(
        matches!(
            problem,
            DatabaseProblem::Damaged { .. } | DatabaseProblem::Unreadable { .. }
        ),
        "{message}"
    );
}

#[test]
fn a_truncated_database_is_refused_even_without_vm_directories() {
    let bytes = real_database_bytes();
    let temp = tempfile::tempdir().expect("tempdir");
    let path = temp.path().join("banger.db");
    fs_err::write(&path, &bytes[..4096]).expect("write");
    let (problem, message) = refused(&path, temp.path());
    assert!(
        matches!(problem, DatabaseProblem::Truncated { .. }),
        "{message}"
    );
}

#[test]
fn a_file_that_is_not_sqlite_is_refused_even_without_vm_directories() {
    let temp = tempfile::tempdir().expect("tempdir");
    let path = temp.path().join("banger.db");
    fs_err::write(&path, b"these are my notes, not a database\n".repeat(100)).expect("write");
    let (problem, message) = refused(&path, temp.path());
    assert!(matches!(problem, DatabaseProblem::NotSqlite), "{message}");
    assert!(message.contains("not a SQLite database"), "{message}");
}

#[test]
fn a_directory_or_symlink_at_the_database_path_is_refused() {
    let temp = tempfile::tempdir().expect("tempdir");
    let path = temp.path().join("banger.db");
    fs_err::create_dir(&path).expect("dir");
    let error = Store::open(&path, temp.path()).expect_err("directory refused");
    assert!(
        matches!(
            error,
            StoreError::Unusable {
                problem: DatabaseProblem::NotRegular { kind: "directory" },
                ..
            }
        ),
        "{error}"
    );
    let target = temp.path().join("real.db");
    drop(Store::open(&target, temp.path()).expect("real database"));
    let link = temp.path().join("link.db");
    fs_err::os::unix::fs::symlink(&target, &link).expect("symlink");
    let error = Store::open(&link, temp.path()).expect_err("symlink refused");
    assert!(
        matches!(
            error,
            StoreError::Unusable {
                problem: DatabaseProblem::NotRegular {
                    kind: "symbolic link"
                },
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn integrity_check_passes_on_a_fresh_database() {
    let store = Store::open_in_memory().expect("open");
    let report = store.integrity_check().expect("check");
    assert!(report.ok, "{report:?}");
    assert!(report.problems.is_empty());
    assert_eq!(report.schema_version, LATEST_VERSION);
}

#[test]
fn integrity_check_reports_corruption() {
    let temp = tempfile::tempdir().expect("tempdir");
    let path = temp.path().join("banger.db");
    {
        let store = Store::open(&path, temp.path()).expect("open");
        for index in 0..2000 {
            insert_vm_row(&store, &format!("vm-{index}"), index);
        }
        store
            .connection
            .pragma_update(None, "journal_mode", "DELETE")
            .expect("leave wal");
    }
    // Scribble over the middle of the file: page contents, not the header.
    let mut bytes = fs_err::read(&path).expect("read");
    let middle = bytes.len() / 2;
    for byte in &mut bytes[middle..middle + 512] {
        *byte = 0xA5;
    }
    fs_err::write(&path, bytes).expect("write");
    // Refusing to open a corrupt file is also a report.
    let reported = match Store::open(&path, temp.path()) {
        Ok(store) => store
            .integrity_check()
            .map(|report| !report.ok)
            .unwrap_or(true),
        Err(_) => true,
    };
    assert!(reported, "corruption must be reported");
}

#[test]
fn generated_names_skip_existing_vms() {
    let store = Store::open_in_memory().expect("open");
    let mut rng = fastrand::Rng::with_seed(3);
    let first = store.generate_vm_name(&mut rng).expect("name");
    insert_vm_row(&store, first.as_str(), 1);
    assert!(store.vm_name_taken(&first).expect("lookup"));
    // Same seed: the generator's first pick collides and must move on.
    let mut rng = fastrand::Rng::with_seed(3);
    let second = store.generate_vm_name(&mut rng).expect("name");
    assert_ne!(first, second);
    assert!(!store.vm_name_taken(&second).expect("lookup"));
}

#[test]
fn sessions_are_unique_per_vm_and_go_with_their_vm() {
    use banger_api::sessions::{SessionState, StdinMode};
    let mut store = Store::open_in_memory().expect("store");
    insert_vm_row(&store, "alpha", 1);
    insert_vm_row(&store, "beta", 2);
    let vm_id = |store: &Store, name: &str| {
        store
            .vm(&VmName::parse(name).expect("name"))
            .expect("query")
            .expect("row")
            .id
    };
    let (alpha, beta) = (vm_id(&store, "alpha"), vm_id(&store, "beta"));
    let web = banger_api::SessionName::parse("web").expect("name");
    let mut session = SessionRow {
        id: 0,
        vm_id: alpha,
        name: web.clone(),
        command: vec!["python3".into(), "-m".into(), "http.server".into()],
        cwd: "/root".into(),
        stdin_mode: StdinMode::Pipe,
        state: SessionState::Running,
        pid: Some(42),
        exit_code: None,
        signal: None,
        created_at: 7,
    };
    session.id = store.insert_session(&session).expect("insert");
    assert!(store.insert_session(&session).is_err(), "duplicate name");
    let other_vm = SessionRow {
        vm_id: beta,
        ..session.clone()
    };
    store
        .insert_session(&other_vm)
        .expect("same name, other VM");
    assert_eq!(
        store.session(alpha, &web).expect("query"),
        Some(session.clone())
    );

    assert_eq!(store.mark_sessions_lost(alpha).expect("lost"), 1);
    let lost = store.session(alpha, &web).expect("query").expect("row");
    assert_eq!(lost.state, SessionState::Lost);
    assert_eq!(
        store.sessions(beta).expect("list")[0].state,
        SessionState::Running
    );

    store.delete_vm(alpha).expect("delete VM");
    assert_eq!(store.session(alpha, &web).expect("query"), None);
    assert_eq!(store.sessions(beta).expect("list").len(), 1);
}

#[test]
fn session_changes_are_published() {
    use banger_api::events::EventKind;
    use banger_api::sessions::{SessionState, StdinMode};
    let mut store = Store::open_in_memory().expect("store");
    let bus = crate::events::EventBus::default();
    let mut events = bus.subscribe();
    store.publish_events(bus);
    insert_vm_row(&store, "alpha", 1);
    let vm = VmName::parse("alpha").expect("name");
    let alpha = store.vm(&vm).expect("query").expect("row").id;
    let session = |name: &str| SessionRow {
        id: 0,
        vm_id: alpha,
        name: banger_api::SessionName::parse(name).expect("name"),
        command: vec!["sleep".into(), "60".into()],
        cwd: "/root".into(),
        stdin_mode: StdinMode::Detached,
        state: SessionState::Running,
        pid: Some(42),
        exit_code: None,
        signal: None,
        created_at: 7,
    };
    let mut done = session("done");
    done.id = store.insert_session(&done).expect("insert");
    store.insert_session(&session("left")).expect("insert");
    // Reading an unchanged row again publishes nothing.
    store.update_session_state(&done).expect("update");
    done.state = SessionState::Exited;
    done.exit_code = Some(3);
    store.update_session_state(&done).expect("update");
    // Already ended: not announced twice.
    store.update_session_state(&done).expect("update");
    assert_eq!(store.mark_sessions_lost(alpha).expect("lost"), 1);
    store.delete_session(done.id).expect("delete");

    let mut seen = Vec::new();
    while let Ok(event) = events.try_recv() {
        match &event.event {
            EventKind::VmCreated { .. } => {}
            other => seen.push(other.clone()),
        }
    }
    let name = |text: &str| banger_api::SessionName::parse(text).expect("name");
    assert_eq!(
        seen,
        vec![
            EventKind::SessionStarted {
                vm: vm.clone(),
                session: name("done")
            },
            EventKind::SessionStarted {
                vm: vm.clone(),
                session: name("left")
            },
            EventKind::SessionEnded {
                vm: vm.clone(),
                session: name("done"),
                state: SessionState::Exited,
                exit_code: Some(3),
                signal: None,
            },
            EventKind::SessionEnded {
                vm: vm.clone(),
                session: name("left"),
                state: SessionState::Lost,
                exit_code: None,
                signal: None,
            },
            EventKind::SessionRemoved {
                vm: vm.clone(),
                session: name("done")
            },
        ]
    );
}

fn vm_named(store: &Store, name: &str) -> VmRow {
    store
        .vm(&VmName::parse(name).expect("name"))
        .expect("query")
        .expect("row exists")
}

#[test]
fn state_changes_follow_the_state_machine_and_are_compared_and_swapped() {
    use banger_api::vms::VmState;
    let mut store = Store::open_in_memory().expect("store");
    insert_vm_row(&store, "alpha", 1);
    let mut vm = vm_named(&store, "alpha");
    assert_eq!(vm.state, VmState::Stopped);

    // Allowed: stopped -> starting, written with the other fields.
    vm.tap = Some("tap-x".to_owned());
    store
        .set_vm_state(&mut vm, VmState::Starting)
        .expect("stopped -> starting");
    assert_eq!(vm.state, VmState::Starting);
    let stored = vm_named(&store, "alpha");
    assert_eq!(stored.state, VmState::Starting);
    assert_eq!(stored.tap.as_deref(), Some("tap-x"));

    // Refused by the table: starting -> created; nothing is written.
    let error = store
        .set_vm_state(&mut vm, VmState::Created)
        .expect_err("starting -> created is refused");
    assert!(
        matches!(
            error,
            StoreError::InvalidTransition {
                from: VmState::Starting,
                to: VmState::Created,
                ..
            }
        ),
        "{error}"
    );
    assert_eq!(vm.state, VmState::Starting);
    assert_eq!(vm_named(&store, "alpha").state, VmState::Starting);

    // A stale copy (read before someone else moved the VM on) writes nothing.
    let mut stale = vm.clone();
    store
        .set_vm_state(&mut vm, VmState::Running)
        .expect("starting -> running");
    let error = store
        .set_vm_state(&mut stale, VmState::Error)
        .expect_err("stale state refused");
    assert!(
        matches!(
            error,
            StoreError::StateChanged {
                expected: VmState::Starting,
                ..
            }
        ),
        "{error}"
    );
    assert_eq!(vm_named(&store, "alpha").state, VmState::Running);

    // update_vm never changes the state, whatever the row says.
    let mut sneaky = vm_named(&store, "alpha");
    sneaky.state = VmState::Created;
    sneaky.last_error = Some("note".to_owned());
    store.update_vm(&sneaky).expect("update");
    let stored = vm_named(&store, "alpha");
    assert_eq!(stored.state, VmState::Running);
    assert_eq!(stored.last_error.as_deref(), Some("note"));
}

#[test]
fn new_vm_rows_start_as_created() {
    use banger_api::vms::VmState;
    let mut store = Store::open_in_memory().expect("store");
    insert_vm_row(&store, "alpha", 1);
    let mut vm = vm_named(&store, "alpha");
    vm.name = VmName::parse("beta").expect("name");
    vm.ip = "10.0.0.9".parse().expect("ip");
    vm.vsock_cid = 99;
    let error = store.insert_vm(&vm).expect_err("a stopped row is refused");
    assert!(
        matches!(
            error,
            StoreError::NotCreated {
                state: VmState::Stopped,
                ..
            }
        ),
        "{error}"
    );
    vm.state = VmState::Created;
    store.insert_vm(&vm).expect("a created row is accepted");
}

#[test]
fn the_vmm_handle_is_parsed_once_and_a_corrupt_one_is_kept_and_reported() {
    let mut store = Store::open_in_memory().expect("store");
    insert_vm_row(&store, "alpha", 1);
    assert!(vm_named(&store, "alpha").vmm.is_none());
    store
        .connection
        .execute(
            "UPDATE vms SET runtime = '{\"not\": \"a handle\"' WHERE name = 'alpha'",
            [],
        )
        .expect("corrupt the handle");
    let vm = vm_named(&store, "alpha");
    let VmmHandle::Corrupt { raw, error } = &vm.vmm else {
        panic!("expected a corrupt handle, got {:?}", vm.vmm);
    };
    assert_eq!(raw, "{\"not\": \"a handle\"");
    assert!(!error.is_empty());
    assert!(vm.vmm.recorded().is_none());
    // Writing the row back keeps the damaged text for inspection.
    store.update_vm(&vm).expect("update");
    let raw_after: String = store
        .connection
        .query_row("SELECT runtime FROM vms WHERE name = 'alpha'", [], |row| {
            row.get(0)
        })
        .expect("read");
    assert_eq!(raw_after, "{\"not\": \"a handle\"");
    // Listing still works: one bad row does not hide the others.
    insert_vm_row(&store, "beta", 2);
    assert_eq!(store.vms().expect("list").len(), 2);
}

#[test]
fn migration_7_allows_paused_and_keeps_vms_and_their_sessions() {
    let temp = tempfile::tempdir().expect("tempdir");
    let path = temp.path().join("banger.db");
    let mut connection = Connection::open(&path).expect("raw open");
    connection
        .pragma_update(None, "foreign_keys", true)
        .expect("foreign keys");
    // Up to version 6, by the released steps.
    for (index, sql) in migrations::MIGRATIONS.iter().take(6).enumerate() {
        let transaction = connection.transaction().expect("transaction");
        transaction.execute_batch(sql).expect("step");
        transaction
            .pragma_update(
                None,
                "user_version",
                u32::try_from(index + 1).expect("small"),
            )
            .expect("version");
        transaction.commit().expect("commit");
    }
    connection
        .execute(
            "INSERT INTO vms (name, state, image_name, vcpus, memory_mib, disk_bytes, ip, mac, vsock_cid, dir, created_at, updated_at, nat)
             VALUES ('old', 'running', 'img', 1, 512, 0, '10.0.0.2', '02:00:00:00:00:00', 3, '/nonexistent', 0, 0, 1)",
            [],
        )
        .expect("vm");
    connection
        .execute(
            "INSERT INTO sessions (vm_id, name, command, cwd, stdin_mode, state, created_at, updated_at)
             VALUES (1, 's', '[]', '/', 'detached', 'running', 0, 0)",
            [],
        )
        .expect("session");
    assert!(
        connection
            .execute("UPDATE vms SET state = 'paused'", [])
            .is_err(),
        "version 6 refuses paused"
    );
    drop(connection);
    let store = Store::open(&path, temp.path()).expect("open migrates");
    assert_eq!(store.schema_version().expect("version"), LATEST_VERSION);
    store
        .connection
        .execute("UPDATE vms SET state = 'paused'", [])
        .expect("paused allowed");
    let (sessions, nat): (i64, i64) = store
        .connection
        .query_row(
            "SELECT (SELECT count(*) FROM sessions), nat FROM vms",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .expect("query");
    assert_eq!((sessions, nat), (1, 1));
    // The sessions' foreign key now points at the new table: deleting the
    // VM deletes its sessions.
    store
        .connection
        .execute("DELETE FROM vms", [])
        .expect("delete");
    let sessions: i64 = store
        .connection
        .query_row("SELECT count(*) FROM sessions", [], |row| row.get(0))
        .expect("count");
    assert_eq!(sessions, 0);
}
