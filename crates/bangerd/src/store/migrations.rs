//! Versioned schema migrations.
//!
//! `MIGRATIONS[i]` takes the schema from version `i` to `i + 1`. Each step
//! runs in its own transaction together with the `user_version` bump, so a
//! crash mid-migration leaves the previous version intact. Steps are never
//! edited once released; new changes are new steps.

use std::path::Path;

use rusqlite::Connection;

use super::StoreError;

pub(super) const MIGRATIONS: &[&str] = &[
    // 1: bookkeeping and the VM table's core. Later steps add columns.
    "CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) STRICT;
    CREATE TABLE vms (
        id         INTEGER PRIMARY KEY,
        name       TEXT NOT NULL UNIQUE,
        state      TEXT NOT NULL CHECK (state IN ('created', 'starting', 'running', 'stopping', 'stopped', 'error')),
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    ) STRICT;",
    // 2: installed kernels and registered images.
    "CREATE TABLE kernels (
        id           INTEGER PRIMARY KEY,
        name         TEXT NOT NULL UNIQUE,
        version      TEXT NOT NULL,
        source       TEXT NOT NULL,
        dir          TEXT NOT NULL,
        bzimage      TEXT,
        vmlinux      TEXT,
        initramfs    TEXT NOT NULL,
        modules_disk TEXT,
        size_bytes   INTEGER NOT NULL,
        created_at   INTEGER NOT NULL,
        CHECK (bzimage IS NOT NULL OR vmlinux IS NOT NULL)
    ) STRICT;
    CREATE TABLE images (
        id          INTEGER PRIMARY KEY,
        name        TEXT NOT NULL UNIQUE,
        managed     INTEGER NOT NULL CHECK (managed IN (0, 1)),
        dir         TEXT,
        rootfs      TEXT NOT NULL,
        work_seed   TEXT,
        kernel_id   INTEGER NOT NULL REFERENCES kernels (id) ON DELETE RESTRICT,
        initrd      TEXT,
        size_bytes  INTEGER NOT NULL,
        created_at  INTEGER NOT NULL,
        updated_at  INTEGER NOT NULL
    ) STRICT;",
    // 3: the full VM record. No earlier version could create VM rows, so
    // the placeholder table from step 1 is replaced rather than altered.
    "DROP TABLE vms;
    CREATE TABLE vms (
        id          INTEGER PRIMARY KEY,
        name        TEXT NOT NULL UNIQUE,
        state       TEXT NOT NULL CHECK (state IN ('created', 'starting', 'running', 'stopping', 'stopped', 'error')),
        image_id    INTEGER REFERENCES images (id) ON DELETE SET NULL,
        image_name  TEXT NOT NULL,
        vcpus       INTEGER NOT NULL,
        memory_mib  INTEGER NOT NULL,
        disk_bytes  INTEGER NOT NULL,
        ip          TEXT NOT NULL UNIQUE,
        mac         TEXT NOT NULL,
        vsock_cid   INTEGER NOT NULL UNIQUE,
        tap         TEXT UNIQUE,
        dir         TEXT NOT NULL,
        backend     TEXT,
        runtime     TEXT,
        last_error  TEXT,
        created_at  INTEGER NOT NULL,
        updated_at  INTEGER NOT NULL
    ) STRICT;",
    // 4: per-VM NAT to the outside world.
    "ALTER TABLE vms ADD COLUMN nat INTEGER NOT NULL DEFAULT 0 CHECK (nat IN (0, 1));",
    // 5: guest sessions; the guest agent owns the processes, these rows
    // remember them across daemon restarts and VM reboots.
    "CREATE TABLE sessions (
        id          INTEGER PRIMARY KEY,
        vm_id       INTEGER NOT NULL REFERENCES vms (id) ON DELETE CASCADE,
        name        TEXT NOT NULL,
        command     TEXT NOT NULL,
        cwd         TEXT NOT NULL,
        stdin_mode  TEXT NOT NULL CHECK (stdin_mode IN ('detached', 'pipe')),
        state       TEXT NOT NULL CHECK (state IN ('running', 'exited', 'lost')),
        pid         INTEGER,
        exit_code   INTEGER,
        signal      INTEGER,
        created_at  INTEGER NOT NULL,
        updated_at  INTEGER NOT NULL,
        UNIQUE (vm_id, name)
    ) STRICT;",
    // 6: where an image pulled from an OCI source came from and its
    // container config (JSON of banger_api::images::OciOrigin); NULL for
    // built and registered images.
    "ALTER TABLE images ADD COLUMN oci TEXT;",
    // 7: the `paused` state (memory saved to a file, no VMM). SQLite cannot
    // change a CHECK constraint, so `vms` is rebuilt. `sessions` references
    // it with ON DELETE CASCADE, so its rows wait in a temporary table while
    // no table references `vms` (dropping it then deletes no session), and
    // `sessions` is made again once the new `vms` has its name.
    "CREATE TABLE vms_new (
        id          INTEGER PRIMARY KEY,
        name        TEXT NOT NULL UNIQUE,
        state       TEXT NOT NULL CHECK (state IN ('created', 'starting', 'running', 'stopping', 'stopped', 'error', 'paused')),
        image_id    INTEGER REFERENCES images (id) ON DELETE SET NULL,
        image_name  TEXT NOT NULL,
        vcpus       INTEGER NOT NULL,
        memory_mib  INTEGER NOT NULL,
        disk_bytes  INTEGER NOT NULL,
        ip          TEXT NOT NULL UNIQUE,
        mac         TEXT NOT NULL,
        vsock_cid   INTEGER NOT NULL UNIQUE,
        tap         TEXT UNIQUE,
        dir         TEXT NOT NULL,
        backend     TEXT,
        runtime     TEXT,
        last_error  TEXT,
        created_at  INTEGER NOT NULL,
        updated_at  INTEGER NOT NULL,
        nat INTEGER NOT NULL DEFAULT 0 CHECK (nat IN (0, 1))
    ) STRICT;
    INSERT INTO vms_new (id, name, state, image_id, image_name, vcpus, memory_mib, disk_bytes,
        ip, mac, vsock_cid, tap, dir, backend, runtime, last_error, created_at, updated_at, nat)
        SELECT id, name, state, image_id, image_name, vcpus, memory_mib, disk_bytes,
        ip, mac, vsock_cid, tap, dir, backend, runtime, last_error, created_at, updated_at, nat
        FROM vms;
    CREATE TEMP TABLE sessions_keep AS SELECT * FROM sessions;
    DROP TABLE sessions;
    DROP TABLE vms;
    ALTER TABLE vms_new RENAME TO vms;
    CREATE TABLE sessions (
        id          INTEGER PRIMARY KEY,
        vm_id       INTEGER NOT NULL REFERENCES vms (id) ON DELETE CASCADE,
        name        TEXT NOT NULL,
        command     TEXT NOT NULL,
        cwd         TEXT NOT NULL,
        stdin_mode  TEXT NOT NULL CHECK (stdin_mode IN ('detached', 'pipe')),
        state       TEXT NOT NULL CHECK (state IN ('running', 'exited', 'lost')),
        pid         INTEGER,
        exit_code   INTEGER,
        signal      INTEGER,
        created_at  INTEGER NOT NULL,
        updated_at  INTEGER NOT NULL,
        UNIQUE (vm_id, name)
    ) STRICT;
    INSERT INTO sessions SELECT * FROM sessions_keep;
    DROP TABLE sessions_keep;",
];

/// The schema version this build writes.
pub const LATEST_VERSION: u32 = MIGRATIONS.len() as u32;

/// Reads `PRAGMA user_version`.
pub(super) fn user_version(connection: &Connection) -> rusqlite::Result<u32> {
    connection.query_row("PRAGMA user_version", [], |row| row.get(0))
}

/// The refusal of a database at schema version `found`, newer than this
/// build knows, naming the banger version that last wrote it. Only reads.
pub(super) fn newer_schema(connection: &Connection, path: &Path, found: u32) -> StoreError {
    let written_by = connection
        .query_row(
            "SELECT value FROM meta WHERE key = 'last_writer_version'",
            [],
            |row| row.get(0),
        )
        .unwrap_or_else(|_| "unknown".to_owned());
    StoreError::NewerSchema {
        path: path.to_owned(),
        found,
        supported: LATEST_VERSION,
        written_by,
        ours: banger_api::VERSION,
    }
}

/// Brings the database up to [`LATEST_VERSION`], or refuses a newer one.
pub(super) fn migrate(connection: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let query_error = |source| StoreError::Query {
        path: path.to_owned(),
        what: "read schema version",
        source,
    };
    let found = user_version(connection).map_err(query_error)?;
    if found > LATEST_VERSION {
        return Err(newer_schema(connection, path, found));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let from = index as u32;
        let to = from + 1;
        let migrate_error = |source| StoreError::Migrate {
            path: path.to_owned(),
            from,
            to,
            source,
        };
        let transaction = connection.transaction().map_err(migrate_error)?;
        transaction.execute_batch(sql).map_err(migrate_error)?;
        transaction
            .pragma_update(None, "user_version", to)
            .map_err(migrate_error)?;
        transaction.commit().map_err(migrate_error)?;
    }
    connection
        .execute(
            "INSERT INTO meta (key, value) VALUES ('last_writer_version', ?1)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [banger_api::VERSION],
        )
        .map_err(|source| StoreError::Query {
            path: path.to_owned(),
            what: "record writer version",
            source,
        })?;
    Ok(())
}
