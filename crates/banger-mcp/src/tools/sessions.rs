//! Session tools over the daemon's sessions API: long-lived guest
//! processes kept by the guest agent (`docs/sessions.md`).
//! `session_write` attaches to a pipe-mode session, sends the bytes and
//! detaches; `session_read` reads a bounded window of a log.

use std::time::Duration;

use banger_agent_proto::{AttachFrame, MAX_ATTACH_PAYLOAD};
use banger_api::sessions::{LogStream, SessionCreateRequest, StdinMode};
use banger_api::{SessionName, VmName};
use banger_client::SessionAction;
use serde::Deserialize;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{ToolError, Tools, arguments, guest_path, to_result};
use crate::bound::{self, DEFAULT_LOG_BYTES, Head, MAX_WRITE_BYTES};

/// How long `session_write` waits for the agent to close after a detach.
const DETACH_WAIT: Duration = Duration::from_secs(5);

/// `stdin` of `session_start`.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
enum StdinArg {
    #[default]
    Detached,
    Pipe,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StartArgs {
    vm: VmName,
    name: SessionName,
    command: Vec<String>,
    cwd: Option<String>,
    #[serde(default)]
    stdin: StdinArg,
}

pub(super) async fn start(tools: &Tools, args: Value) -> Result<Value, ToolError> {
    let args: StartArgs = arguments("session_start", args)?;
    if let Some(cwd) = &args.cwd {
        guest_path("session_start", "cwd", cwd)?;
    }
    let request = SessionCreateRequest {
        name: args.name,
        command: args.command,
        cwd: args.cwd,
        stdin_mode: match args.stdin {
            StdinArg::Detached => StdinMode::Detached,
            StdinArg::Pipe => StdinMode::Pipe,
        },
        require_commands: Vec::new(),
    };
    to_result(
        tools
            .client()
            .await?
            .create_session(&args.vm, &request)
            .await?,
    )
}

/// `stream` of `session_read`.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
enum StreamArg {
    #[default]
    Stdout,
    Stderr,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadArgs {
    vm: VmName,
    name: SessionName,
    #[serde(default)]
    stream: StreamArg,
    #[serde(default)]
    offset: u64,
    max_bytes: Option<u64>,
}

pub(super) async fn read(tools: &Tools, args: Value) -> Result<Value, ToolError> {
    let args: ReadArgs = arguments("session_read", args)?;
    let client = tools.client().await?;
    let session = client.session(&args.vm, &args.name).await?;
    let stream = match args.stream {
        StreamArg::Stdout => LogStream::Stdout,
        StreamArg::Stderr => LogStream::Stderr,
    };
    let limit = bound::limit(args.max_bytes, DEFAULT_LOG_BYTES);
    let mut body = client
        .session_logs(&args.vm, &args.name, stream, false)
        .await?;
    // The API sends a log from its start: skip to the offset, keep one
    // window, and stop reading once it is full.
    let mut skipped = 0u64;
    let mut window = Head::new(limit);
    while let Some(chunk) = body.next_chunk().await? {
        let skip = usize::try_from(args.offset.saturating_sub(skipped))
            .unwrap_or(usize::MAX)
            .min(chunk.len());
        skipped += skip as u64;
        window.push(&chunk[skip..]);
        if window.overflowed() {
            break;
        }
    }
    let window = window.finish();
    to_result(serde_json::json!({
        "vm": args.vm,
        "name": args.name,
        "state": session.state,
        "exit_code": session.exit_code,
        "signal": session.signal,
        "offset": args.offset,
        "next_offset": args.offset + window.kept,
        "text": window.text,
        "more": window.truncated,
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WriteArgs {
    vm: VmName,
    name: SessionName,
    data: String,
}

pub(super) async fn write(tools: &Tools, args: Value) -> Result<Value, ToolError> {
    let args: WriteArgs = arguments("session_write", args)?;
    if args.data.len() > MAX_WRITE_BYTES {
        return Err(ToolError::BadArgument {
            tool: "session_write",
            argument: "data",
            why: format!("more than {MAX_WRITE_BYTES} bytes"),
        });
    }
    let connection = tools
        .client()
        .await?
        .attach_session(&args.vm, &args.name)
        .await?;
    let attach_error = |source| ToolError::Attach {
        vm: args.vm.clone(),
        session: args.name.clone(),
        source,
    };
    let (mut reader, mut writer) = tokio::io::split(connection);
    let mut frames = Vec::new();
    for piece in args.data.as_bytes().chunks(MAX_ATTACH_PAYLOAD) {
        AttachFrame::Stdin(piece.to_vec()).encode(&mut frames);
    }
    AttachFrame::Detach.encode(&mut frames);
    writer.write_all(&frames).await.map_err(attach_error)?;
    writer.flush().await.map_err(attach_error)?;
    // The agent answers a detach by closing; output frames meanwhile are
    // in the session's logs anyway.
    let drain = async {
        let mut sink = vec![0u8; 64 * 1024];
        while matches!(reader.read(&mut sink).await, Ok(read) if read > 0) {}
    };
    let _ = tokio::time::timeout(DETACH_WAIT, drain).await;
    to_result(serde_json::json!({
        "vm": args.vm,
        "name": args.name,
        "bytes_written": args.data.len(),
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StopArgs {
    vm: VmName,
    name: SessionName,
    #[serde(default)]
    kill: bool,
}

pub(super) async fn stop(tools: &Tools, args: Value) -> Result<Value, ToolError> {
    let args: StopArgs = arguments("session_stop", args)?;
    let action = if args.kill {
        SessionAction::Kill
    } else {
        SessionAction::Stop
    };
    to_result(
        tools
            .client()
            .await?
            .signal_session(&args.vm, &args.name, action)
            .await?,
    )
}
