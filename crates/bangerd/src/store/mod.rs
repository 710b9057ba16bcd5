//! The SQLite database: opening, migrations, integrity checks and queries.
//!
//! The database lives at `<state_dir>/banger.db`, in WAL mode with
//! `synchronous=FULL` so a committed state change survives a power cut. The
//! schema version is SQLite's `user_version`; [`migrations`] lists every
//! step, and a database from a newer banger is refused rather than guessed at.
//! Before anything writes to an existing file, [`check`] inspects it
//! read-only: an empty, truncated, damaged or foreign file is refused with a
//! recovery hint and kept as it is, never replaced by a new database.

mod check;
mod images;
mod kernels;
mod migrations;
mod sessions;
mod vms;

use std::path::{Path, PathBuf};

use banger_api::VmName;
use banger_api::daemon::IntegrityReport;
use banger_api::vms::VmState;
use rusqlite::{Connection, OptionalExtension};

pub use check::{DatabaseProblem, Recovery};
pub use images::ImageRow;
pub use kernels::{KernelRow, NewKernel};
pub use migrations::LATEST_VERSION;
pub use sessions::SessionRow;
pub use vms::{VmRow, VmmHandle};

/// Seconds since the Unix epoch, the timestamp format of every table.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Failures of the store; each names the database file.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened or configured.
    #[error("cannot open database {path}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: rusqlite::Error,
    },
    /// The database was written by a newer banger.
    #[error(
        "database {path} has schema version {found} (last written by banger {written_by}), but this banger ({ours}) \
         supports up to version {supported}; upgrade banger, or move the database away to start afresh"
    )]
    NewerSchema {
        /// The database file.
        path: PathBuf,
        /// Version found in the file.
        found: u32,
        /// Newest version this build knows.
        supported: u32,
        /// banger version recorded by the last writer.
        written_by: String,
        /// This build's version.
        ours: &'static str,
    },
    /// The database file exists but is not a usable banger database (empty
    /// while VM, image or kernel directories exist, truncated, damaged, not
    /// SQLite, not a regular file). Nothing was written to it.
    #[error(
        "database {path} {problem}; refusing to use it, and the file is kept as it is. {recovery}"
    )]
    Unusable {
        /// The database file.
        path: PathBuf,
        /// What is wrong with it.
        problem: DatabaseProblem,
        /// What the state directory holds, and how to recover.
        recovery: Recovery,
    },
    /// A directory of the state dir could not be listed while checking
    /// whether a damaged database may be replaced.
    #[error("cannot list {path} to check for VM, image and kernel directories")]
    StateDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Applying a migration failed; the database is left at `from`.
    #[error("cannot migrate database {path} from schema version {from} to {to}")]
    Migrate {
        /// The database file.
        path: PathBuf,
        /// Version before the failed step.
        from: u32,
        /// Version the step would have reached.
        to: u32,
        /// The cause.
        #[source]
        source: rusqlite::Error,
    },
    /// A state change that the VM state machine does not allow
    /// (`VmState::valid_transition`): a bug, refused before it is recorded.
    #[error("VM {vm} cannot go from {from} to {to}")]
    InvalidTransition {
        /// The VM.
        vm: VmName,
        /// Its recorded state.
        from: VmState,
        /// The refused state.
        to: VmState,
    },
    /// The row's state changed since it was read (another operation got
    /// there first); nothing was written.
    #[error("VM {vm} is no longer {expected}; nothing was changed")]
    StateChanged {
        /// The VM.
        vm: VmName,
        /// The state the caller read.
        expected: VmState,
    },
    /// A new VM row must start in `created`.
    #[error("VM {vm} must be recorded as created, not {state}")]
    NotCreated {
        /// The VM.
        vm: VmName,
        /// The state it had.
        state: VmState,
    },
    /// A VM's VMM handle could not be encoded for storage.
    #[error("cannot record the VMM handle of VM {vm}")]
    EncodeHandle {
        /// The VM.
        vm: VmName,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// A query failed.
    #[error("database query failed on {path} ({what})")]
    Query {
        /// The database file.
        path: PathBuf,
        /// What was being done.
        what: &'static str,
        /// The cause.
        #[source]
        source: rusqlite::Error,
    },
}

/// An open, migrated database.
pub struct Store {
    connection: Connection,
    path: PathBuf,
    /// Where VM record changes are announced (none in tools and tests that
    /// open a store without a daemon).
    events: Option<crate::events::EventBus>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Announces VM records created, changed state and deleted on `bus`
    /// from now on.
    pub fn publish_events(&mut self, bus: crate::events::EventBus) {
        self.events = Some(bus);
    }

    /// Publishes `event` if a bus is attached.
    fn publish(&self, event: banger_api::events::EventKind) {
        if let Some(bus) = &self.events {
            bus.publish(event);
        }
    }

    /// Opens (creating if needed) and migrates the database at `path`, which
    /// belongs to the state directory `state_dir`.
    ///
    /// An existing file is first inspected without writing to it: one that is
    /// empty while `state_dir` holds VM, image or kernel directories, one that
    /// is truncated, damaged, not SQLite or not a regular file, and one from a
    /// newer banger are refused ([`StoreError::Unusable`],
    /// [`StoreError::NewerSchema`]) and left byte for byte as they were.
    pub fn open(path: &Path, state_dir: &Path) -> Result<Self, StoreError> {
        check::inspect(path, state_dir)?;
        let open_error = |source| StoreError::Open {
            path: path.to_owned(),
            source,
        };
        let connection = Connection::open(path).map_err(open_error)?;
        Self::configure(connection, path.to_owned())
    }

    /// An in-memory database, for tests.
    pub fn open_in_memory() -> Result<Self, StoreError> {
        let path = PathBuf::from(":memory:");
        let connection = Connection::open_in_memory().map_err(|source| StoreError::Open {
            path: path.clone(),
            source,
        })?;
        Self::configure(connection, path)
    }

    fn configure(connection: Connection, path: PathBuf) -> Result<Self, StoreError> {
        let open_error = |source| StoreError::Open {
            path: path.clone(),
            source,
        };
        // WAL lets readers proceed during writes; FULL makes every commit
        // durable, which state transitions of real VMs need.
        connection
            .pragma_update_and_check(None, "journal_mode", "WAL", |_| Ok(()))
            .map_err(open_error)?;
        connection
            .pragma_update(None, "synchronous", "FULL")
            .map_err(open_error)?;
        connection
            .pragma_update(None, "foreign_keys", true)
            .map_err(open_error)?;
        connection
            .busy_timeout(std::time::Duration::from_secs(5))
            .map_err(open_error)?;
        let mut store = Self {
            connection,
            path,
            events: None,
        };
        migrations::migrate(&mut store.connection, &store.path)?;
        Ok(store)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn query_error(&self, what: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError + '_ {
        move |source| StoreError::Query {
            path: self.path.clone(),
            what,
            source,
        }
    }

    fn write_error(&self, vm: &VmName) -> impl FnOnce(vms::WriteError) -> StoreError + '_ {
        let vm = vm.clone();
        move |error| match error {
            vms::WriteError::Encode(source) => StoreError::EncodeHandle { vm, source },
            vms::WriteError::Query(source) => StoreError::Query {
                path: self.path.clone(),
                what: "update VM",
                source,
            },
        }
    }

    fn handle_error(&self, vm: &VmName) -> impl FnOnce(serde_json::Error) -> StoreError {
        let vm = vm.clone();
        move |source| StoreError::EncodeHandle { vm, source }
    }

    /// The schema version stored in the database.
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        migrations::user_version(&self.connection).map_err(self.query_error("read schema version"))
    }

    /// Runs SQLite's integrity and foreign-key checks.
    pub fn integrity_check(&self) -> Result<IntegrityReport, StoreError> {
        let mut problems = Vec::new();
        let mut statement = self
            .connection
            .prepare("PRAGMA integrity_check")
            .map_err(self.query_error("integrity check"))?;
        let rows = statement
            .query_map([], |row| row.get::<_, String>(0))
            .map_err(self.query_error("integrity check"))?;
        for row in rows {
            let line = row.map_err(self.query_error("integrity check"))?;
            if line != "ok" {
                problems.push(line);
            }
        }
        let mut statement = self
            .connection
            .prepare("PRAGMA foreign_key_check")
            .map_err(self.query_error("foreign key check"))?;
        let rows = statement
            .query_map([], |row| {
                Ok(format!(
                    "row {} of table {} has a dangling reference",
                    row.get::<_, i64>(1)?,
                    row.get::<_, String>(0)?
                ))
            })
            .map_err(self.query_error("foreign key check"))?;
        for row in rows {
            problems.push(row.map_err(self.query_error("foreign key check"))?);
        }
        Ok(IntegrityReport {
            database: self.path.display().to_string(),
            schema_version: self.schema_version()?,
            ok: problems.is_empty(),
            problems,
        })
    }

    /// Whether a VM with this name exists.
    pub fn vm_name_taken(&self, name: &VmName) -> Result<bool, StoreError> {
        self.connection
            .query_row("SELECT 1 FROM vms WHERE name = ?1", [name.as_str()], |_| {
                Ok(())
            })
            .optional()
            .map(|found| found.is_some())
            .map_err(self.query_error("look up VM name"))
    }

    /// Generates a readable VM name no existing VM has.
    pub fn generate_vm_name(&self, rng: &mut fastrand::Rng) -> Result<VmName, StoreError> {
        let mut failure = None;
        let name = banger_api::names::generate_name(rng, |candidate| {
            match self.vm_name_taken(candidate) {
                Ok(taken) => taken,
                Err(error) => {
                    failure = Some(error);
                    false
                }
            }
        });
        match failure {
            Some(error) => Err(error),
            None => Ok(name),
        }
    }
}

#[cfg(test)]
mod tests;
