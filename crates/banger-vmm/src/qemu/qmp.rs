//! A minimal QMP client: enough to ask the guest to power down, and (for
//! pause and resume, see [`crate::qemu::migrate`]) to run commands with
//! arguments, read their results and wait for events.
//!
//! QMP is line-delimited JSON on the per-VM Unix socket: QEMU greets, the
//! client must send `qmp_capabilities`, then commands; asynchronous events
//! (`{"event": ...}`) may arrive between a command and its `return`. Lines are
//! bounded and the whole exchange has a deadline, so a wedged QEMU cannot hang
//! the daemon's stop path (which falls back to SIGKILL anyway).

use std::path::{Path, PathBuf};
use std::time::Duration;

use thiserror::Error;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

/// Upper bound for one QMP line.
const MAX_LINE: u64 = 64 * 1024;
/// Deadline for a whole QMP exchange.
const TIMEOUT: Duration = Duration::from_secs(5);

/// QMP failures.
#[derive(Debug, Error)]
pub enum QmpError {
    /// Socket IO failed.
    #[error("QMP {socket}")]
    Io {
        /// The QMP socket.
        socket: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// QEMU answered something unexpected (or an error).
    #[error("QMP {socket}: unexpected reply to {command}: {reply}")]
    Protocol {
        /// The QMP socket.
        socket: PathBuf,
        /// The command sent.
        command: String,
        /// The reply line.
        reply: String,
    },
    /// No answer in time.
    #[error("QMP {socket}: no answer within {TIMEOUT:?}")]
    Timeout {
        /// The QMP socket.
        socket: PathBuf,
    },
}

/// One QMP connection after the capabilities handshake.
pub(crate) struct Qmp {
    socket: PathBuf,
    reader: BufReader<tokio::io::ReadHalf<UnixStream>>,
    writer: tokio::io::WriteHalf<UnixStream>,
    /// Events read while waiting for a command's return, oldest first.
    events: Vec<serde_json::Value>,
}

impl Qmp {
    fn io(&self, source: std::io::Error) -> QmpError {
        QmpError::Io {
            socket: self.socket.clone(),
            source,
        }
    }

    async fn read_line(&mut self) -> Result<String, QmpError> {
        let mut line = String::new();
        let n = (&mut self.reader)
            .take(MAX_LINE)
            .read_line(&mut line)
            .await
            .map_err(|e| self.io(e))?;
        if n == 0 || !line.ends_with('\n') {
            return Err(self.io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed or line too long",
            )));
        }
        Ok(line)
    }

    /// Sends `command` and waits for its `return`, skipping events.
    async fn execute(&mut self, command: &str) -> Result<(), QmpError> {
        self.call(command, None).await.map(drop)
    }

    /// Sends `command` with `arguments` and returns its `return` value;
    /// events that arrive meanwhile are kept for [`Self::wait_event`].
    pub(crate) async fn call(
        &mut self,
        command: &str,
        arguments: Option<serde_json::Value>,
    ) -> Result<serde_json::Value, QmpError> {
        let mut request = serde_json::json!({ "execute": command });
        if let Some(arguments) = arguments {
            request["arguments"] = arguments;
        }
        let mut request = request.to_string();
        request.push('\n');
        self.writer
            .write_all(request.as_bytes())
            .await
            .map_err(|e| self.io(e))?;
        loop {
            let (line, mut value) = self.read_value(command).await?;
            if value.get("event").is_some() {
                self.events.push(value);
                continue;
            }
            if let Some(result) = value.get_mut("return") {
                return Ok(result.take());
            }
            return Err(QmpError::Protocol {
                socket: self.socket.clone(),
                command: command.into(),
                reply: line,
            });
        }
    }

    async fn read_value(&mut self, command: &str) -> Result<(String, serde_json::Value), QmpError> {
        let line = self.read_line().await?;
        let value = serde_json::from_str(&line).map_err(|_| QmpError::Protocol {
            socket: self.socket.clone(),
            command: command.into(),
            reply: line.clone(),
        })?;
        Ok((line, value))
    }

    /// Waits (without a deadline of its own: wrap it in one) for an event
    /// named `event` whose `data` satisfies `matches`, also among the events
    /// that arrived before.
    pub(crate) async fn wait_event(
        &mut self,
        event: &str,
        matches: impl Fn(&serde_json::Value) -> bool,
    ) -> Result<serde_json::Value, QmpError> {
        let is_it = |value: &serde_json::Value| {
            value.get("event").and_then(|name| name.as_str()) == Some(event)
                && matches(value.get("data").unwrap_or(&serde_json::Value::Null))
        };
        if let Some(index) = self.events.iter().position(is_it) {
            return Ok(self.events.remove(index));
        }
        loop {
            let (_, value) = self.read_value(event).await?;
            if is_it(&value) {
                return Ok(value);
            }
        }
    }

    /// The socket this connection talks to (for errors).
    pub(crate) fn socket(&self) -> &Path {
        &self.socket
    }
}

/// How long a refused QMP connection is tried again (see [`connect`]).
const LISTEN_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Connects to QMP at `socket` and completes the capabilities handshake.
pub(crate) async fn connect(socket: &Path) -> Result<Qmp, QmpError> {
    // QEMU binds the socket (the file appears) a moment before it listens:
    // a connection in between is refused, so that is tried again briefly.
    let deadline = tokio::time::Instant::now() + LISTEN_GRACE;
    let stream = loop {
        match UnixStream::connect(socket).await {
            Ok(stream) => break stream,
            Err(error)
                if error.kind() == std::io::ErrorKind::ConnectionRefused
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            Err(source) => {
                return Err(QmpError::Io {
                    socket: socket.to_path_buf(),
                    source,
                });
            }
        }
    };
    let (read, writer) = tokio::io::split(stream);
    let mut qmp = Qmp {
        socket: socket.to_path_buf(),
        reader: BufReader::new(read),
        writer,
        events: Vec::new(),
    };
    let greeting = qmp.read_line().await?;
    if !greeting.contains("\"QMP\"") {
        return Err(QmpError::Protocol {
            socket: socket.to_path_buf(),
            command: "greeting".into(),
            reply: greeting,
        });
    }
    qmp.execute("qmp_capabilities").await?;
    Ok(qmp)
}

async fn exchange(socket: &Path, command: &str) -> Result<(), QmpError> {
    connect(socket).await?.execute(command).await
}

/// Sends `system_powerdown` (an ACPI power button press) over QMP.
pub async fn system_powerdown(socket: &Path) -> Result<(), QmpError> {
    tokio::time::timeout(TIMEOUT, exchange(socket, "system_powerdown"))
        .await
        .unwrap_or_else(|_| {
            Err(QmpError::Timeout {
                socket: socket.to_path_buf(),
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::UnixListener;

    /// QEMU binds before it listens: a refused connection in between is
    /// tried again instead of failing the start or resume.
    /// A fake QMP server on `stream`: greets, then answers every command
    /// line with `reply`; returns the lines it was sent.
    async fn answer_qmp(stream: UnixStream, reply: &[u8]) -> Vec<String> {
        let (read, mut write) = tokio::io::split(stream);
        let mut lines = BufReader::new(read).lines();
        write
            .write_all(b"{\"QMP\": {\"version\": {}, \"capabilities\": []}}\n")
            .await
            .unwrap();
        let mut seen = Vec::new();
        while let Some(line) = lines.next_line().await.unwrap() {
            seen.push(line);
            write.write_all(reply).await.unwrap();
        }
        seen
    }

    #[tokio::test]
    async fn a_socket_bound_but_not_yet_listening_is_tried_again() {
        use rustix::net::{AddressFamily, SocketAddrUnix, SocketType};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qmp.sock");
        let fd = rustix::net::socket(AddressFamily::UNIX, SocketType::STREAM, None).unwrap();
        rustix::net::bind(&fd, &SocketAddrUnix::new(&path).unwrap()).unwrap();
        assert_eq!(
            std::os::unix::net::UnixStream::connect(&path)
                .unwrap_err()
                .kind(),
            std::io::ErrorKind::ConnectionRefused
        );
        let server = tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            rustix::net::listen(&fd, 1).unwrap();
            let listener = std::os::unix::net::UnixListener::from(fd);
            listener.set_nonblocking(true).unwrap();
            let listener = UnixListener::from_std(listener).unwrap();
            let (stream, _) = listener.accept().await.unwrap();
            answer_qmp(stream, b"{\"return\": {}}\n").await;
        });
        system_powerdown(&path).await.unwrap();
        server.await.unwrap();
    }

    #[tokio::test]
    async fn powerdown_handshake_skips_events() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qmp.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let server = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            answer_qmp(stream, b"{\"event\": \"POWERDOWN\"}\n{\"return\": {}}\n").await
        });
        system_powerdown(&path).await.unwrap();
        let seen = server.await.unwrap();
        assert_eq!(
            seen,
            [
                "{\"execute\":\"qmp_capabilities\"}",
                "{\"execute\":\"system_powerdown\"}"
            ]
        );
    }

    #[tokio::test]
    async fn error_reply_and_silence_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qmp.sock");
        let listener = UnixListener::bind(&path).unwrap();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            stream.write_all(b"{\"QMP\": {}}\n").await.unwrap();
            let mut buf = [0u8; 256];
            let _ = stream.read(&mut buf).await;
            stream
                .write_all(b"{\"error\": {\"class\": \"GenericError\"}}\n")
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_secs(10)).await;
        });
        let error = system_powerdown(&path).await.unwrap_err();
        assert!(matches!(error, QmpError::Protocol { .. }), "{error}");
    }
}
