//! Pause and resume for QEMU: the guest's memory and device state go to a
//! file by migration, and a new QEMU loads them with `-incoming`.
//!
//! QEMU refuses to migrate a VM with a vhost-user-vsock device (the device's
//! state lives in `vhost-device-vsock`, so QEMU marks it unmigratable). The
//! device therefore sits on a PCIe root port of its own (see
//! [`crate::qemu::args`]): [`save`] unplugs it (`device_del`, the guest
//! ejects it through ACPI hotplug and QEMU reports `DEVICE_DELETED`), stops
//! the vCPUs, migrates to the file and quits; [`load`] waits until the new
//! QEMU (started paused, without the device) has read the file, plugs a
//! fresh device into the same port (`device_add`, with the new helper
//! behind it) and continues. vsock connections do not survive this anyway
//! (the helper is a new process); the guest agent keeps listening and the
//! host reconnects. The reasons for this choice are in `docs/snapshots.md`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use thiserror::Error;

use super::args::{VSOCK_CHARDEV_ID, VSOCK_DEVICE_ID, VSOCK_PORT_ID, exec_uri};
use super::qmp::{Qmp, QmpError, connect};

/// The state file a pause writes as a migration stream (QEMU before 9).
pub const STATE_FILE: &str = "qemu.state";
/// The state file a pause writes with QEMU's `mapped-ram` capability (QEMU 9
/// and later): each RAM page at its own offset of a sparse file, so zero
/// pages take no space and are never touched when the state is loaded.
pub const MAPPED_STATE_FILE: &str = "qemu.mapped";
/// The first QEMU major version with `mapped-ram` (and `file:` migration).
const MAPPED_RAM_SINCE: u64 = 9;

/// A saved state found in a memory directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SavedState {
    /// [`STATE_FILE`]: a stream, loaded through `exec:cat`.
    Stream(PathBuf),
    /// [`MAPPED_STATE_FILE`]: loaded with `mapped-ram` from a `file:` URI.
    Mapped(PathBuf),
}

/// The state a pause left in `memory_dir`, if any.
pub fn saved_state(memory_dir: &Path) -> Option<SavedState> {
    let mapped = memory_dir.join(MAPPED_STATE_FILE);
    if mapped.is_file() {
        return Some(SavedState::Mapped(mapped));
    }
    let stream = memory_dir.join(STATE_FILE);
    stream.is_file().then_some(SavedState::Stream(stream))
}

/// How long the guest gets to eject the vsock device. A guest that does
/// not answer ACPI hotplug within this is not paused.
const UNPLUG_TIMEOUT: Duration = Duration::from_secs(60);
/// How long writing or reading the state may take (a few GiB at disk speed).
const MIGRATE_TIMEOUT: Duration = Duration::from_secs(600);
/// How often the migration status is asked.
const POLL: Duration = Duration::from_millis(50);
/// Deadline of a single QMP command.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// Failures of a QEMU pause or resume.
#[derive(Debug, Error)]
pub enum MigrateError {
    /// Talking to QMP failed.
    #[error(transparent)]
    Qmp(#[from] QmpError),
    /// The state file's path cannot be put into the `exec:` URI.
    #[error("state file {} contains a single quote", path.display())]
    QuotedPath {
        /// The path.
        path: PathBuf,
    },
    /// The guest did not eject the vsock device in time (it may be hung,
    /// or have no ACPI hotplug); the VM keeps running.
    #[error(
        "the guest did not release its vsock device within {timeout:?} (QMP {}); the VM keeps running",
        socket.display()
    )]
    UnplugTimeout {
        /// The QMP socket.
        socket: PathBuf,
        /// How long it was given.
        timeout: Duration,
    },
    /// The migration ended in another state than `completed`.
    #[error("migration {status} (QMP {}): {detail}", socket.display())]
    Failed {
        /// The QMP socket.
        socket: PathBuf,
        /// `failed`, `cancelled`, ...
        status: String,
        /// QEMU's error description, if any.
        detail: String,
    },
    /// A step did not finish in time.
    #[error("{step} did not finish within {timeout:?} (QMP {})", socket.display())]
    Timeout {
        /// The QMP socket.
        socket: PathBuf,
        /// What was waited for.
        step: &'static str,
        /// How long.
        timeout: Duration,
    },
}

async fn command(
    qmp: &mut Qmp,
    name: &str,
    arguments: Option<Value>,
) -> Result<Value, MigrateError> {
    let socket = qmp.socket().to_path_buf();
    match tokio::time::timeout(COMMAND_TIMEOUT, qmp.call(name, arguments)).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(MigrateError::Timeout {
            socket,
            step: "a QMP command",
            timeout: COMMAND_TIMEOUT,
        }),
    }
}

/// Saves the running VM behind QMP `socket` into `memory_dir` and quits
/// QEMU: as [`MAPPED_STATE_FILE`] when the QEMU has `mapped-ram`, else as
/// [`STATE_FILE`]. On failure the VM is left running (the vsock device
/// plugged back in where that is still possible) and nothing is written
/// but what the caller removes.
pub async fn save(socket: &Path, memory_dir: &Path) -> Result<(), MigrateError> {
    let mut qmp = connect(socket).await?;
    let target = if qemu_major(&mut qmp).await? >= MAPPED_RAM_SINCE {
        SavedState::Mapped(memory_dir.join(MAPPED_STATE_FILE))
    } else {
        let path = memory_dir.join(STATE_FILE);
        if path.to_string_lossy().contains('\'') {
            return Err(MigrateError::QuotedPath { path });
        }
        SavedState::Stream(path)
    };
    command(
        &mut qmp,
        "device_del",
        Some(json!({ "id": VSOCK_DEVICE_ID })),
    )
    .await?;
    let unplugged = tokio::time::timeout(
        UNPLUG_TIMEOUT,
        qmp.wait_event("DEVICE_DELETED", |data| {
            data.get("device").and_then(Value::as_str) == Some(VSOCK_DEVICE_ID)
        }),
    )
    .await;
    match unplugged {
        Ok(Ok(_)) => {}
        Ok(Err(error)) => return Err(error.into()),
        Err(_) => {
            return Err(MigrateError::UnplugTimeout {
                socket: socket.to_path_buf(),
                timeout: UNPLUG_TIMEOUT,
            });
        }
    }
    match migrate_out(&mut qmp, &target).await {
        Ok(()) => {
            // QEMU may close the connection before answering `quit`; the
            // caller waits for the process to exit either way.
            let _ = command(&mut qmp, "quit", None).await;
            Ok(())
        }
        Err(error) => {
            // Keep the VM: continue it and give the guest its vsock back.
            let _ = command(&mut qmp, "migrate_cancel", None).await;
            if let Err(replug) = plug_vsock(&mut qmp).await {
                tracing::warn!(socket = %socket.display(), error = %replug, "cannot plug the vsock device back after a failed pause");
            }
            let _ = command(&mut qmp, "cont", None).await;
            Err(error)
        }
    }
}

/// The major version of the QEMU behind `qmp`.
async fn qemu_major(qmp: &mut Qmp) -> Result<u64, MigrateError> {
    let version = command(qmp, "query-version", None).await?;
    Ok(version
        .pointer("/qemu/major")
        .and_then(Value::as_u64)
        .unwrap_or(0))
}

/// Turns on `mapped-ram` for the next migration (either direction).
async fn enable_mapped_ram(qmp: &mut Qmp) -> Result<(), MigrateError> {
    command(
        qmp,
        "migrate-set-capabilities",
        Some(json!({ "capabilities": [{ "capability": "mapped-ram", "state": true }] })),
    )
    .await?;
    Ok(())
}

/// The `file:` URI of a mapped-ram state file.
fn file_uri(path: &Path) -> String {
    format!("file:{}", path.display())
}

async fn migrate_out(qmp: &mut Qmp, target: &SavedState) -> Result<(), MigrateError> {
    command(qmp, "stop", None).await?;
    let uri = match target {
        SavedState::Stream(path) => exec_uri(true, path),
        SavedState::Mapped(path) => {
            enable_mapped_ram(qmp).await?;
            file_uri(path)
        }
    };
    command(qmp, "migrate", Some(json!({ "uri": uri }))).await?;
    let deadline = Instant::now() + MIGRATE_TIMEOUT;
    loop {
        let status = command(qmp, "query-migrate", None).await?;
        let state = status.get("status").and_then(Value::as_str).unwrap_or("");
        match state {
            "completed" => return Ok(()),
            "failed" | "cancelled" | "cancelling" => {
                return Err(MigrateError::Failed {
                    socket: qmp.socket().to_path_buf(),
                    status: state.to_owned(),
                    detail: status
                        .get("error-desc")
                        .and_then(Value::as_str)
                        .unwrap_or("no detail")
                        .to_owned(),
                });
            }
            _ => {}
        }
        if Instant::now() >= deadline {
            return Err(MigrateError::Timeout {
                socket: qmp.socket().to_path_buf(),
                step: "writing the state file",
                timeout: MIGRATE_TIMEOUT,
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn plug_vsock(qmp: &mut Qmp) -> Result<Value, MigrateError> {
    command(
        qmp,
        "device_add",
        Some(json!({
            "driver": "vhost-user-vsock-pci",
            "id": VSOCK_DEVICE_ID,
            "chardev": VSOCK_CHARDEV_ID,
            "bus": VSOCK_PORT_ID,
        })),
    )
    .await
}

/// For a QEMU started with [`super::args::qemu_args_incoming`]: starts the
/// load of a [`SavedState::Mapped`] state (its QEMU was started with
/// `-incoming defer`), waits until the state is loaded, plugs the vsock
/// device in and lets the guest run; with `network`
/// [`crate::NetworkAtResume::Disconnected`] the NIC's link is down first
/// (QEMU drops what the guest sends) until [`set_link`].
pub async fn load(
    socket: &Path,
    state: &SavedState,
    network: crate::NetworkAtResume,
) -> Result<(), MigrateError> {
    let mut qmp = connect(socket).await?;
    if let SavedState::Mapped(path) = state {
        enable_mapped_ram(&mut qmp).await?;
        command(
            &mut qmp,
            "migrate-incoming",
            Some(json!({ "uri": file_uri(path) })),
        )
        .await?;
    }
    let deadline = Instant::now() + MIGRATE_TIMEOUT;
    loop {
        let status = command(&mut qmp, "query-status", None).await?;
        match status.get("status").and_then(Value::as_str).unwrap_or("") {
            "inmigrate" => {}
            "paused" | "prelaunch" => break,
            other => {
                return Err(MigrateError::Failed {
                    socket: socket.to_path_buf(),
                    status: other.to_owned(),
                    detail: "the VM is not paused after loading its state".to_owned(),
                });
            }
        }
        if Instant::now() >= deadline {
            return Err(MigrateError::Timeout {
                socket: socket.to_path_buf(),
                step: "reading the state file",
                timeout: MIGRATE_TIMEOUT,
            });
        }
        tokio::time::sleep(POLL).await;
    }
    tracing::debug!(qmp = %socket.display(), "saved state loaded; plugging the vsock device back");
    plug_vsock(&mut qmp).await?;
    if network == crate::NetworkAtResume::Disconnected {
        command(&mut qmp, "set_link", Some(link(false))).await?;
    }
    command(&mut qmp, "cont", None).await?;
    Ok(())
}

fn link(up: bool) -> Value {
    // The netdev's id (args.rs): QEMU sets its NIC peer's link too.
    serde_json::json!({"name": "net0", "up": up})
}

/// Connects or disconnects the NIC of the running VM behind QMP `socket`.
pub async fn set_link(socket: &Path, up: bool) -> Result<(), MigrateError> {
    let mut qmp = connect(socket).await?;
    command(&mut qmp, "set_link", Some(link(up))).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    use tokio::net::UnixListener;

    /// A QMP server that answers each command from `replies` (by name) and
    /// records what it got.
    async fn fake_qmp(
        listener: UnixListener,
        replies: Vec<(&'static str, &'static str)>,
    ) -> Vec<String> {
        let (stream, _) = listener.accept().await.unwrap();
        let (read, mut write) = tokio::io::split(stream);
        let mut lines = BufReader::new(read).lines();
        write.write_all(b"{\"QMP\": {}}\n").await.unwrap();
        let mut seen = Vec::new();
        let mut replies = replies.into_iter();
        while let Ok(Some(line)) = lines.next_line().await {
            let value: Value = serde_json::from_str(&line).unwrap();
            let name = value["execute"].as_str().unwrap().to_owned();
            seen.push(line);
            let reply = if name == "qmp_capabilities" {
                "{\"return\": {}}\n"
            } else {
                let (expected, reply) = replies.next().unwrap_or(("?", "{\"return\": {}}\n"));
                assert_eq!(expected, name, "unexpected command");
                reply
            };
            write.write_all(reply.as_bytes()).await.unwrap();
        }
        seen
    }

    #[tokio::test]
    async fn save_unplugs_stops_migrates_and_quits() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("qmp.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let server = tokio::spawn(fake_qmp(
            listener,
            vec![
                (
                    "query-version",
                    "{\"return\": {\"qemu\": {\"major\": 7, \"minor\": 2, \"micro\": 0}}}\n",
                ),
                (
                    "device_del",
                    "{\"return\": {}}\n{\"event\": \"DEVICE_DELETED\", \"data\": {\"path\": \"/machine/peripheral/vsock0/virtio-backend\"}}\n{\"event\": \"DEVICE_DELETED\", \"data\": {\"device\": \"vsock0\"}}\n",
                ),
                ("stop", "{\"return\": {}}\n"),
                ("migrate", "{\"return\": {}}\n"),
                ("query-migrate", "{\"return\": {\"status\": \"active\"}}\n"),
                (
                    "query-migrate",
                    "{\"return\": {\"status\": \"completed\"}}\n",
                ),
                ("quit", "{\"return\": {}}\n"),
            ],
        ));
        let memory = dir.path().join("memory");
        save(&socket, &memory).await.unwrap();
        let seen = server.await.unwrap();
        assert_eq!(seen.len(), 8, "{seen:?}");
        assert!(seen[2].contains("\"id\":\"vsock0\""), "{seen:?}");
        let file = memory.join(STATE_FILE);
        assert!(
            seen[4].contains(&format!("exec:cat > '{}'", file.display())),
            "{seen:?}"
        );
    }

    #[tokio::test]
    async fn a_qemu_with_mapped_ram_saves_to_a_mapped_file() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("qmp.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let server = tokio::spawn(fake_qmp(
            listener,
            vec![
                (
                    "query-version",
                    "{\"return\": {\"qemu\": {\"major\": 10, \"minor\": 0, \"micro\": 2}}}\n",
                ),
                (
                    "device_del",
                    "{\"return\": {}}\n{\"event\": \"DEVICE_DELETED\", \"data\": {\"device\": \"vsock0\"}}\n",
                ),
                ("stop", "{\"return\": {}}\n"),
                ("migrate-set-capabilities", "{\"return\": {}}\n"),
                ("migrate", "{\"return\": {}}\n"),
                (
                    "query-migrate",
                    "{\"return\": {\"status\": \"completed\"}}\n",
                ),
                ("quit", "{\"return\": {}}\n"),
            ],
        ));
        // A quote is fine in a file: URI (no shell reads it).
        let memory = dir.path().join("it's memory");
        save(&socket, &memory).await.unwrap();
        let seen = server.await.unwrap();
        assert!(
            seen[4].contains("\"capability\":\"mapped-ram\"") && seen[4].contains("\"state\":true"),
            "{seen:?}"
        );
        let file = memory.join(MAPPED_STATE_FILE);
        assert!(
            seen[5].contains(&format!("\"uri\":\"file:{}\"", file.display())),
            "{seen:?}"
        );
    }

    #[tokio::test]
    async fn a_failed_migration_keeps_the_vm_running() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("qmp.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let server = tokio::spawn(fake_qmp(
            listener,
            vec![
                (
                    "query-version",
                    "{\"return\": {\"qemu\": {\"major\": 7, \"minor\": 2, \"micro\": 0}}}\n",
                ),
                (
                    "device_del",
                    "{\"return\": {}}\n{\"event\": \"DEVICE_DELETED\", \"data\": {\"device\": \"vsock0\"}}\n",
                ),
                ("stop", "{\"return\": {}}\n"),
                ("migrate", "{\"return\": {}}\n"),
                (
                    "query-migrate",
                    "{\"return\": {\"status\": \"failed\", \"error-desc\": \"No space left on device\"}}\n",
                ),
                ("migrate_cancel", "{\"return\": {}}\n"),
                ("device_add", "{\"return\": {}}\n"),
                ("cont", "{\"return\": {}}\n"),
            ],
        ));
        let error = save(&socket, dir.path()).await.unwrap_err();
        assert!(error.to_string().contains("No space left"), "{error}");
        let seen = server.await.unwrap();
        assert!(seen.last().unwrap().contains("\"cont\""), "{seen:?}");
        assert!(!seen.iter().any(|line| line.contains("quit")), "{seen:?}");
    }

    #[tokio::test]
    async fn load_waits_for_the_state_then_plugs_vsock_and_continues() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("qmp.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let server = tokio::spawn(fake_qmp(
            listener,
            vec![
                (
                    "query-status",
                    "{\"return\": {\"status\": \"inmigrate\"}}\n",
                ),
                ("query-status", "{\"return\": {\"status\": \"paused\"}}\n"),
                ("device_add", "{\"return\": {}}\n"),
                ("cont", "{\"return\": {}}\n"),
            ],
        ));
        let state = SavedState::Stream(dir.path().join(STATE_FILE));
        load(&socket, &state, crate::NetworkAtResume::Connected)
            .await
            .unwrap();
        let seen = server.await.unwrap();
        assert!(seen[3].contains("\"bus\":\"vsockport\""), "{seen:?}");
        assert!(
            !seen.iter().any(|line| line.contains("set_link")),
            "{seen:?}"
        );
    }

    #[tokio::test]
    async fn a_fork_is_loaded_with_its_link_down_until_set_link() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("qmp.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let server = tokio::spawn(fake_qmp(
            listener,
            vec![
                ("query-status", "{\"return\": {\"status\": \"paused\"}}\n"),
                ("device_add", "{\"return\": {}}\n"),
                ("set_link", "{\"return\": {}}\n"),
                ("cont", "{\"return\": {}}\n"),
            ],
        ));
        let state = SavedState::Stream(dir.path().join(STATE_FILE));
        load(&socket, &state, crate::NetworkAtResume::Disconnected)
            .await
            .unwrap();
        let seen = server.await.unwrap();
        let set_link = seen
            .iter()
            .position(|line| line.contains("set_link"))
            .expect("set_link sent");
        let cont = seen
            .iter()
            .position(|line| line.contains("\"cont\""))
            .expect("cont sent");
        assert!(set_link < cont, "{seen:?}");
        assert!(seen[set_link].contains("\"up\":false"), "{seen:?}");
    }

    #[tokio::test]
    async fn a_mapped_state_is_loaded_over_qmp_with_mapped_ram() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("qmp.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let server = tokio::spawn(fake_qmp(
            listener,
            vec![
                ("migrate-set-capabilities", "{\"return\": {}}\n"),
                ("migrate-incoming", "{\"return\": {}}\n"),
                (
                    "query-status",
                    "{\"return\": {\"status\": \"inmigrate\"}}\n",
                ),
                ("query-status", "{\"return\": {\"status\": \"paused\"}}\n"),
                ("device_add", "{\"return\": {}}\n"),
                ("cont", "{\"return\": {}}\n"),
            ],
        ));
        let file = dir.path().join(MAPPED_STATE_FILE);
        load(
            &socket,
            &SavedState::Mapped(file.clone()),
            crate::NetworkAtResume::Connected,
        )
        .await
        .unwrap();
        let seen = server.await.unwrap();
        assert!(
            seen[1].contains("\"capability\":\"mapped-ram\""),
            "{seen:?}"
        );
        assert!(
            seen[2].contains(&format!("\"uri\":\"file:{}\"", file.display())),
            "{seen:?}"
        );
    }

    #[test]
    fn the_saved_state_is_found_by_its_file() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(saved_state(dir.path()), None);
        fs_err::write(dir.path().join(STATE_FILE), "").unwrap();
        assert_eq!(
            saved_state(dir.path()),
            Some(SavedState::Stream(dir.path().join(STATE_FILE)))
        );
        fs_err::write(dir.path().join(MAPPED_STATE_FILE), "").unwrap();
        assert_eq!(
            saved_state(dir.path()),
            Some(SavedState::Mapped(dir.path().join(MAPPED_STATE_FILE)))
        );
    }

    #[tokio::test]
    async fn a_quote_in_a_stream_path_is_refused_before_the_vm_is_touched() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("qmp.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let server = tokio::spawn(fake_qmp(
            listener,
            vec![(
                "query-version",
                "{\"return\": {\"qemu\": {\"major\": 7, \"minor\": 2, \"micro\": 0}}}\n",
            )],
        ));
        let error = save(&socket, &dir.path().join("it's")).await.unwrap_err();
        assert!(matches!(error, MigrateError::QuotedPath { .. }), "{error}");
        let seen = server.await.unwrap();
        assert!(
            !seen.iter().any(|line| line.contains("device_del")),
            "{seen:?}"
        );
    }
}
