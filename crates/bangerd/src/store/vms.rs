//! Rows of the `vms` table. Every state change is one durable commit.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use banger_api::events::EventKind;
use banger_api::vms::{VmBackend, VmState};
use banger_api::{ImageName, VmName};
use banger_vmm::RunningVm;
use rusqlite::{OptionalExtension, Row, params};

use super::{Store, StoreError};

/// One VM as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmRow {
    /// Row id (0 before insertion).
    pub id: i64,
    /// Unique name.
    pub name: VmName,
    /// Lifecycle state.
    pub state: VmState,
    /// Image row, unless the image was force-deleted.
    pub image_id: Option<i64>,
    /// Image name at creation (kept for display after a forced image delete).
    pub image_name: ImageName,
    /// Virtual CPUs.
    pub vcpus: u8,
    /// Memory in MiB.
    pub memory_mib: u32,
    /// Work disk size in bytes.
    pub disk_bytes: u64,
    /// Guest address.
    pub ip: Ipv4Addr,
    /// Guest MAC.
    pub mac: String,
    /// vsock context id.
    pub vsock_cid: u32,
    /// TAP device while running.
    pub tap: Option<String>,
    /// VM directory (disks, keys, console log).
    pub dir: PathBuf,
    /// Backend of the current or last run.
    pub backend: Option<VmBackend>,
    /// The VMM's handle while it may be running, parsed when the row is read.
    pub vmm: VmmHandle,
    /// Why the last step failed.
    pub last_error: Option<String>,
    /// Whether the VM may reach the outside world through NAT.
    pub nat: bool,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
}

/// A VM's recorded VMM handle (the `runtime` column, JSON of
/// `banger_vmm::RunningVm`). Parsed once, here: the rest of the daemon never
/// sees the JSON, and a damaged record is a value it must handle, never a
/// silent "not running".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmmHandle {
    /// No VMM is recorded.
    None,
    /// The VMM recorded when it started.
    Recorded(Box<RunningVm>),
    /// The column holds something that is not a handle (a damaged database
    /// or a record from an incompatible banger). The VMM may still run.
    Corrupt {
        /// The stored text, written back unchanged.
        raw: String,
        /// Why it does not parse.
        error: String,
    },
}

impl VmmHandle {
    fn parse(column: Option<String>) -> Self {
        match column {
            None => Self::None,
            Some(raw) => match serde_json::from_str::<RunningVm>(&raw) {
                Ok(running) => Self::Recorded(Box::new(running)),
                Err(error) => Self::Corrupt {
                    raw,
                    error: error.to_string(),
                },
            },
        }
    }

    fn to_column(&self) -> Result<Option<String>, serde_json::Error> {
        match self {
            Self::None => Ok(None),
            Self::Recorded(running) => serde_json::to_string(running).map(Some),
            Self::Corrupt { raw, .. } => Ok(Some(raw.clone())),
        }
    }

    /// The recorded VMM, if there is a readable one.
    pub fn recorded(&self) -> Option<&RunningVm> {
        match self {
            Self::Recorded(running) => Some(running),
            Self::None | Self::Corrupt { .. } => None,
        }
    }

    /// Whether nothing is recorded.
    pub fn is_none(&self) -> bool {
        matches!(self, Self::None)
    }
}

const COLUMNS: &str = "id, name, state, image_id, image_name, vcpus, memory_mib, disk_bytes, ip, mac, vsock_cid, tap, dir, backend, runtime, last_error, created_at, updated_at, nat";

fn conversion(
    column: usize,
    error: impl std::error::Error + Send + Sync + 'static,
) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(column, rusqlite::types::Type::Text, Box::new(error))
}

#[derive(Debug, thiserror::Error)]
#[error("unknown VM state {0:?}")]
struct UnknownState(String);

#[derive(Debug, thiserror::Error)]
#[error("unknown VM backend {0:?}")]
struct UnknownBackend(String);

fn from_row(row: &Row<'_>) -> rusqlite::Result<VmRow> {
    let name: String = row.get(1)?;
    let state: String = row.get(2)?;
    let ip: String = row.get(8)?;
    Ok(VmRow {
        id: row.get(0)?,
        name: VmName::parse(&name).map_err(|error| conversion(1, error))?,
        state: VmState::parse(&state).ok_or_else(|| conversion(2, UnknownState(state.clone())))?,
        image_id: row.get(3)?,
        image_name: ImageName::parse(&row.get::<_, String>(4)?)
            .map_err(|error| conversion(4, error))?,
        vcpus: u8::try_from(row.get::<_, i64>(5)?).unwrap_or(1),
        memory_mib: u32::try_from(row.get::<_, i64>(6)?).unwrap_or(0),
        disk_bytes: u64::try_from(row.get::<_, i64>(7)?).unwrap_or(0),
        ip: ip.parse().map_err(|error| conversion(8, error))?,
        mac: row.get(9)?,
        vsock_cid: u32::try_from(row.get::<_, i64>(10)?).unwrap_or(0),
        tap: row.get(11)?,
        dir: PathBuf::from(row.get::<_, String>(12)?),
        backend: row
            .get::<_, Option<String>>(13)?
            .map(|text| {
                VmBackend::parse(&text).ok_or_else(|| conversion(13, UnknownBackend(text.clone())))
            })
            .transpose()?,
        vmm: VmmHandle::parse(row.get(14)?),
        last_error: row.get(15)?,
        created_at: row.get(16)?,
        updated_at: row.get(17)?,
        nat: row.get::<_, i64>(18)? == 1,
    })
}

/// Why writing a row's fields failed.
pub(super) enum WriteError {
    Encode(serde_json::Error),
    Query(rusqlite::Error),
}

/// Writes every mutable field of `vm` but its state (by id) and bumps
/// `updated_at`; shared by [`Store::update_vm`] and [`Store::set_vm_state`].
fn write_fields(connection: &rusqlite::Connection, vm: &VmRow) -> Result<(), WriteError> {
    let runtime = vm.vmm.to_column().map_err(WriteError::Encode)?;
    connection
        .execute(
            "UPDATE vms SET image_id = ?2, vcpus = ?3, memory_mib = ?4, disk_bytes = ?5, tap = ?6,
               backend = ?7, runtime = ?8, last_error = ?9, updated_at = ?10, nat = ?11 WHERE id = ?1",
            params![
                vm.id,
                vm.image_id,
                i64::from(vm.vcpus),
                i64::from(vm.memory_mib),
                i64::try_from(vm.disk_bytes).unwrap_or(i64::MAX),
                vm.tap,
                vm.backend.map(VmBackend::as_str),
                runtime,
                vm.last_error,
                crate::store::unix_now(),
                i64::from(vm.nat),
            ],
        )
        .map_err(WriteError::Query)?;
    Ok(())
}

impl Store {
    /// Inserts a new VM, in state `created`; returns its id. Fails on a
    /// taken name, IP or CID.
    pub fn insert_vm(&mut self, vm: &VmRow) -> Result<i64, StoreError> {
        if vm.state != VmState::Created {
            return Err(StoreError::NotCreated {
                vm: vm.name.clone(),
                state: vm.state,
            });
        }
        let runtime = vm.vmm.to_column().map_err(self.handle_error(&vm.name))?;
        self.connection
            .query_row(
                &format!(
                    "INSERT INTO vms ({}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18) RETURNING id",
                    &COLUMNS["id, ".len()..]
                ),
                params![
                    vm.name.as_str(),
                    vm.state.as_str(),
                    vm.image_id,
                    vm.image_name.as_str(),
                    i64::from(vm.vcpus),
                    i64::from(vm.memory_mib),
                    i64::try_from(vm.disk_bytes).unwrap_or(i64::MAX),
                    vm.ip.to_string(),
                    vm.mac,
                    i64::from(vm.vsock_cid),
                    vm.tap,
                    vm.dir.display().to_string(),
                    vm.backend.map(VmBackend::as_str),
                    runtime,
                    vm.last_error,
                    vm.created_at,
                    vm.updated_at,
                    i64::from(vm.nat),
                ],
                |row| row.get(0),
            )
            .map_err(self.query_error("insert VM"))
            .inspect(|_| {
                self.publish(EventKind::VmCreated {
                    vm: vm.name.clone(),
                })
            })
    }

    /// Writes every mutable field of `vm` but its state (by id) and bumps
    /// `updated_at`. States change only through [`Store::set_vm_state`].
    pub fn update_vm(&mut self, vm: &VmRow) -> Result<(), StoreError> {
        write_fields(&self.connection, vm).map_err(self.write_error(&vm.name))
    }

    /// The one way a VM's state changes: checks the move against the state
    /// machine (`VmState::valid_transition`), then writes `to` together with
    /// every other field of `vm`, in one commit, only if the stored state
    /// is still the one `vm` was read with. On success `vm.state` is `to`.
    pub fn set_vm_state(&mut self, vm: &mut VmRow, to: VmState) -> Result<(), StoreError> {
        let from = vm.state;
        if !VmState::valid_transition(from, to) {
            return Err(StoreError::InvalidTransition {
                vm: vm.name.clone(),
                from,
                to,
            });
        }
        // One transaction: the compare-and-swap of the state, then the
        // other fields, committed together or not at all.
        // `&mut self` already makes this the only user of the connection.
        let transaction = self
            .connection
            .unchecked_transaction()
            .map_err(self.query_error("change VM state"))?;
        let changed = transaction
            .execute(
                "UPDATE vms SET state = ?3 WHERE id = ?1 AND state = ?2",
                params![vm.id, from.as_str(), to.as_str()],
            )
            .map_err(self.query_error("change VM state"))?;
        if changed == 0 {
            return Err(StoreError::StateChanged {
                vm: vm.name.clone(),
                expected: from,
            });
        }
        write_fields(&transaction, vm).map_err(self.write_error(&vm.name))?;
        transaction
            .commit()
            .map_err(self.query_error("change VM state"))?;
        vm.state = to;
        self.publish(EventKind::VmState {
            vm: vm.name.clone(),
            from,
            to,
            reason: vm.last_error.clone(),
        });
        Ok(())
    }

    /// The VM called `name`.
    pub fn vm(&self, name: &VmName) -> Result<Option<VmRow>, StoreError> {
        self.connection
            .query_row(
                &format!("SELECT {COLUMNS} FROM vms WHERE name = ?1"),
                [name.as_str()],
                from_row,
            )
            .optional()
            .map_err(self.query_error("look up VM"))
    }

    /// All VMs, by name.
    pub fn vms(&self) -> Result<Vec<VmRow>, StoreError> {
        let mut statement = self
            .connection
            .prepare(&format!("SELECT {COLUMNS} FROM vms ORDER BY name"))
            .map_err(self.query_error("list VMs"))?;
        let rows = statement
            .query_map([], from_row)
            .map_err(self.query_error("list VMs"))?;
        rows.collect::<Result<_, _>>()
            .map_err(self.query_error("list VMs"))
    }

    /// Deletes VM row `id`.
    pub fn delete_vm(&mut self, id: i64) -> Result<(), StoreError> {
        let name: Option<String> = self
            .connection
            .query_row(
                "DELETE FROM vms WHERE id = ?1 RETURNING name",
                [id],
                |row| row.get(0),
            )
            .optional()
            .map_err(self.query_error("delete VM"))?;
        if let Some(vm) = name.as_deref().and_then(|name| VmName::parse(name).ok()) {
            self.publish(EventKind::VmDeleted { vm });
        }
        Ok(())
    }
}
