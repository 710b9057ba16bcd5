//! Store tests: migrations from scratch, refusal of newer schemas, integrity
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
    let store = Store::open(&path).expect("open");
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
    let store = Store::open(&path).expect("reopen");
    assert_eq!(store.schema_version().expect("version"), LATEST_VERSION);
}

#[test]
fn refuses_a_database_from_a_newer_banger() {
    let temp = tempfile::tempdir().expect("tempdir");
    let path = temp.path().join("banger.db");
    let store = Store::open(&path).expect("open");
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
    let error = Store::open(&path).expect_err("newer schema refused");
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
        let store = Store::open(&path).expect("open");
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
    let reported = match Store::open(&path) {
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
