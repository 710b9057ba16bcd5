//! Rows of the `images` table.

use std::path::PathBuf;

use banger_api::images::OciOrigin;
use banger_api::{ImageName, VmName};
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{Store, StoreError};

/// One registered image as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRow {
    /// Row id (0 before insertion).
    pub id: i64,
    /// Unique name.
    pub name: ImageName,
    /// Whether banger owns its files.
    pub managed: bool,
    /// Managed images: the directory holding their files.
    pub dir: Option<PathBuf>,
    /// Base root filesystem.
    pub rootfs: PathBuf,
    /// Work seed, if any.
    pub work_seed: Option<PathBuf>,
    /// The kernel row it boots.
    pub kernel_id: i64,
    /// A custom initrd, if any.
    pub initrd: Option<PathBuf>,
    /// Apparent bytes of its files.
    pub size_bytes: u64,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
    /// Pulled images: their source and container config.
    pub oci: Option<OciOrigin>,
}

const COLUMNS: &str = "id, name, managed, dir, rootfs, work_seed, kernel_id, initrd, size_bytes, created_at, updated_at, oci";

fn from_row(row: &Row<'_>) -> rusqlite::Result<ImageRow> {
    let name: String = row.get(1)?;
    let name = ImageName::parse(&name).map_err(|error| {
        rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, Box::new(error))
    })?;
    Ok(ImageRow {
        id: row.get(0)?,
        name,
        managed: row.get::<_, i64>(2)? == 1,
        dir: row.get::<_, Option<String>>(3)?.map(PathBuf::from),
        rootfs: PathBuf::from(row.get::<_, String>(4)?),
        work_seed: row.get::<_, Option<String>>(5)?.map(PathBuf::from),
        kernel_id: row.get(6)?,
        initrd: row.get::<_, Option<String>>(7)?.map(PathBuf::from),
        size_bytes: u64::try_from(row.get::<_, i64>(8)?).unwrap_or(0),
        created_at: row.get(9)?,
        updated_at: row.get(10)?,
        oci: row
            .get::<_, Option<String>>(11)?
            .map(|text| serde_json::from_str(&text))
            .transpose()
            .map_err(|error| {
                rusqlite::Error::FromSqlConversionFailure(
                    11,
                    rusqlite::types::Type::Text,
                    Box::new(error),
                )
            })?,
    })
}

fn text(path: &Option<PathBuf>) -> Option<String> {
    path.as_ref().map(|path| path.display().to_string())
}

/// Inserts or updates the image row of the same name; returns its id.
fn upsert(connection: &Connection, image: &ImageRow) -> rusqlite::Result<i64> {
    connection.query_row(
        "INSERT INTO images (name, managed, dir, rootfs, work_seed, kernel_id, initrd, size_bytes, created_at, updated_at, oci)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
         ON CONFLICT (name) DO UPDATE SET managed = excluded.managed, dir = excluded.dir,
           rootfs = excluded.rootfs, work_seed = excluded.work_seed, kernel_id = excluded.kernel_id,
           initrd = excluded.initrd, size_bytes = excluded.size_bytes, updated_at = excluded.updated_at,
           oci = excluded.oci
         RETURNING id",
        params![
            image.name.as_str(),
            i64::from(image.managed),
            text(&image.dir),
            image.rootfs.display().to_string(),
            text(&image.work_seed),
            image.kernel_id,
            text(&image.initrd),
            i64::try_from(image.size_bytes).unwrap_or(i64::MAX),
            image.created_at,
            image.updated_at,
            image
                .oci
                .as_ref()
                .and_then(|oci| serde_json::to_string(oci).ok()),
        ],
        |row| row.get(0),
    )
}

impl Store {
    /// Inserts an image or updates the row of the same name; returns its id.
    pub fn upsert_image(&mut self, image: &ImageRow) -> Result<i64, StoreError> {
        upsert(&self.connection, image).map_err(self.query_error("save image"))
    }

    /// Saves `image` (as [`Store::upsert_image`]) and deletes kernel row
    /// `unused_kernel` (one the image used before and no image uses now) in
    /// one transaction: both happen or neither does. The kernels table
    /// refuses the delete while any image still uses that kernel.
    pub fn upsert_image_dropping_kernel(
        &mut self,
        image: &ImageRow,
        unused_kernel: Option<i64>,
    ) -> Result<i64, StoreError> {
        let transaction = self
            .connection
            .unchecked_transaction()
            .map_err(self.query_error("save image"))?;
        let id = upsert(&transaction, image).map_err(self.query_error("save image"))?;
        if let Some(kernel) = unused_kernel {
            transaction
                .execute("DELETE FROM kernels WHERE id = ?1", [kernel])
                .map_err(self.query_error("delete the kernel the image no longer uses"))?;
        }
        transaction
            .commit()
            .map_err(self.query_error("save image"))?;
        Ok(id)
    }

    /// Deletes image row `id` and, if given, kernel row `kernel` (the one it
    /// owned) in one transaction: both go or neither does. VMs using the
    /// image keep their rows, without image.
    pub fn delete_image_and_kernel(
        &mut self,
        id: i64,
        kernel: Option<i64>,
    ) -> Result<(), StoreError> {
        let transaction = self
            .connection
            .unchecked_transaction()
            .map_err(self.query_error("delete image"))?;
        transaction
            .execute("DELETE FROM images WHERE id = ?1", [id])
            .map_err(self.query_error("delete image"))?;
        if let Some(kernel) = kernel {
            transaction
                .execute("DELETE FROM kernels WHERE id = ?1", [kernel])
                .map_err(self.query_error("delete the image's kernel"))?;
        }
        transaction
            .commit()
            .map_err(self.query_error("delete image"))
    }

    /// The image called `name`.
    pub fn image(&self, name: &ImageName) -> Result<Option<ImageRow>, StoreError> {
        self.connection
            .query_row(
                &format!("SELECT {COLUMNS} FROM images WHERE name = ?1"),
                [name.as_str()],
                from_row,
            )
            .optional()
            .map_err(self.query_error("look up image"))
    }

    /// All images, by name.
    pub fn images(&self) -> Result<Vec<ImageRow>, StoreError> {
        let mut statement = self
            .connection
            .prepare(&format!("SELECT {COLUMNS} FROM images ORDER BY name"))
            .map_err(self.query_error("list images"))?;
        let rows = statement
            .query_map([], from_row)
            .map_err(self.query_error("list images"))?;
        rows.collect::<Result<_, _>>()
            .map_err(self.query_error("list images"))
    }

    /// Names of VMs created from image `id`.
    pub fn vms_using_image(&self, id: i64) -> Result<Vec<VmName>, StoreError> {
        let mut statement = self
            .connection
            .prepare("SELECT name FROM vms WHERE image_id = ?1 ORDER BY name")
            .map_err(self.query_error("list VMs of image"))?;
        let rows = statement
            .query_map([id], |row| {
                let name: String = row.get(0)?;
                VmName::parse(&name).map_err(|error| {
                    rusqlite::Error::FromSqlConversionFailure(
                        0,
                        rusqlite::types::Type::Text,
                        Box::new(error),
                    )
                })
            })
            .map_err(self.query_error("list VMs of image"))?;
        rows.collect::<Result<_, _>>()
            .map_err(self.query_error("list VMs of image"))
    }

    /// Deletes image row `id` (VMs using it keep their rows, without image).
    pub fn delete_image(&mut self, id: i64) -> Result<(), StoreError> {
        self.connection
            .execute("DELETE FROM images WHERE id = ?1", [id])
            .map_err(self.query_error("delete image"))?;
        Ok(())
    }
}
