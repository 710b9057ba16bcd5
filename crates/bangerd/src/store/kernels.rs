//! Rows of the `kernels` table: installed kernels and their artifact paths.

use std::path::PathBuf;

use banger_api::kernels::KernelInfo;
use banger_api::{ImageName, KernelName};
use rusqlite::{OptionalExtension, Row, params};

use super::{Store, StoreError};

/// One installed kernel as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelRow {
    /// Row id.
    pub id: i64,
    /// Unique name.
    pub name: KernelName,
    /// `uname -r`.
    pub version: String,
    /// `catalog:<entry>`, `import` or `image:<name>`.
    pub source: String,
    /// Directory owning the artifacts.
    pub dir: PathBuf,
    /// bzImage, if any.
    pub bzimage: Option<PathBuf>,
    /// ELF vmlinux, if any.
    pub vmlinux: Option<PathBuf>,
    /// The banger initramfs.
    pub initramfs: PathBuf,
    /// The modules disk, if the kernel has modules.
    pub modules_disk: Option<PathBuf>,
    /// Total artifact bytes.
    pub size_bytes: u64,
    /// Unix seconds.
    pub created_at: i64,
}

/// A kernel to insert (no id yet).
pub type NewKernel = KernelRow;

const COLUMNS: &str = "id, name, version, source, dir, bzimage, vmlinux, initramfs, modules_disk, size_bytes, created_at";

fn path(text: Option<String>) -> Option<PathBuf> {
    text.map(PathBuf::from)
}

fn from_row(row: &Row<'_>) -> rusqlite::Result<KernelRow> {
    let name: String = row.get(1)?;
    let name = KernelName::parse(&name).map_err(|error| {
        rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, Box::new(error))
    })?;
    Ok(KernelRow {
        id: row.get(0)?,
        name,
        version: row.get(2)?,
        source: row.get(3)?,
        dir: PathBuf::from(row.get::<_, String>(4)?),
        bzimage: path(row.get(5)?),
        vmlinux: path(row.get(6)?),
        initramfs: PathBuf::from(row.get::<_, String>(7)?),
        modules_disk: path(row.get(8)?),
        size_bytes: u64::try_from(row.get::<_, i64>(9)?).unwrap_or(0),
        created_at: row.get(10)?,
    })
}

fn text(path: &Option<PathBuf>) -> Option<String> {
    path.as_ref().map(|path| path.display().to_string())
}

impl KernelRow {
    /// The API view, given the images that use it.
    pub fn to_info(&self, used_by_images: Vec<ImageName>) -> KernelInfo {
        KernelInfo {
            name: self.name.clone(),
            version: self.version.clone(),
            source: self.source.clone(),
            dir: self.dir.display().to_string(),
            bzimage: text(&self.bzimage),
            vmlinux: text(&self.vmlinux),
            initramfs: self.initramfs.display().to_string(),
            modules_disk: text(&self.modules_disk),
            size_bytes: self.size_bytes,
            created_at: self.created_at,
            used_by_images,
        }
    }
}

impl Store {
    /// Inserts a kernel, or replaces the row of the same name; returns its id.
    pub fn upsert_kernel(&mut self, kernel: &NewKernel) -> Result<i64, StoreError> {
        let size = i64::try_from(kernel.size_bytes).unwrap_or(i64::MAX);
        self.connection
            .query_row(
                "INSERT INTO kernels (name, version, source, dir, bzimage, vmlinux, initramfs, modules_disk, size_bytes, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                 ON CONFLICT (name) DO UPDATE SET version = excluded.version, source = excluded.source,
                   dir = excluded.dir, bzimage = excluded.bzimage, vmlinux = excluded.vmlinux,
                   initramfs = excluded.initramfs, modules_disk = excluded.modules_disk,
                   size_bytes = excluded.size_bytes
                 RETURNING id",
                params![
                    kernel.name.as_str(),
                    kernel.version,
                    kernel.source,
                    kernel.dir.display().to_string(),
                    text(&kernel.bzimage),
                    text(&kernel.vmlinux),
                    kernel.initramfs.display().to_string(),
                    text(&kernel.modules_disk),
                    size,
                    kernel.created_at,
                ],
                |row| row.get(0),
            )
            .map_err(self.query_error("insert kernel"))
    }

    /// The kernel called `name`, if installed.
    pub fn kernel(&self, name: &KernelName) -> Result<Option<KernelRow>, StoreError> {
        self.connection
            .query_row(
                &format!("SELECT {COLUMNS} FROM kernels WHERE name = ?1"),
                [name.as_str()],
                from_row,
            )
            .optional()
            .map_err(self.query_error("look up kernel"))
    }

    /// The kernel with row id `id`.
    pub fn kernel_by_id(&self, id: i64) -> Result<Option<KernelRow>, StoreError> {
        self.connection
            .query_row(
                &format!("SELECT {COLUMNS} FROM kernels WHERE id = ?1"),
                [id],
                from_row,
            )
            .optional()
            .map_err(self.query_error("look up kernel"))
    }

    /// All kernels, by name.
    pub fn kernels(&self) -> Result<Vec<KernelRow>, StoreError> {
        let mut statement = self
            .connection
            .prepare(&format!("SELECT {COLUMNS} FROM kernels ORDER BY name"))
            .map_err(self.query_error("list kernels"))?;
        let rows = statement
            .query_map([], from_row)
            .map_err(self.query_error("list kernels"))?;
        rows.collect::<Result<_, _>>()
            .map_err(self.query_error("list kernels"))
    }

    /// Names of images that boot kernel `id`.
    pub fn images_using_kernel(&self, id: i64) -> Result<Vec<ImageName>, StoreError> {
        let mut statement = self
            .connection
            .prepare("SELECT name FROM images WHERE kernel_id = ?1 ORDER BY name")
            .map_err(self.query_error("list images of kernel"))?;
        let rows = statement
            .query_map([id], |row| {
                let name: String = row.get(0)?;
                ImageName::parse(&name).map_err(|error| {
                    rusqlite::Error::FromSqlConversionFailure(
                        0,
                        rusqlite::types::Type::Text,
                        Box::new(error),
                    )
                })
            })
            .map_err(self.query_error("list images of kernel"))?;
        rows.collect::<Result<_, _>>()
            .map_err(self.query_error("list images of kernel"))
    }

    /// Deletes the kernel row `id`.
    pub fn delete_kernel(&mut self, id: i64) -> Result<(), StoreError> {
        self.connection
            .execute("DELETE FROM kernels WHERE id = ?1", [id])
            .map_err(self.query_error("delete kernel"))?;
        Ok(())
    }
}
