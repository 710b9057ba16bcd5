//! The part of a VM's initrd that every VM booting one initramfs with one
//! guest agent shares, made once and kept in the cache.
//!
//! A VM's initrd is the shared initramfs, the guest agent (about 7 MB, in a
//! cpio archive of its own) and the VM's small config archive
//! ([`crate::guest_config`]). Reading the agent and the initramfs and
//! writing all of it again at every start took 10-20 ms, the largest part of
//! banger's time before the VMM runs. The first two parts now live in a
//! cached base file, keyed by the identity of the two source files (device,
//! inode, size, modification time, so a rebuilt agent or initramfs gets a
//! new base), and a start copies the base in the kernel (`copy_file_range`,
//! a reflink where the filesystem has them) and appends the config.
//!
//! The base holds nothing secret (the initramfs and the agent); the config,
//! with the VM's private host key, only ever goes into the per-VM file.

use std::io::Write;
use std::os::unix::fs::MetadataExt;

use fs_err::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::cpio::CpioWriter;
use crate::guest_config::{GuestConfig, GuestConfigError};

/// Where in the guest's initramfs the agent lands (`/init` installs it).
const AGENT_ENTRY: &str = "banger/agent";

/// Writes the initrd for one VM to `out`: the base for `initramfs` and
/// `agent` (cached in `cache_dir`, made first if missing), then `config`'s
/// archive (give it no agent: the base has it). Written to a temporary file
/// (0600: the config holds private keys) and renamed, so a VM never boots a
/// partial file.
pub fn write_vm_initrd_cached(
    cache_dir: &Path,
    initramfs: &Path,
    agent: Option<&Path>,
    config: &GuestConfig,
    out: &Path,
) -> Result<(), GuestConfigError> {
    let (base_path, base) = cached_base(cache_dir, initramfs, agent)?;
    write_on_base(&base_path, base, config, out)
}

/// The cached base for `initramfs` and `agent` in `cache_dir`, made first
/// if it is missing, with the file opened: a concurrent start that
/// replaces it (a new agent) only unlinks it. Bases for the same initramfs
/// with another agent are removed when a new one is made.
fn cached_base(
    cache_dir: &Path,
    initramfs: &Path,
    agent: Option<&Path>,
) -> Result<(PathBuf, fs_err::File), GuestConfigError> {
    let io = GuestConfigError::io;
    let initramfs_key = file_key(initramfs).map_err(io(initramfs))?;
    let agent_key = match agent {
        Some(agent) => file_key(agent).map_err(io(agent))?,
        None => "none".to_owned(),
    };
    let prefix = format!("base-{initramfs_key}-");
    let base = cache_dir.join(format!("{prefix}{agent_key}.img"));
    match fs_err::File::open(&base) {
        Ok(file) => return Ok((base, file)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(io(&base)(error)),
    }
    fs_err::create_dir_all(cache_dir).map_err(io(cache_dir))?;
    // A private temporary name, renamed into place: concurrent starts each
    // make a complete file, and the base path only ever names one.
    let staging = tempfile::Builder::new()
        .prefix(".base-")
        .suffix(".tmp")
        .tempfile_in(cache_dir)
        .map_err(io(cache_dir))?;
    write_base(initramfs, agent, staging.as_file()).map_err(|error| match error {
        BaseWriteError::Read(path, source) => GuestConfigError::Io { path, source },
        BaseWriteError::Write(source) => GuestConfigError::Io {
            path: staging.path().to_owned(),
            source,
        },
        BaseWriteError::Cpio(error) => GuestConfigError::Cpio(error),
    })?;
    let file = staging
        .reopen()
        .map_err(io(staging.path()))
        .map(|file| fs_err::File::from_parts(file, &base))?;
    staging
        .persist(&base)
        .map_err(|error| GuestConfigError::Io {
            path: base.clone(),
            source: error.error,
        })?;
    remove_older(cache_dir, &prefix, &base);
    Ok((base, file))
}

/// [`write_vm_initrd_cached`] once the base is open.
fn write_on_base(
    base_path: &Path,
    mut source: fs_err::File,
    config: &GuestConfig,
    out: &Path,
) -> Result<(), GuestConfigError> {
    let io = GuestConfigError::io;
    let archive = config.archive()?;
    let tmp = out.with_extension("tmp");
    {
        let mut file = fs_err::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io(&tmp))?;
        // File to file: the standard library copies with copy_file_range.
        let copied = std::io::copy(&mut source, &mut file).map_err(|error| {
            // Which side failed is unknown; name both.
            GuestConfigError::Io {
                path: tmp.clone(),
                source: std::io::Error::new(
                    error.kind(),
                    format!("copying {}: {error}", base_path.display()),
                ),
            }
        })?;
        pad_to_archive_boundary(&mut file, copied).map_err(io(&tmp))?;
        file.write_all(&archive).map_err(io(&tmp))?;
    }
    fs_err::rename(&tmp, out).map_err(io(out))?;
    Ok(())
}

/// Why writing a base failed (mapped to paths by the caller).
enum BaseWriteError {
    Read(PathBuf, std::io::Error),
    Write(std::io::Error),
    Cpio(crate::cpio::CpioError),
}

/// The base: `initramfs` padded to 4 bytes, then an archive holding the
/// agent (when there is one).
fn write_base(
    initramfs: &Path,
    agent: Option<&Path>,
    out: impl Write,
) -> Result<(), BaseWriteError> {
    let mut out = std::io::BufWriter::new(out);
    let mut source = fs_err::File::open(initramfs)
        .map_err(|error| BaseWriteError::Read(initramfs.to_owned(), error))?;
    let copied = std::io::copy(&mut source, &mut out).map_err(BaseWriteError::Write)?;
    pad_to_archive_boundary(&mut out, copied).map_err(BaseWriteError::Write)?;
    if let Some(agent) = agent {
        let bytes =
            fs_err::read(agent).map_err(|error| BaseWriteError::Read(agent.to_owned(), error))?;
        let mut archive = CpioWriter::new(&mut out);
        archive
            .dir("banger", 0o700)
            .and_then(|()| archive.file(AGENT_ENTRY, 0o755, &bytes))
            .map_err(BaseWriteError::Cpio)?;
        archive.finish().map_err(BaseWriteError::Cpio)?;
    }
    out.flush().map_err(BaseWriteError::Write)?;
    Ok(())
}

/// After `written` bytes, writes the NULs that bring `out` to a 4-byte
/// boundary: every archive in an initrd starts on one (the kernel skips the
/// NUL padding between them).
fn pad_to_archive_boundary(mut out: impl Write, written: u64) -> std::io::Result<()> {
    let padding = written.next_multiple_of(4) - written;
    out.write_all(&[0u8; 3][..padding as usize])
}

/// A file's identity for the cache key: device, inode, size and
/// modification time (to the nanosecond).
fn file_key(path: &Path) -> std::io::Result<String> {
    let meta = fs_err::metadata(path)?;
    Ok(format!(
        "{:x}-{:x}-{:x}-{}.{}",
        meta.dev(),
        meta.ino(),
        meta.size(),
        meta.mtime(),
        meta.mtime_nsec()
    ))
}

/// Removes the bases in `dir` named `prefix*` other than `keep`: the same
/// initramfs with an agent that has since been replaced.
fn remove_older(dir: &Path, prefix: &str, keep: &Path) {
    let Ok(entries) = fs_err::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let older = entry
            .file_name()
            .to_str()
            .is_some_and(|name| name.starts_with(prefix) && name.ends_with(".img"));
        if older && path != keep {
            if let Err(error) = fs_err::remove_file(&path) {
                tracing::warn!(%error, "cannot remove an outdated initrd base");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpio::parse;

    fn config() -> GuestConfig {
        GuestConfig {
            hostname: "dev-1".into(),
            network: None,
            authorized_keys: vec!["ssh-ed25519 AAAA user@host".into()],
            ssh_host_keys: Vec::new(),
            agent: None,
            auth_files: Vec::new(),
        }
    }

    /// A VM initrd made on a base holds the same archives, in the same
    /// order, as one made in one go with the agent in the config.
    #[test]
    fn an_initrd_on_a_base_carries_initramfs_agent_and_config() {
        let dir = tempfile::tempdir().expect("tempdir");
        let initramfs = dir.path().join("initramfs.img");
        // Not a multiple of 4, so the padding is exercised.
        fs_err::write(&initramfs, b"INITRAMFS").expect("initramfs");
        let agent = dir.path().join("agent");
        fs_err::write(&agent, b"\x7fELF the agent").expect("agent");
        let cache = dir.path().join("cache");

        let out = dir.path().join("initrd.img");
        write_vm_initrd_cached(&cache, &initramfs, Some(&agent), &config(), &out).expect("initrd");

        let bytes = fs_err::read(&out).expect("read");
        assert!(bytes.starts_with(b"INITRAMFS\0\0\0"), "{bytes:?}");
        let entries = parse(&bytes[12..]);
        let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "banger",
                "banger/agent",
                "banger",
                "banger/config",
                "banger/authorized_keys"
            ]
        );
        assert_eq!(entries[1].data, b"\x7fELF the agent");
        assert_eq!(entries[1].mode & 0o777, 0o755);
        let mode = fs_err::metadata(&out).expect("meta").mode() & 0o777;
        assert_eq!(mode, 0o600, "the per-VM file holds keys");
    }

    #[test]
    fn a_replaced_agent_gets_a_new_base_and_the_old_one_goes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let initramfs = dir.path().join("initramfs.img");
        fs_err::write(&initramfs, b"INIT").expect("initramfs");
        let agent = dir.path().join("agent");
        fs_err::write(&agent, b"agent v1").expect("agent");
        let cache = dir.path().join("cache");
        let (first, _) = cached_base(&cache, &initramfs, Some(&agent)).expect("base");
        let (again, _) = cached_base(&cache, &initramfs, Some(&agent)).expect("again");
        assert_eq!(again, first, "reused while nothing changed");
        // A new file at the same path (as an install replaces it).
        fs_err::remove_file(&agent).expect("remove");
        fs_err::write(&agent, b"agent version 2").expect("agent v2");
        let (second, _) = cached_base(&cache, &initramfs, Some(&agent)).expect("new base");
        assert_ne!(first, second);
        assert!(!first.exists(), "the outdated base is removed");
        let bytes = fs_err::read(&second).expect("read");
        assert!(
            bytes.windows(15).any(|w| w == b"agent version 2"),
            "the new agent is in the new base"
        );
        // Without an agent: the initramfs alone.
        let (bare, _) = cached_base(&cache, &initramfs, None).expect("no agent");
        assert_eq!(fs_err::read(&bare).expect("read"), b"INIT");
    }

    #[test]
    fn a_missing_source_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("no-initramfs.img");
        let error = cached_base(dir.path(), &missing, None).expect_err("missing");
        assert!(
            matches!(&error, GuestConfigError::Io { path, .. } if *path == missing),
            "{error:?}"
        );
    }
}
