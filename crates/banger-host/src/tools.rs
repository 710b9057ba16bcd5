//! Locating external programs and asking them their version.
//!
//! banger shells out to real tools where they are the real tool (QEMU,
//! Firecracker, e2fsprogs, ssh); this module finds them the way a shell
//! would, plus the sbin directories that a non-root PATH often lacks.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Directories searched after `$PATH`, where Debian puts admin tools.
const EXTRA_DIRS: &[&str] = &["/usr/local/sbin", "/usr/sbin", "/sbin"];

/// Finds `program`: an absolute path is checked as is, a bare name is looked
/// up on `$PATH` and the sbin directories. Returns the executable's path.
pub fn find_program(program: &Path) -> Option<PathBuf> {
    if program.is_absolute() {
        return is_executable(program).then(|| program.to_owned());
    }
    let path_var = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path_var)
        .chain(EXTRA_DIRS.iter().map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs_err::metadata(path)
        .is_ok_and(|metadata| metadata.is_file() && metadata.permissions().mode() & 0o111 != 0)
}

/// Runs `program args` and returns the first non-empty line it printed on
/// stdout or stderr, or `None` if it failed or took longer than 5 s.
pub fn version_line(program: &Path, args: &[&str]) -> Option<String> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
    let output = child.wait_with_output().ok()?;
    [output.stdout, output.stderr]
        .iter()
        .flat_map(|bytes| {
            String::from_utf8_lossy(bytes)
                .lines()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .map(|line| line.trim().to_owned())
        .find(|line| !line.is_empty())
}

/// Whether the ELF file at `path` is statically linked (has no `PT_INTERP`
/// program header). `None` when it is not a readable 64-bit ELF.
pub fn is_static_elf(path: &Path) -> Option<bool> {
    let bytes = fs_err::read(path).ok()?;
    if bytes.get(..4)? != b"\x7fELF" || *bytes.get(4)? != 2 {
        return None;
    }
    let read_u16 = |offset: usize| {
        bytes
            .get(offset..offset + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let read_u32 = |offset: usize| {
        bytes
            .get(offset..offset + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let read_u64 = |offset: usize| {
        bytes
            .get(offset..offset + 8)
            .map(|b| u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
    };
    const PT_INTERP: u32 = 3;
    let header_offset = usize::try_from(read_u64(0x20)?).ok()?;
    let entry_size = usize::from(read_u16(0x36)?);
    let entries = usize::from(read_u16(0x38)?);
    for index in 0..entries {
        if read_u32(header_offset + index * entry_size)? == PT_INTERP {
            return Some(false);
        }
    }
    Some(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_programs_on_path_and_reports_missing_ones() {
        assert!(find_program(Path::new("sh")).is_some());
        assert!(find_program(Path::new("definitely-not-a-banger-tool")).is_none());
        assert!(find_program(Path::new("/nonexistent/bin/tool")).is_none());
    }

    #[test]
    fn version_line_reads_the_first_line() {
        let line = version_line(
            Path::new("/bin/sh"),
            &["-c", "echo; echo tool 1.2; echo more"],
        );
        assert_eq!(line.as_deref(), Some("tool 1.2"));
        assert_eq!(version_line(Path::new("/nonexistent"), &[]), None);
    }

    #[test]
    fn dynamic_binaries_are_not_static() {
        // /bin/sh on Debian is dynamically linked dash.
        assert_eq!(is_static_elf(Path::new("/bin/sh")), Some(false));
        let temp = tempfile::NamedTempFile::new().expect("temp");
        fs_err::write(temp.path(), b"#!/bin/sh\n").expect("write");
        assert_eq!(is_static_elf(temp.path()), None);
    }
}
