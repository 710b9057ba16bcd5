//! Rows of the `sessions` table: what the daemon remembers about each guest
//! session (the guest agent owns the process itself).
//!
//! Every session started, ended (a running row becoming exited or lost)
//! and removed passes through here, so this is where those events are
//! published, as the VM events are in `vms`.

use banger_api::events::EventKind;
use banger_api::sessions::{SessionState, StdinMode};
use banger_api::{SessionName, VmName};
use rusqlite::{OptionalExtension, Row, params};

use super::{Store, StoreError};

/// One session as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    /// Row id (0 before insertion).
    pub id: i64,
    /// The VM's row id.
    pub vm_id: i64,
    /// Name, unique within the VM.
    pub name: SessionName,
    /// The command and its arguments.
    pub command: Vec<String>,
    /// Working directory in the guest.
    pub cwd: String,
    /// What stdin is.
    pub stdin_mode: StdinMode,
    /// Last known state.
    pub state: SessionState,
    /// Guest pid.
    pub pid: Option<u32>,
    /// Exit code, once exited normally.
    pub exit_code: Option<i32>,
    /// Signal number, once ended by a signal.
    pub signal: Option<i32>,
    /// Unix seconds.
    pub created_at: i64,
}

const COLUMNS: &str =
    "id, vm_id, name, command, cwd, stdin_mode, state, pid, exit_code, signal, created_at";

#[derive(Debug, thiserror::Error)]
#[error("unknown session {what} {value:?}")]
struct UnknownValue {
    what: &'static str,
    value: String,
}

fn conversion(
    column: usize,
    error: impl std::error::Error + Send + Sync + 'static,
) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, Box::new(error))
}

fn from_row(row: &Row<'_>) -> rusqlite::Result<SessionRow> {
    let name: String = row.get(2)?;
    let command: String = row.get(3)?;
    let stdin_mode: String = row.get(5)?;
    let state: String = row.get(6)?;
    Ok(SessionRow {
        id: row.get(0)?,
        vm_id: row.get(1)?,
        name: SessionName::parse(&name).map_err(|error| conversion(2, error))?,
        command: serde_json::from_str(&command).map_err(|error| conversion(3, error))?,
        cwd: row.get(4)?,
        stdin_mode: StdinMode::parse(&stdin_mode).ok_or_else(|| {
            conversion(
                5,
                UnknownValue {
                    what: "stdin mode",
                    value: stdin_mode.clone(),
                },
            )
        })?,
        state: SessionState::parse(&state).ok_or_else(|| {
            conversion(
                6,
                UnknownValue {
                    what: "state",
                    value: state.clone(),
                },
            )
        })?,
        pid: row
            .get::<_, Option<i64>>(7)?
            .and_then(|pid| u32::try_from(pid).ok()),
        exit_code: row.get(8)?,
        signal: row.get(9)?,
        created_at: row.get(10)?,
    })
}

impl Store {
    /// Inserts a session; fails if the VM already has one of that name.
    pub fn insert_session(&mut self, session: &SessionRow) -> Result<i64, StoreError> {
        let now = super::unix_now();
        self.connection
            .query_row(
                "INSERT INTO sessions (vm_id, name, command, cwd, stdin_mode, state, pid, exit_code, signal, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) RETURNING id",
                params![
                    session.vm_id,
                    session.name.as_str(),
                    serde_json::Value::from(session.command.clone()).to_string(),
                    session.cwd,
                    session.stdin_mode.as_str(),
                    session.state.as_str(),
                    session.pid.map(i64::from),
                    session.exit_code,
                    session.signal,
                    session.created_at,
                    now,
                ],
                |row| row.get(0),
            )
            .map_err(self.query_error("insert session"))
            .inspect(|_| {
                if let Some(vm) = self.event_vm_name(session.vm_id) {
                    self.publish(EventKind::SessionStarted {
                        vm: vm.clone(),
                        session: session.name.clone(),
                    });
                    // A process that ended before it was recorded.
                    self.publish_ended(vm, session);
                }
            })
    }

    /// The name of VM `vm_id`, for an event; `None` when nobody listens
    /// (no bus) or the VM is gone.
    fn event_vm_name(&self, vm_id: i64) -> Option<VmName> {
        self.events.as_ref()?;
        let name: String = self
            .connection
            .query_row("SELECT name FROM vms WHERE id = ?1", [vm_id], |row| {
                row.get(0)
            })
            .ok()?;
        VmName::parse(&name).ok()
    }

    /// Publishes `session_ended` if `session` is no longer running.
    fn publish_ended(&self, vm: VmName, session: &SessionRow) {
        if session.state != SessionState::Running {
            self.publish(EventKind::SessionEnded {
                vm,
                session: session.name.clone(),
                state: session.state,
                exit_code: session.exit_code,
                signal: session.signal,
            });
        }
    }

    /// Records a session's new state (by id).
    pub fn update_session_state(&mut self, session: &SessionRow) -> Result<(), StoreError> {
        let was_running = self.events.is_some()
            && self
                .connection
                .query_row(
                    "SELECT state FROM sessions WHERE id = ?1",
                    [session.id],
                    |row| row.get::<_, String>(0),
                )
                .optional()
                .map_err(self.query_error("read session state"))?
                .is_some_and(|state| state == SessionState::Running.as_str());
        self.connection
            .execute(
                "UPDATE sessions SET state = ?2, exit_code = ?3, signal = ?4, updated_at = ?5 WHERE id = ?1",
                params![
                    session.id,
                    session.state.as_str(),
                    session.exit_code,
                    session.signal,
                    super::unix_now(),
                ],
            )
            .map_err(self.query_error("update session"))?;
        if was_running {
            if let Some(vm) = self.event_vm_name(session.vm_id) {
                self.publish_ended(vm, session);
            }
        }
        Ok(())
    }

    /// The session `name` of VM `vm_id`.
    pub fn session(
        &self,
        vm_id: i64,
        name: &SessionName,
    ) -> Result<Option<SessionRow>, StoreError> {
        self.connection
            .query_row(
                &format!("SELECT {COLUMNS} FROM sessions WHERE vm_id = ?1 AND name = ?2"),
                params![vm_id, name.as_str()],
                from_row,
            )
            .optional()
            .map_err(self.query_error("look up session"))
    }

    /// The sessions of VM `vm_id`, oldest first.
    pub fn sessions(&self, vm_id: i64) -> Result<Vec<SessionRow>, StoreError> {
        let mut statement = self
            .connection
            .prepare(&format!(
                "SELECT {COLUMNS} FROM sessions WHERE vm_id = ?1 ORDER BY created_at, id"
            ))
            .map_err(self.query_error("list sessions"))?;
        let rows = statement
            .query_map([vm_id], from_row)
            .map_err(self.query_error("list sessions"))?;
        rows.collect::<Result<_, _>>()
            .map_err(self.query_error("list sessions"))
    }

    /// Marks every running session of VM `vm_id` as lost (the VM stopped).
    pub fn mark_sessions_lost(&mut self, vm_id: i64) -> Result<usize, StoreError> {
        let lost: Vec<String> = {
            let mut statement = self
                .connection
                .prepare(
                    "UPDATE sessions SET state = 'lost', updated_at = ?2 WHERE vm_id = ?1 AND state = 'running' RETURNING name",
                )
                .map_err(self.query_error("mark sessions lost"))?;
            let names = statement
                .query_map(params![vm_id, super::unix_now()], |row| row.get(0))
                .map_err(self.query_error("mark sessions lost"))?;
            names
                .collect::<Result<_, _>>()
                .map_err(self.query_error("mark sessions lost"))?
        };
        if let Some(vm) = self.event_vm_name(vm_id) {
            for name in &lost {
                if let Ok(session) = SessionName::parse(name) {
                    self.publish(EventKind::SessionEnded {
                        vm: vm.clone(),
                        session,
                        state: SessionState::Lost,
                        exit_code: None,
                        signal: None,
                    });
                }
            }
        }
        Ok(lost.len())
    }

    /// Deletes session row `id`.
    pub fn delete_session(&mut self, id: i64) -> Result<(), StoreError> {
        let deleted: Option<(i64, String)> = self
            .connection
            .query_row(
                "DELETE FROM sessions WHERE id = ?1 RETURNING vm_id, name",
                [id],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()
            .map_err(self.query_error("delete session"))?;
        if let Some((vm_id, name)) = deleted {
            if let (Some(vm), Ok(session)) = (self.event_vm_name(vm_id), SessionName::parse(&name))
            {
                self.publish(EventKind::SessionRemoved { vm, session });
            }
        }
        Ok(())
    }
}
