//! Running `nft` and flipping `net.ipv4.ip_forward`.
//!
//! `nft -j -f -` is nftables' documented JSON interface; the batch goes in
//! on stdin, so no rule text ever appears on a command line. The child is
//! spawned from the calling thread and so inherits that thread's network
//! namespace, like the TUN ioctls in [`crate::net::tun`]; callers check the
//! namespace first (see [`crate::privileged::InProcessOps`]).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::AsyncWriteExt;

use super::{FirewallError, TABLE_NAME};
use crate::tools::find_program;

/// The sysctl that switches IPv4 forwarding for the calling thread's
/// network namespace.
pub const FORWARDING_PATH: &str = "/proc/sys/net/ipv4/ip_forward";

/// How long `nft` may take before it is killed: applying banger's tables
/// takes milliseconds; a hang (a wedged netlink socket) must not block the
/// daemon's VM operations forever.
const NFT_TIMEOUT: Duration = Duration::from_secs(10);

/// Finds the `nft` program (PATH, then the sbin directories).
pub fn nft_program() -> Result<PathBuf, FirewallError> {
    find_program(Path::new("nft")).ok_or(FirewallError::NftNotFound)
}

/// Feeds `batch` to `nft -j -f -` as one transaction.
pub async fn run_batch(batch: &Value, action: &'static str) -> Result<(), FirewallError> {
    let program = nft_program()?;
    let spawn_error = |source| FirewallError::NftSpawn {
        program: program.clone(),
        source,
    };
    let mut child = tokio::process::Command::new(&program)
        .args(["-j", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(spawn_error)?;
    let text = batch.to_string();
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(text.as_bytes())
            .await
            .map_err(spawn_error)?;
        // Dropping stdin closes it, which tells nft the batch is complete.
    }
    let output = tokio::time::timeout(NFT_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| FirewallError::NftTimeout {
            program: program.clone(),
            seconds: NFT_TIMEOUT.as_secs(),
        })?
        .map_err(spawn_error)?;
    if output.status.success() {
        Ok(())
    } else {
        Err(FirewallError::NftFailed {
            program,
            action,
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

/// `nft -j list table <family> banger`, or `None` when the table does not
/// exist. For `doctor`, tests and debugging; never used to decide rules.
pub async fn list_table(family: &'static str) -> Result<Option<Value>, FirewallError> {
    let program = nft_program()?;
    let command = tokio::process::Command::new(&program)
        .args(["-j", "list", "table", family, TABLE_NAME])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(NFT_TIMEOUT, command)
        .await
        .map_err(|_| FirewallError::NftTimeout {
            program: program.clone(),
            seconds: NFT_TIMEOUT.as_secs(),
        })?
        .map_err(|source| FirewallError::NftSpawn {
            program: program.clone(),
            source,
        })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        // nft reports a missing table as ENOENT.
        if stderr.contains("No such file or directory") {
            return Ok(None);
        }
        return Err(FirewallError::NftFailed {
            program,
            action: "list",
            status: output.status.to_string(),
            stderr: stderr.trim().to_owned(),
        });
    }
    serde_json::from_slice(&output.stdout)
        .map(Some)
        .map_err(|source| FirewallError::NftOutput { program, source })
}

/// Whether IPv4 forwarding is on in the calling thread's namespace.
pub fn ipv4_forwarding() -> Result<bool, FirewallError> {
    let text =
        fs_err::read_to_string(FORWARDING_PATH).map_err(|source| FirewallError::Forwarding {
            action: "read",
            path: PathBuf::from(FORWARDING_PATH),
            source,
        })?;
    Ok(text.trim() != "0")
}

/// Turns IPv4 forwarding on (idempotent; no write when already on).
///
/// banger never turns it off again: other software on the host (container
/// runtimes, VPNs) may rely on it, and banger cannot know whether it was
/// the one that switched it on.
pub fn enable_ipv4_forwarding() -> Result<(), FirewallError> {
    if ipv4_forwarding()? {
        return Ok(());
    }
    fs_err::write(FORWARDING_PATH, b"1\n").map_err(|source| FirewallError::Forwarding {
        action: "write",
        path: PathBuf::from(FORWARDING_PATH),
        source,
    })
}
