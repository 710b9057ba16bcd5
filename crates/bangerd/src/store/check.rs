//! Inspection of an existing database file before anything writes to it.
//!
//! SQLite turns an empty file into a new database without a word, and
//! switching a connection to WAL rewrites the header of whatever file it
//! opened. So before [`super::Store::open`] configures its connection, the
//! file is looked at without writing: it must be a regular file (not a
//! symlink, FIFO or device), start with the SQLite header, be no shorter than
//! its header says, open read-only, have a schema version this build knows
//! and pass `PRAGMA quick_check`. A file that fails is refused and kept as it
//! is, never deleted, truncated or replaced.
//!
//! The one exception is an empty (0-byte) file while the state directory
//! holds no VM, image or kernel directories: that is a first run interrupted
//! before the schema was written, and it is initialised as a new database.

use std::ffi::OsString;
use std::fmt;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};
use rustix::fs::{FileType, Mode, OFlags};

use super::{StoreError, migrations};

/// The first 16 bytes of every SQLite 3 database.
const MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// The size of SQLite's database header.
const HEADER_LEN: usize = 100;

/// What is wrong with a database file that [`super::Store::open`] refuses.
#[derive(Debug, thiserror::Error)]
pub enum DatabaseProblem {
    /// Something other than a regular file is at the database's path.
    #[error("is not a regular file (it is a {kind})")]
    NotRegular {
        /// What it is instead.
        kind: &'static str,
    },
    /// The file is empty while VM, image or kernel directories exist.
    #[error("is empty (0 bytes)")]
    Empty,
    /// The file does not start with the SQLite header.
    #[error("is not a SQLite database (it does not start with \"SQLite format 3\")")]
    NotSqlite,
    /// The file is shorter than SQLite's 100-byte header.
    #[error("is truncated: {len} bytes, shorter than the 100-byte SQLite header")]
    ShorterThanHeader {
        /// The file's size.
        len: u64,
    },
    /// The file is shorter than its header says.
    #[error("is truncated: {len} bytes, but its header says {expected} bytes")]
    Truncated {
        /// The file's size.
        len: u64,
        /// Page size times page count, from the header.
        expected: u64,
    },
    /// The file could not be read.
    #[error("cannot be read ({what}: {cause})")]
    Unreadable {
        /// What was being done.
        what: &'static str,
        /// The cause, as text so that the recovery hint stays last.
        cause: String,
    },
    /// `PRAGMA quick_check` found damage.
    #[error("is damaged (SQLite's quick_check says: {first}{})", more_problems(*.more))]
    Damaged {
        /// The first problem reported, one line.
        first: String,
        /// How many more problems it reported (counted up to
        /// [`MAX_PROBLEMS`]).
        more: usize,
    },
}

/// What the state directory holds besides the database: the VM, image and
/// kernel directories that a new, empty database would not know about. Its
/// `Display` is the recovery hint of [`StoreError::Unusable`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovery {
    /// The state directory.
    pub state_dir: PathBuf,
    /// Directories in `<state>/vms`.
    pub vms: usize,
    /// Directories in `<state>/images`.
    pub images: usize,
    /// Directories in `<state>/kernels`.
    pub kernels: usize,
}

impl Recovery {
    /// Whether any VM, image or kernel directory exists.
    pub fn has_directories(&self) -> bool {
        self.vms + self.images + self.kernels > 0
    }
}

impl fmt::Display for Recovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn count(n: usize, what: &str) -> String {
            format!(
                "{n} {what} {}",
                if n == 1 { "directory" } else { "directories" }
            )
        }
        if self.has_directories() {
            write!(
                f,
                "The state directory {} holds {} (vms/), {} (images/) and {} (kernels/). \
                 Restore the database from a backup, or move it away to start with an empty database; \
                 your VM directories are kept and are not registered in it",
                self.state_dir.display(),
                count(self.vms, "VM"),
                count(self.images, "image"),
                count(self.kernels, "kernel"),
            )
        } else {
            write!(
                f,
                "Restore it from a backup, or move it away to start with an empty database"
            )
        }
    }
}

/// Counts the VM, image and kernel directories under `state_dir`.
/// Hidden entries (`.partial-*` work in progress) are not counted.
pub(super) fn census(state_dir: &Path) -> Result<Recovery, StoreError> {
    Ok(Recovery {
        state_dir: state_dir.to_owned(),
        vms: count_dirs(&state_dir.join("vms"))?,
        images: count_dirs(&state_dir.join("images"))?,
        kernels: count_dirs(&state_dir.join("kernels"))?,
    })
}

fn count_dirs(dir: &Path) -> Result<usize, StoreError> {
    let list_error = |source| StoreError::StateDir {
        path: dir.to_owned(),
        source,
    };
    let entries = match fs_err::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == ErrorKind::NotFound => return Ok(0),
        Err(error) => return Err(list_error(error)),
    };
    let mut count = 0;
    for entry in entries {
        let entry = entry.map_err(list_error)?;
        if entry.file_name().as_encoded_bytes().starts_with(b".") {
            continue;
        }
        if entry.file_type().map_err(list_error)?.is_dir() {
            count += 1;
        }
    }
    Ok(count)
}

/// Inspects the database at `path` without writing to it. `Ok` means
/// [`super::Store::open`] may go on: the file is absent, empty on a first
/// run, or a healthy SQLite database of a version this build knows.
pub(super) fn inspect(path: &Path, state_dir: &Path) -> Result<(), StoreError> {
    let refuse = |problem| -> Result<(), StoreError> {
        Err(StoreError::Unusable {
            path: path.to_owned(),
            problem,
            recovery: census(state_dir)?,
        })
    };
    let unreadable = |what, cause: &dyn fmt::Display| DatabaseProblem::Unreadable {
        what,
        cause: cause.to_string(),
    };
    // O_NOFOLLOW and O_NONBLOCK: a symlink is refused and a FIFO cannot
    // hang the open; fstat then says what the file is.
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let fd = match rustix::fs::open(path, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Ok(()),
        Err(rustix::io::Errno::LOOP) => {
            return refuse(DatabaseProblem::NotRegular {
                kind: "symbolic link",
            });
        }
        Err(errno) => return refuse(unreadable("open", &std::io::Error::from(errno))),
    };
    let stat = match rustix::fs::fstat(&fd) {
        Ok(stat) => stat,
        Err(errno) => return refuse(unreadable("stat", &std::io::Error::from(errno))),
    };
    let kind = FileType::from_raw_mode(stat.st_mode);
    if kind != FileType::RegularFile {
        return refuse(DatabaseProblem::NotRegular {
            kind: file_type_name(kind),
        });
    }
    let len = u64::try_from(stat.st_size).unwrap_or(0);
    if len == 0 {
        return if census(state_dir)?.has_directories() {
            refuse(DatabaseProblem::Empty)
        } else {
            Ok(())
        };
    }
    let mut header = [0_u8; HEADER_LEN];
    let mut filled = 0;
    while filled < HEADER_LEN {
        match rustix::io::read(&fd, &mut header[filled..]) {
            Ok(0) => break,
            Ok(read) => filled += read,
            Err(rustix::io::Errno::INTR) => {}
            Err(errno) => return refuse(unreadable("read", &std::io::Error::from(errno))),
        }
    }
    drop(fd);
    let magic_len = filled.min(MAGIC.len());
    if header[..magic_len] != MAGIC[..magic_len] {
        return refuse(DatabaseProblem::NotSqlite);
    }
    if filled < HEADER_LEN {
        return refuse(DatabaseProblem::ShorterThanHeader { len });
    }
    if let Some(expected) = size_from_header(&header) {
        if expected > len && !has_journal(path) {
            return refuse(DatabaseProblem::Truncated { len, expected });
        }
    }

    // Read-only: nothing below can write the database file (a WAL file or
    // its index may be read or created next to it; the database is not).
    let connection = match Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    ) {
        Ok(connection) => connection,
        Err(error) => return refuse(unreadable("open read-only", &error)),
    };
    let found = match migrations::user_version(&connection) {
        Ok(found) => found,
        Err(error) => return refuse(unreadable("read the schema version", &error)),
    };
    if found > migrations::LATEST_VERSION {
        return Err(migrations::newer_schema(&connection, path, found));
    }
    if let Err(error) = connection.query_row("SELECT count(*) FROM sqlite_schema", [], |row| {
        row.get::<_, i64>(0)
    }) {
        return refuse(unreadable("read the schema", &error));
    }
    match quick_check(&connection) {
        Ok(None) => Ok(()),
        Ok(Some((first, more))) => refuse(DatabaseProblem::Damaged { first, more }),
        Err(error) => refuse(unreadable("run quick_check", &error)),
    }
}

/// Problems of a damaged database counted beyond the first.
pub const MAX_PROBLEMS: usize = 1000;

/// " and N more problems" for the [`DatabaseProblem::Damaged`] message.
fn more_problems(more: usize) -> String {
    match more {
        0 => String::new(),
        1 => "; 1 more problem".to_owned(),
        n => format!("; {n} more problems"),
    }
}

/// The first problem `PRAGMA quick_check` reports (its first line) and how
/// many more it reports, or `None` when it says `ok`. One line only: a
/// damaged file can yield hundreds of lines in one row, and the refusal
/// must stay short enough that the database path and the recovery hint
/// around it are read (the CLI shows only the end of a failed start's
/// output).
fn quick_check(connection: &Connection) -> rusqlite::Result<Option<(String, usize)>> {
    let mut statement = connection.prepare("PRAGMA quick_check")?;
    let mut rows = statement.query([])?;
    let mut first = None;
    let mut more = 0usize;
    while let Some(row) = rows.next()? {
        let text: String = row.get(0)?;
        if text == "ok" {
            continue;
        }
        for line in text.lines().filter(|line| !line.trim().is_empty()) {
            if first.is_none() {
                first = Some(line.trim().to_owned());
            } else if more < MAX_PROBLEMS {
                more += 1;
            }
        }
    }
    Ok(first.map(|first| (first, more)))
}

/// Page size times page count, when the header's page count is valid (its
/// "version-valid-for" matches the change counter; older writers left it
/// stale).
fn size_from_header(header: &[u8; HEADER_LEN]) -> Option<u64> {
    let be32 = |at: usize| {
        u32::from_be_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
    };
    let page_size = match u16::from_be_bytes([header[16], header[17]]) {
        1 => 65_536,
        size => u64::from(size),
    };
    let pages = u64::from(be32(28));
    let change_counter = be32(24);
    let valid_for = be32(92);
    (pages > 0 && page_size > 0 && change_counter == valid_for).then_some(page_size * pages)
}

/// Whether a WAL or rollback journal next to the database holds pages: then
/// the file may legitimately be shorter than its header says until SQLite
/// replays the journal.
fn has_journal(path: &Path) -> bool {
    ["-wal", "-journal"].iter().any(|suffix| {
        let mut name = OsString::from(path.as_os_str());
        name.push(suffix);
        fs_err::metadata(Path::new(&name)).is_ok_and(|metadata| metadata.len() > 0)
    })
}

fn file_type_name(kind: FileType) -> &'static str {
    match kind {
        FileType::RegularFile => "regular file",
        FileType::Directory => "directory",
        FileType::Symlink => "symbolic link",
        FileType::Fifo => "FIFO",
        FileType::Socket => "socket",
        FileType::CharacterDevice => "character device",
        FileType::BlockDevice => "block device",
        FileType::Unknown => "file of unknown type",
    }
}
