//! Writing entries into one tar stream, counting bytes and files.
//!
//! Headers carry the host's mode bits (so the executable bit survives)
//! and mtimes; ownership is left to the guest (`tar --no-same-owner`).
//! Symlinks are stored as symlinks, never followed.

use std::io::{self, Read, Write};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use tar::{Builder, EntryType, Header, HeaderMode};

/// How far a transfer is; handed to the progress callback.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Entries (files, symlinks, directories) written so far.
    pub files_sent: u64,
    /// Entries planned; grows once when the shallow `.git` is appended.
    pub files_total: u64,
    /// Tar stream bytes written so far (headers and padding included).
    pub bytes_sent: u64,
}

/// Emit a progress update at least this often while one big file streams.
const PROGRESS_EVERY: u64 = 4 << 20;

/// A writer that counts bytes and reports progress.
pub(crate) struct Counting<'p, W> {
    inner: W,
    progress: Progress,
    last_report: u64,
    callback: &'p mut dyn FnMut(Progress),
}

impl<'p, W: Write> Counting<'p, W> {
    pub(crate) fn new(inner: W, files_total: u64, callback: &'p mut dyn FnMut(Progress)) -> Self {
        Self {
            inner,
            progress: Progress {
                files_total,
                ..Progress::default()
            },
            last_report: 0,
            callback,
        }
    }

    pub(crate) fn progress(&self) -> Progress {
        self.progress
    }

    fn report(&mut self) {
        self.last_report = self.progress.bytes_sent;
        (self.callback)(self.progress);
    }

    /// Marks one entry as done and reports.
    pub(crate) fn entry_done(&mut self) {
        self.progress.files_sent += 1;
        self.report();
    }

    pub(crate) fn add_total(&mut self, files: u64) {
        self.progress.files_total += files;
    }

    pub(crate) fn into_inner(self) -> W {
        self.inner
    }
}

impl<W: Write> Write for Counting<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.progress.bytes_sent += written as u64;
        if self.progress.bytes_sent - self.last_report >= PROGRESS_EVERY {
            self.report();
        }
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader yielding exactly `remaining` bytes, failing if the source
/// ends early (the file shrank after its header was written, which would
/// otherwise corrupt the stream).
struct Exact<R> {
    inner: io::Take<R>,
    remaining: u64,
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && self.remaining > 0 && !buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shrank while it was being sent",
            ));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// Appends the host file or symlink at `source` as `name`. Returns
/// `false` (and writes nothing) if it no longer exists.
pub(crate) fn append_path<W: Write>(
    builder: &mut Builder<W>,
    name: &Path,
    source: &Path,
) -> io::Result<bool> {
    let meta = match fs_err::symlink_metadata(source) {
        Ok(meta) => meta,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(error) => return Err(error),
    };
    let mut header = Header::new_gnu();
    if meta.is_symlink() {
        header.set_metadata_in_mode(&meta, HeaderMode::Complete);
        let target = fs_err::read_link(source)?;
        builder.append_link(&mut header, name, target)?;
    } else if meta.is_dir() {
        header.set_metadata_in_mode(&meta, HeaderMode::Complete);
        header.set_size(0);
        builder.append_data(&mut header, name, io::empty())?;
    } else {
        let file = match fs_err::File::open(source) {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(error) => return Err(error),
        };
        // The header comes from the open file, so a replaced path cannot
        // pair one file's size with another's content.
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Ok(false);
        }
        header.set_metadata_in_mode(&meta, HeaderMode::Complete);
        let size = meta.len();
        let reader = Exact {
            inner: file.take(size),
            remaining: size,
        };
        builder.append_data(&mut header, name, reader)?;
    }
    Ok(true)
}

/// Appends an in-memory regular file.
pub(crate) fn append_bytes<W: Write>(
    builder: &mut Builder<W>,
    name: &Path,
    mode: u32,
    content: &[u8],
) -> io::Result<()> {
    let mut header = Header::new_gnu();
    header.set_entry_type(EntryType::Regular);
    header.set_mode(mode);
    header.set_mtime(now());
    header.set_size(content.len() as u64);
    builder.append_data(&mut header, name, content)
}

/// Appends a directory entry (mode 0755).
pub(crate) fn append_dir<W: Write>(builder: &mut Builder<W>, name: &Path) -> io::Result<()> {
    let mut header = Header::new_gnu();
    header.set_entry_type(EntryType::Directory);
    header.set_mode(0o755);
    header.set_mtime(now());
    header.set_size(0);
    builder.append_data(&mut header, name, io::empty())
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
