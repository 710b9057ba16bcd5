//! What the owner's account needs: the `kvm` group (VMMs open `/dev/kvm`
//! as the owner), usable `/dev/net/tun` (the VMM attaches to the TAP the
//! helper made for the owner), and subordinate uids and gids (image builds
//! run `mmdebstrap` in unshare mode as the owner).
//!
//! `/dev/vhost-vsock` is the kernel's vhost vsock backend. banger's VMMs do
//! not open it: Firecracker's vsock is a Unix socket, and QEMU uses
//! vhost-device-vsock (vhost-user over a Unix socket). Where udev creates it
//! it is `root:kvm` (0660) on most distributions, so the `kvm` membership
//! covers it; nothing else is changed for it.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::owner::{Owner, OwnerError, getent};

/// The group `/dev/kvm` belongs to on Debian and most distributions.
pub const KVM_GROUP: &str = "kvm";
/// How many subordinate ids an owner needs (mmdebstrap maps 65536).
pub const SUBID_COUNT: u64 = 65536;
/// Where subordinate ranges start when none are allocated yet (shadow's default).
const SUBID_FIRST: u64 = 100_000;

/// Preparing the owner's account failed.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// Looking up a group failed.
    #[error(transparent)]
    Lookup(#[from] OwnerError),
    /// A tool (`groupadd`, `usermod`) could not run or failed.
    #[error("`{command}` failed: {detail}")]
    Tool {
        /// The command line.
        command: String,
        /// Its status and output.
        detail: String,
    },
    /// Reading or changing a file or device failed.
    #[error("cannot update {path}")]
    File {
        /// The path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// Adds the owner to the `kvm` group (made if missing) when `/dev/kvm`
/// exists; a `/dev/kvm` only root may open (a container without udev) is
/// given udev's usual `root:kvm 0660`. Makes `/dev/net/tun` 0666 when it is
/// not (its usual mode: opening it grants nothing without a TAP the caller
/// owns). Returns what was changed, for the progress lines.
pub fn prepare_devices(owner: &Owner) -> Result<Vec<String>, AccountError> {
    let mut changes = Vec::new();
    let kvm = Path::new("/dev/kvm");
    if kvm.exists() {
        let gid = ensure_group(KVM_GROUP, &mut changes)?;
        if !group_members(KVM_GROUP)?.contains(&owner.name) && owner.gid != gid {
            run(Command::new("usermod").args(["-a", "-G", KVM_GROUP, &owner.name]))?;
            changes.push(format!(
                "added {} to group {KVM_GROUP} (for /dev/kvm; new login sessions get it, bangerd.service gets it at its next start)",
                owner.name
            ));
        }
        let metadata = fs_err::metadata(kvm).map_err(|source| file_error(kvm, source))?;
        if metadata.gid() == 0 && metadata.mode() & 0o060 != 0o060 {
            rustix::fs::chown(kvm, None, Some(rustix::fs::Gid::from_raw(gid)))
                .map_err(|errno| file_error(kvm, errno.into()))?;
            fs_err::set_permissions(kvm, std::fs::Permissions::from_mode(0o660))
                .map_err(|source| file_error(kvm, source))?;
            changes.push(
                "made /dev/kvm root:kvm 0660, as udev does (this host has no udev rule for it; add `KERNEL==\"kvm\", GROUP=\"kvm\", MODE=\"0660\"` to keep it across reboots)".into(),
            );
        }
    }
    let tun = Path::new("/dev/net/tun");
    if let Ok(metadata) = fs_err::metadata(tun) {
        if metadata.mode() & 0o006 != 0o006 {
            fs_err::set_permissions(tun, std::fs::Permissions::from_mode(0o666))
                .map_err(|source| file_error(tun, source))?;
            changes.push("made /dev/net/tun 0666, its usual mode".into());
        }
    }
    Ok(changes)
}

/// Gives the owner 65536 subordinate uids and gids when `/etc/subuid` or
/// `/etc/subgid` has none for them, from the first free range. Returns what
/// was changed.
pub fn prepare_subids(owner: &Owner) -> Result<Vec<String>, AccountError> {
    let mut changes = Vec::new();
    for (file, flag) in [
        ("/etc/subuid", "--add-subuids"),
        ("/etc/subgid", "--add-subgids"),
    ] {
        let path = Path::new(file);
        let text = match fs_err::read_to_string(path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => return Err(file_error(path, source)),
        };
        if has_subids(&text, &owner.name, owner.uid) {
            continue;
        }
        let start = next_free_subids(&text);
        let range = format!("{start}-{}", start + SUBID_COUNT - 1);
        run(Command::new("usermod").args([flag, &range, &owner.name]))?;
        changes.push(format!(
            "gave {} the subordinate range {range} in {file} (image builds run mmdebstrap in unshare mode)",
            owner.name
        ));
    }
    Ok(changes)
}

/// Whether `text` (an `/etc/subuid`-style file) gives `name` or `uid` at
/// least [`SUBID_COUNT`] ids in one range.
pub fn has_subids(text: &str, name: &str, uid: u32) -> bool {
    let uid = uid.to_string();
    subid_ranges(text).any(|(who, _, count)| (who == name || who == uid) && count >= SUBID_COUNT)
}

/// The first id at or after 100000 past every range in `text` (shadow's
/// default start).
pub fn next_free_subids(text: &str) -> u64 {
    let end = subid_ranges(text)
        .map(|(_, start, count)| start.saturating_add(count))
        .max()
        .unwrap_or(0);
    end.max(SUBID_FIRST)
}

fn subid_ranges(text: &str) -> impl Iterator<Item = (&str, u64, u64)> {
    text.lines().filter_map(|line| {
        let mut fields = line.trim().split(':');
        let who = fields.next()?;
        let start = fields.next()?.parse().ok()?;
        let count = fields.next()?.parse().ok()?;
        Some((who, start, count))
    })
}

/// The gid of `group`, creating it as a system group when missing.
fn ensure_group(group: &str, changes: &mut Vec<String>) -> Result<u32, AccountError> {
    if let Some(gid) = group_gid(group)? {
        return Ok(gid);
    }
    run(Command::new("groupadd").args(["--system", group]))?;
    changes.push(format!("created system group {group}"));
    group_gid(group)?.ok_or_else(|| AccountError::Tool {
        command: format!("groupadd --system {group}"),
        detail: "the group does not exist afterwards".into(),
    })
}

fn group_gid(group: &str) -> Result<Option<u32>, AccountError> {
    Ok(getent("group", group)?.and_then(|line| line.split(':').nth(2)?.parse().ok()))
}

fn group_members(group: &str) -> Result<Vec<String>, AccountError> {
    Ok(getent("group", group)?
        .and_then(|line| line.split(':').nth(3).map(str::to_owned))
        .map(|members| {
            members
                .split(',')
                .filter(|m| !m.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default())
}

/// Runs a system tool, turning a failure into [`AccountError::Tool`].
fn run(command: &mut Command) -> Result<(), AccountError> {
    let line = format!("{command:?}").replace('"', "");
    let output = command.output().map_err(|error| AccountError::Tool {
        command: line.clone(),
        detail: error.to_string(),
    })?;
    if output.status.success() {
        return Ok(());
    }
    Err(AccountError::Tool {
        command: line,
        detail: format!(
            "{}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ),
    })
}

fn file_error(path: &Path, source: std::io::Error) -> AccountError {
    AccountError::File {
        path: path.to_owned(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subordinate_ranges_are_found_by_name_or_uid() {
        let text = "alice:100000:65536\n1001:165536:65536\nshort:231072:1000\n";
        assert!(has_subids(text, "alice", 1000));
        assert!(has_subids(text, "bob", 1001));
        assert!(!has_subids(text, "short", 1002));
        assert!(!has_subids(text, "carol", 1003));
        assert!(!has_subids("", "alice", 1000));
    }

    #[test]
    fn the_next_range_starts_after_every_other() {
        assert_eq!(next_free_subids(""), 100_000);
        assert_eq!(next_free_subids("garbage\n"), 100_000);
        assert_eq!(next_free_subids("a:100000:65536\n"), 165_536);
        assert_eq!(
            next_free_subids("a:100000:65536\nb:165536:65536\n"),
            231_072
        );
        assert_eq!(next_free_subids("a:1000:10\n"), 100_000);
    }
}
