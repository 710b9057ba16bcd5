//! The MCP server loop over a line-based stream (stdin/stdout).
//!
//! Lines are read with a size bound; each is classified by
//! [`crate::jsonrpc::parse`]. Requests other than `tools/call` are answered
//! at once; tool calls run concurrently (a VM create takes minutes, and a
//! `ping` must not wait for it), their responses written as they finish.
//! Only protocol messages go to the output; logs go to stderr.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use banger_config::Paths;
use serde_json::{Value, json};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::bound::MAX_MESSAGE_BYTES;
use crate::jsonrpc::{
    self, INVALID_PARAMS, INVALID_REQUEST, Incoming, METHOD_NOT_FOUND, error_response,
    result_response,
};
use crate::safety::AllowedRoots;
use crate::tools::{self, Tools};

/// MCP protocol revisions this server speaks, newest first.
pub const PROTOCOL_VERSIONS: &[&str] = &["2025-06-18", "2025-03-26", "2024-11-05"];

/// What the server is told to guide the model.
const INSTRUCTIONS: &str = "banger runs persistent Linux microVM sandboxes. Create one with vm_create (or vm_run to create, copy a host checkout and run a command at once), work in it with vm_exec, file_read/file_write/file_list and sessions, copy host checkouts in with workspace_prepare and bring the work back as a git branch with workspace_pull. vm_fork copies a running VM (memory and disks) into new ones, e.g. to try several approaches from one prepared state. VMs last until vm_delete; delete the ones you made when done.";

/// How the server is configured.
#[derive(Debug)]
pub struct ServerOptions {
    /// Where host paths may point.
    pub roots: AllowedRoots,
    /// Whether `vm_delete` may delete VMs this server did not create.
    pub allow_delete_any: bool,
    /// banger's directories (the daemon's socket among them).
    pub paths: Paths,
    /// The daemon binary to start when none runs.
    pub daemon_binary: PathBuf,
}

/// Why serving stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Reading the input failed.
    #[error("reading MCP messages from stdin failed")]
    Read(#[source] std::io::Error),
    /// Writing the output failed.
    #[error("writing MCP messages to stdout failed")]
    Write(#[source] std::io::Error),
}

/// An MCP server: the protocol state and the tools.
#[derive(Debug)]
pub struct Server {
    tools: Tools,
}

impl Server {
    /// A server with `options`.
    pub fn new(options: ServerOptions) -> Self {
        Self {
            tools: Tools::new(
                options.roots,
                options.allow_delete_any,
                options.paths,
                options.daemon_binary,
            ),
        }
    }

    /// The answer to one request.
    pub async fn handle_request(&self, id: Value, method: &str, params: Option<Value>) -> Value {
        match method {
            "initialize" => result_response(id, initialize(params.as_ref())),
            "ping" => result_response(id, json!({})),
            "tools/list" => result_response(id, json!({ "tools": tools::definitions() })),
            "tools/call" => self.call_tool(id, params).await,
            _ => error_response(id, METHOD_NOT_FOUND, &format!("Method not found: {method}")),
        }
    }

    async fn call_tool(&self, id: Value, params: Option<Value>) -> Value {
        let params = params.unwrap_or(Value::Null);
        let Some(name) = params.get("name").and_then(Value::as_str) else {
            return error_response(id, INVALID_PARAMS, "tools/call needs params.name");
        };
        if !Tools::exists(name) {
            return error_response(id, INVALID_PARAMS, &format!("Unknown tool: {name}"));
        }
        let arguments = params.get("arguments").cloned().unwrap_or(Value::Null);
        let started = Instant::now();
        let Some(outcome) = self.tools.call(name, arguments).await else {
            return error_response(id, INVALID_PARAMS, &format!("Unknown tool: {name}"));
        };
        let elapsed = started.elapsed().as_secs_f64();
        let result = match outcome {
            Ok(value) => {
                eprintln!("banger mcp: {name}: ok in {elapsed:.1} s");
                json!({
                    "content": [{"type": "text", "text": value.to_string()}],
                    "structuredContent": value,
                    "isError": false,
                })
            }
            Err(error) => {
                let code = error.code();
                let message = error.message();
                eprintln!("banger mcp: {name}: error ({code}) in {elapsed:.1} s: {message}");
                json!({
                    "content": [{"type": "text", "text": format!("error ({code}): {message}")}],
                    "structuredContent": {"error": {"code": code, "message": message}},
                    "isError": true,
                })
            }
        };
        result_response(id, result)
    }
}

/// The `initialize` result: the client's protocol revision when this
/// server speaks it, else the newest.
fn initialize(params: Option<&Value>) -> Value {
    let asked = params
        .and_then(|params| params.get("protocolVersion"))
        .and_then(Value::as_str);
    let version = asked
        .and_then(|asked| PROTOCOL_VERSIONS.iter().find(|known| **known == asked))
        .unwrap_or(&PROTOCOL_VERSIONS[0]);
    json!({
        "protocolVersion": version,
        "capabilities": {"tools": {"listChanged": false}},
        "serverInfo": {"name": "banger", "title": "banger sandboxes", "version": env!("CARGO_PKG_VERSION")},
        "instructions": INSTRUCTIONS,
    })
}

/// What one bounded line read found.
enum LineRead {
    /// A whole line (newline removed).
    Line,
    /// A line longer than the bound; its bytes were discarded.
    TooLong,
    /// End of input.
    Eof,
}

/// Reads one line into `line` (cleared first), keeping at most `max` bytes.
async fn read_line(
    input: &mut (impl AsyncBufRead + Unpin),
    line: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<LineRead> {
    line.clear();
    let mut too_long = false;
    let mut any = false;
    loop {
        let buffer = input.fill_buf().await?;
        if buffer.is_empty() {
            return Ok(match (any, too_long) {
                (false, _) => LineRead::Eof,
                (true, true) => LineRead::TooLong,
                (true, false) => LineRead::Line,
            });
        }
        any = true;
        let (take, newline) = match buffer.iter().position(|byte| *byte == b'\n') {
            Some(end) => (end, true),
            None => (buffer.len(), false),
        };
        if !too_long && line.len() + take <= max {
            line.extend_from_slice(&buffer[..take]);
        } else {
            too_long = true;
            line.clear();
        }
        input.consume(take + usize::from(newline));
        if newline {
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            return Ok(if too_long {
                LineRead::TooLong
            } else {
                LineRead::Line
            });
        }
    }
}

/// Serves MCP on this process's stdin and stdout until stdin ends.
pub async fn serve_stdio(server: Arc<Server>) -> Result<(), ServeError> {
    serve(
        server,
        tokio::io::BufReader::new(tokio::io::stdin()),
        tokio::io::stdout(),
    )
    .await
}

/// Serves MCP on `input`/`output` until the input ends, then waits for
/// running tool calls and returns.
pub async fn serve(
    server: Arc<Server>,
    mut input: impl AsyncBufRead + Unpin,
    mut output: impl AsyncWrite + Unpin,
) -> Result<(), ServeError> {
    let (sender, mut receiver) = mpsc::unbounded_channel::<Value>();
    let writer = async move {
        while let Some(message) = receiver.recv().await {
            let mut line = message.to_string().into_bytes();
            line.push(b'\n');
            output.write_all(&line).await.map_err(ServeError::Write)?;
            output.flush().await.map_err(ServeError::Write)?;
        }
        Ok::<_, ServeError>(())
    };
    let reader = async move {
        let mut calls = JoinSet::new();
        let mut line = Vec::new();
        loop {
            match read_line(&mut input, &mut line, MAX_MESSAGE_BYTES)
                .await
                .map_err(ServeError::Read)?
            {
                LineRead::Eof => break,
                LineRead::TooLong => {
                    let _ = sender.send(error_response(
                        Value::Null,
                        INVALID_REQUEST,
                        &format!("Invalid Request: message longer than {MAX_MESSAGE_BYTES} bytes"),
                    ));
                    continue;
                }
                LineRead::Line => {}
            }
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match jsonrpc::parse(&line) {
                Incoming::Invalid(response) => {
                    eprintln!("banger mcp: malformed message answered with an error");
                    let _ = sender.send(response);
                }
                Incoming::Notification { .. } | Incoming::Response => {}
                Incoming::Request { id, method, params } => {
                    let is_call = method == "tools/call";
                    let server = Arc::clone(&server);
                    let sender = sender.clone();
                    let answer = async move {
                        let response = server.handle_request(id, &method, params).await;
                        let _ = sender.send(response);
                    };
                    if is_call {
                        calls.spawn(answer);
                    } else {
                        answer.await;
                    }
                }
            }
        }
        while calls.join_next().await.is_some() {}
        drop(sender);
        Ok::<_, ServeError>(())
    };
    tokio::try_join!(reader, writer)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines(input: &[u8], max: usize) -> Vec<Option<String>> {
        let mut input = tokio::io::BufReader::with_capacity(4, input);
        let mut out = Vec::new();
        let mut line = Vec::new();
        loop {
            match read_line(&mut input, &mut line, max).await.unwrap() {
                LineRead::Eof => return out,
                LineRead::TooLong => out.push(None),
                LineRead::Line => out.push(Some(String::from_utf8(line.clone()).unwrap())),
            }
        }
    }

    #[tokio::test]
    async fn lines_are_bounded_and_reading_goes_on() {
        assert_eq!(
            lines(b"ab\r\nthis is too long\ncd\nlast", 8).await,
            [
                Some("ab".to_owned()),
                None,
                Some("cd".to_owned()),
                Some("last".to_owned())
            ]
        );
    }

    #[test]
    fn initialize_negotiates_the_revision() {
        let known = initialize(Some(&json!({"protocolVersion": "2025-03-26"})));
        assert_eq!(known["protocolVersion"], "2025-03-26");
        let unknown = initialize(Some(&json!({"protocolVersion": "1999-01-01"})));
        assert_eq!(unknown["protocolVersion"], PROTOCOL_VERSIONS[0]);
    }
}
