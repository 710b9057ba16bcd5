//! Creating persistent TAP devices through `/dev/net/tun`.
//!
//! rtnetlink cannot create tun/tap devices (the kernel's `tun` link type
//! refuses `RTM_NEWLINK`), so the in-process privileged operations use the
//! classic ioctls: `TUNSETIFF` with `IFF_TAP | IFF_NO_PI | IFF_VNET_HDR`
//! (Ethernet frames, no packet-info header, virtio-net header for offloads,
//! which is what Firecracker and QEMU's `vnet_hdr=on` expect),
//! `TUNSETOWNER` so the unprivileged VMM can open it, and `TUNSETPERSIST`
//! so it survives this file descriptor. Attaching it to the bridge and
//! bringing it up is then done over netlink ([`super::link`]).
//!
//! `IFF_TUN_EXCL` makes `TUNSETIFF` fail with `EBUSY` if a device of that
//! name already exists, instead of silently attaching to it: banger must
//! never adopt a device someone else created under a name it thinks it owns.
//!
//! The device is created in the network namespace of the calling thread
//! (the kernel uses the opener's namespace), so this must run on the thread
//! whose namespace the caller means — not on a `spawn_blocking` worker.

use fs_err::OpenOptions;
use fs_err::os::unix::fs::OpenOptionsExt;
use std::io;
use std::os::fd::AsRawFd;

use super::names::TapName;

/// The clone device every tun/tap is created through.
pub const TUN_DEVICE: &str = "/dev/net/tun";

/// A failed TUN ioctl.
#[derive(Debug, thiserror::Error)]
pub enum TunError {
    /// `/dev/net/tun` could not be opened (no TUN support, or no root).
    #[error("cannot open {TUN_DEVICE} to create {name}")]
    Open {
        /// The TAP being created.
        name: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A device of that name already exists.
    #[error("cannot create TAP {name}: a device with that name already exists")]
    Exists {
        /// The TAP name.
        name: String,
    },
    /// One of the ioctls failed.
    #[error("{ioctl} failed for TAP {name}")]
    Ioctl {
        /// `TUNSETIFF`, `TUNSETOWNER` or `TUNSETPERSIST`.
        ioctl: &'static str,
        /// The TAP name.
        name: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// `struct ifreq` as `TUNSETIFF` reads it: the name, then `ifr_flags` at
/// the start of the 24-byte union.
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// Creates the persistent TAP `name`, owned by `owner_uid`, in the calling
/// thread's network namespace. It is left down and unattached.
pub fn create_persistent_tap(name: &TapName, owner_uid: u32) -> Result<(), TunError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(TUN_DEVICE)
        .map_err(|source| TunError::Open {
            name: name.to_string(),
            source,
        })?;
    let fd = file.as_raw_fd();

    let mut request = IfReq {
        name: [0; libc::IFNAMSIZ],
        flags: 0,
        _pad: [0; 22],
    };
    // TapName guarantees <= 15 ASCII bytes, so the NUL terminator fits.
    let bytes = name.as_str().as_bytes();
    request.name[..bytes.len()].copy_from_slice(bytes);
    let flags = libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR | libc::IFF_TUN_EXCL;
    // The flags are 0x0002 | 0x1000 | 0x4000 | 0x8000 = 0xD002; the kernel
    // reads them as a `short`, so the bit pattern (negative as i16) is what
    // must be passed.
    request.flags = flags as u16 as libc::c_short;

    // SAFETY: `fd` is an open /dev/net/tun descriptor owned by `file`, which
    // outlives the call; TUNSETIFF reads and writes a `struct ifreq`, and
    // `request` is a properly sized and aligned #[repr(C)] ifreq
    // (16-byte name + 24-byte union) that lives across the call.
    let result = unsafe { libc::ioctl(fd, libc::TUNSETIFF, &mut request as *mut IfReq) };
    if result < 0 {
        let source = io::Error::last_os_error();
        if source.raw_os_error() == Some(libc::EBUSY) {
            return Err(TunError::Exists {
                name: name.to_string(),
            });
        }
        return Err(ioctl_error("TUNSETIFF", name, source));
    }

    // Until TUNSETPERSIST succeeds, dropping `file` destroys the device, so
    // an early return below leaves nothing behind.
    // SAFETY: TUNSETOWNER takes the uid by value as the ioctl argument; no
    // memory is passed. `fd` is open (owned by `file`).
    let result = unsafe { libc::ioctl(fd, libc::TUNSETOWNER, libc::c_ulong::from(owner_uid)) };
    if result < 0 {
        return Err(ioctl_error("TUNSETOWNER", name, io::Error::last_os_error()));
    }
    // SAFETY: TUNSETPERSIST takes an integer flag by value; no memory is
    // passed. `fd` is open (owned by `file`).
    let result = unsafe { libc::ioctl(fd, libc::TUNSETPERSIST, 1 as libc::c_ulong) };
    if result < 0 {
        return Err(ioctl_error(
            "TUNSETPERSIST",
            name,
            io::Error::last_os_error(),
        ));
    }
    drop(file);
    Ok(())
}

fn ioctl_error(ioctl: &'static str, name: &TapName, source: io::Error) -> TunError {
    TunError::Ioctl {
        ioctl,
        name: name.to_string(),
        source,
    }
}
