//! Rows of the `vms` table. Every state change is one durable commit.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use banger_api::VmName;
use banger_api::vms::VmState;
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
    pub image_name: String,
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
    pub backend: Option<String>,
    /// JSON of the `RunningVm` handle while the VMM may be running.
    pub runtime: Option<String>,
    /// Why the last step failed.
    pub last_error: Option<String>,
    /// Whether the VM may reach the outside world through NAT.
    pub nat: bool,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
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

fn from_row(row: &Row<'_>) -> rusqlite::Result<VmRow> {
    let name: String = row.get(1)?;
    let state: String = row.get(2)?;
    let ip: String = row.get(8)?;
    Ok(VmRow {
        id: row.get(0)?,
        name: VmName::parse(&name).map_err(|error| conversion(1, error))?,
        state: VmState::parse(&state).ok_or_else(|| conversion(2, UnknownState(state.clone())))?,
        image_id: row.get(3)?,
        image_name: row.get(4)?,
        vcpus: u8::try_from(row.get::<_, i64>(5)?).unwrap_or(1),
        memory_mib: u32::try_from(row.get::<_, i64>(6)?).unwrap_or(0),
        disk_bytes: u64::try_from(row.get::<_, i64>(7)?).unwrap_or(0),
        ip: ip.parse().map_err(|error| conversion(8, error))?,
        mac: row.get(9)?,
        vsock_cid: u32::try_from(row.get::<_, i64>(10)?).unwrap_or(0),
        tap: row.get(11)?,
        dir: PathBuf::from(row.get::<_, String>(12)?),
        backend: row.get(13)?,
        runtime: row.get(14)?,
        last_error: row.get(15)?,
        created_at: row.get(16)?,
        updated_at: row.get(17)?,
        nat: row.get::<_, i64>(18)? == 1,
    })
}

impl Store {
    /// Inserts a new VM; returns its id. Fails on a taken name, IP or CID.
    pub fn insert_vm(&mut self, vm: &VmRow) -> Result<i64, StoreError> {
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
                    vm.image_name,
                    i64::from(vm.vcpus),
                    i64::from(vm.memory_mib),
                    i64::try_from(vm.disk_bytes).unwrap_or(i64::MAX),
                    vm.ip.to_string(),
                    vm.mac,
                    i64::from(vm.vsock_cid),
                    vm.tap,
                    vm.dir.display().to_string(),
                    vm.backend,
                    vm.runtime,
                    vm.last_error,
                    vm.created_at,
                    vm.updated_at,
                    i64::from(vm.nat),
                ],
                |row| row.get(0),
            )
            .map_err(self.query_error("insert VM"))
    }

    /// Writes every mutable field of `vm` (by id) and bumps `updated_at`.
    pub fn update_vm(&mut self, vm: &VmRow) -> Result<(), StoreError> {
        self.connection
            .execute(
                "UPDATE vms SET state = ?2, image_id = ?3, vcpus = ?4, memory_mib = ?5, disk_bytes = ?6, tap = ?7,
                   backend = ?8, runtime = ?9, last_error = ?10, updated_at = ?11, nat = ?12 WHERE id = ?1",
                params![
                    vm.id,
                    vm.state.as_str(),
                    vm.image_id,
                    i64::from(vm.vcpus),
                    i64::from(vm.memory_mib),
                    i64::try_from(vm.disk_bytes).unwrap_or(i64::MAX),
                    vm.tap,
                    vm.backend,
                    vm.runtime,
                    vm.last_error,
                    crate::store::unix_now(),
                    i64::from(vm.nat),
                ],
            )
            .map_err(self.query_error("update VM"))?;
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
        self.connection
            .execute("DELETE FROM vms WHERE id = ?1", [id])
            .map_err(self.query_error("delete VM"))?;
        Ok(())
    }
}
