//! A writer for the cpio "newc" (SVR4, magic `070701`) archive format.
//!
//! The Linux kernel unpacks initramfs images in exactly this format
//! (Documentation/driver-api/early-userspace/buffer-format.rst), and it unpacks
//! several archives concatenated one after another, compressed or not. The
//! initramfs builder and the per-VM config builder both emit newc through this
//! writer. Writing the format directly (instead of shelling out to `cpio`) means
//! entries carry uid/gid 0 and fixed timestamps regardless of who runs the host
//! side, device nodes such as `/dev/console` can be created without privileges,
//! and output is byte-for-byte reproducible.

use std::collections::HashSet;
use std::io::{self, Write};

use thiserror::Error;

const MAGIC: &str = "070701";
const TRAILER: &str = "TRAILER!!!";

const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;

/// Why an archive entry could not be written.
#[derive(Debug, Error)]
pub enum CpioError {
    /// Writing to the underlying sink failed.
    #[error("writing cpio entry {path}")]
    Io {
        /// Archive path of the entry being written.
        path: String,
        /// Underlying error.
        source: io::Error,
    },
    /// The path is empty, absolute, or contains `..`/NUL; archive paths are
    /// relative to the unpack root (the kernel ignores a leading `/` anyway,
    /// but rejecting it keeps callers honest).
    #[error("invalid cpio path {0:?}")]
    InvalidPath(String),
    /// The same path was added twice (the kernel would silently let the second
    /// win, which hides bugs).
    #[error("duplicate cpio path {0:?}")]
    Duplicate(String),
    /// A file is larger than the 32-bit size field of the newc format.
    #[error("cpio entry {0} is larger than 4 GiB")]
    TooLarge(String),
}

/// Streams newc entries into any [`Write`]; call [`CpioWriter::finish`] to write
/// the trailer.
///
/// All entries are owned by root (uid/gid 0) with mtime 0.
pub struct CpioWriter<W: Write> {
    out: W,
    written: u64,
    next_ino: u32,
    seen: HashSet<String>,
}

impl<W: Write> CpioWriter<W> {
    /// Starts an archive on `out`.
    pub fn new(out: W) -> Self {
        Self {
            out,
            written: 0,
            // Inode 0 is avoided: some unpackers treat it specially.
            next_ino: 1,
            seen: HashSet::new(),
        }
    }

    /// Adds a directory. Parents must be added first (the kernel does not create
    /// missing parents).
    pub fn dir(&mut self, path: &str, mode: u32) -> Result<(), CpioError> {
        self.entry(path, S_IFDIR | (mode & 0o7777), 2, (0, 0), &[])
    }

    /// Adds a regular file with the given permission bits.
    pub fn file(&mut self, path: &str, mode: u32, data: &[u8]) -> Result<(), CpioError> {
        self.entry(path, S_IFREG | (mode & 0o7777), 1, (0, 0), data)
    }

    /// Adds a symbolic link pointing at `target`.
    pub fn symlink(&mut self, path: &str, target: &str) -> Result<(), CpioError> {
        self.entry(path, S_IFLNK | 0o777, 1, (0, 0), target.as_bytes())
    }

    /// Adds a character device node (e.g. `dev/console`, major 5 minor 1).
    pub fn char_dev(
        &mut self,
        path: &str,
        mode: u32,
        major: u32,
        minor: u32,
    ) -> Result<(), CpioError> {
        self.entry(path, S_IFCHR | (mode & 0o7777), 1, (major, minor), &[])
    }

    /// Writes the `TRAILER!!!` entry and returns the sink.
    pub fn finish(mut self) -> Result<W, CpioError> {
        self.raw_entry(TRAILER, 0, 1, 0, (0, 0), &[])?;
        self.out.flush().map_err(|source| CpioError::Io {
            path: TRAILER.to_owned(),
            source,
        })?;
        Ok(self.out)
    }

    fn entry(
        &mut self,
        path: &str,
        mode: u32,
        nlink: u32,
        rdev: (u32, u32),
        data: &[u8],
    ) -> Result<(), CpioError> {
        validate_path(path)?;
        if !self.seen.insert(path.to_owned()) {
            return Err(CpioError::Duplicate(path.to_owned()));
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        self.raw_entry(path, ino, nlink, mode, rdev, data)
    }

    fn raw_entry(
        &mut self,
        path: &str,
        ino: u32,
        nlink: u32,
        mode: u32,
        rdev: (u32, u32),
        data: &[u8],
    ) -> Result<(), CpioError> {
        let size = u32::try_from(data.len()).map_err(|_| CpioError::TooLarge(path.to_owned()))?;
        // namesize counts the terminating NUL.
        let namesize = path.len() + 1;
        let header = format!(
            "{MAGIC}{ino:08x}{mode:08x}{uid:08x}{gid:08x}{nlink:08x}{mtime:08x}{size:08x}\
             {maj:08x}{min:08x}{rmaj:08x}{rmin:08x}{namesize:08x}{check:08x}",
            uid = 0,
            gid = 0,
            mtime = 0,
            maj = 0,
            min = 0,
            rmaj = rdev.0,
            rmin = rdev.1,
            check = 0,
        );
        let io_err = |source| CpioError::Io {
            path: path.to_owned(),
            source,
        };
        self.put(header.as_bytes()).map_err(io_err)?;
        self.put(path.as_bytes()).map_err(io_err)?;
        self.put(&[0]).map_err(io_err)?;
        // Header (110 bytes) + name is padded to a multiple of 4, and so is the data.
        self.pad().map_err(io_err)?;
        self.put(data).map_err(io_err)?;
        self.pad().map_err(io_err)?;
        Ok(())
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    fn pad(&mut self) -> io::Result<()> {
        let rem = (self.written % 4) as usize;
        if rem != 0 {
            self.put(&[0u8; 4][..4 - rem])?;
        }
        Ok(())
    }
}

fn validate_path(path: &str) -> Result<(), CpioError> {
    let bad = path.is_empty()
        || path.starts_with('/')
        || path.ends_with('/')
        || path.contains('\0')
        || path
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..");
    if bad {
        return Err(CpioError::InvalidPath(path.to_owned()));
    }
    Ok(())
}

/// One parsed entry, used by tests (here and in other modules) to check archives.
#[cfg(test)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParsedEntry {
    pub name: String,
    pub mode: u32,
    pub rdev: (u32, u32),
    pub data: Vec<u8>,
}

/// Parses a newc archive (possibly several concatenated, separated by NUL
/// padding) back into entries; test helper.
#[cfg(test)]
pub(crate) fn parse(mut buf: &[u8]) -> Vec<ParsedEntry> {
    let mut out = Vec::new();
    let mut offset = 0usize;
    loop {
        while buf.first() == Some(&0) {
            buf = &buf[1..];
            offset += 1;
        }
        if buf.is_empty() {
            return out;
        }
        assert_eq!(&buf[..6], MAGIC.as_bytes(), "bad magic at {offset}");
        let field = |i: usize| {
            let s = std::str::from_utf8(&buf[6 + i * 8..14 + i * 8]).unwrap();
            u32::from_str_radix(s, 16).unwrap()
        };
        let (mode, size, rmaj, rmin, namesize) =
            (field(1), field(6), field(9), field(10), field(11));
        let name_end = 110 + namesize as usize;
        let name = std::str::from_utf8(&buf[110..name_end - 1])
            .unwrap()
            .to_owned();
        let data_start = name_end.div_ceil(4) * 4;
        let data_end = data_start + size as usize;
        let data = buf[data_start..data_end].to_vec();
        let next = data_end.div_ceil(4) * 4;
        buf = &buf[next..];
        offset += next;
        if name != TRAILER {
            out.push(ParsedEntry {
                name,
                mode,
                rdev: (rmaj, rmin),
                data,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_layout_matches_newc() {
        let mut w = CpioWriter::new(Vec::new());
        w.file("init", 0o755, b"hello").unwrap();
        let out = w.finish().unwrap();
        // 110-byte header, "init\0" (5) -> 115, padded to 116; data 5 -> 121, padded to 124.
        assert_eq!(&out[..6], b"070701");
        assert_eq!(&out[6..14], b"00000001"); // ino
        assert_eq!(&out[14..22], b"000081ed"); // S_IFREG | 0755
        assert_eq!(&out[54..62], b"00000005"); // filesize
        assert_eq!(&out[94..102], b"00000005"); // namesize incl. NUL
        assert_eq!(&out[110..115], b"init\0");
        assert_eq!(&out[116..121], b"hello");
        assert_eq!(out.len() % 4, 0);
        assert!(out.windows(10).any(|w| w == TRAILER.as_bytes()));
    }

    #[test]
    fn roundtrip_all_entry_kinds() {
        let mut w = CpioWriter::new(Vec::new());
        w.dir("dev", 0o755).unwrap();
        w.char_dev("dev/console", 0o600, 5, 1).unwrap();
        w.dir("bin", 0o755).unwrap();
        w.file("bin/busybox", 0o755, &[1, 2, 3]).unwrap();
        w.symlink("bin/sh", "busybox").unwrap();
        let out = w.finish().unwrap();
        let entries = parse(&out);
        let names: Vec<_> = entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            ["dev", "dev/console", "bin", "bin/busybox", "bin/sh"]
        );
        assert_eq!(entries[1].mode, S_IFCHR | 0o600);
        assert_eq!(entries[1].rdev, (5, 1));
        assert_eq!(entries[3].data, [1, 2, 3]);
        assert_eq!(entries[4].mode, S_IFLNK | 0o777);
        assert_eq!(entries[4].data, b"busybox");
        assert_eq!(entries[0].mode, S_IFDIR | 0o755);
    }

    #[test]
    fn rejects_bad_and_duplicate_paths() {
        let mut w = CpioWriter::new(Vec::new());
        for bad in ["", "/abs", "a/../b", "a//b", "dir/", "./x"] {
            assert!(
                matches!(w.file(bad, 0o644, b""), Err(CpioError::InvalidPath(_))),
                "{bad}"
            );
        }
        w.file("x", 0o644, b"").unwrap();
        assert!(matches!(
            w.file("x", 0o644, b""),
            Err(CpioError::Duplicate(_))
        ));
    }

    #[test]
    fn matches_gnu_cpio_listing_when_available() {
        // Cross-check against the real cpio tool: it must list our archive.
        let usable = std::process::Command::new("cpio")
            .arg("--version")
            .output()
            .is_ok_and(|output| output.status.success());
        if !usable {
            banger_testkit::skip_or_fail("GNU cpio not installed");
            return;
        }
        let mut w = CpioWriter::new(Vec::new());
        w.dir("etc", 0o755).unwrap();
        w.file("etc/hostname", 0o644, b"vm1\n").unwrap();
        w.symlink("link", "etc/hostname").unwrap();
        let archive = w.finish().unwrap();
        let mut child = std::process::Command::new("cpio")
            .args(["-t", "--quiet"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(&archive).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            "etc\netc/hostname\nlink\n"
        );
    }
}
