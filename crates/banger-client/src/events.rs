//! Following the daemon's event stream (`GET /v1/events`).

use banger_api::events::DaemonEvent;
use hyper::Method;

use crate::{ByteStream, ClientError, DaemonClient};

/// Longest event line read before the stream is given up as garbage.
const MAX_EVENT_LINE: usize = 1024 * 1024;

/// The daemon's events, one at a time.
#[derive(Debug)]
pub struct EventStream {
    bytes: ByteStream,
    pending: Vec<u8>,
}

impl DaemonClient {
    /// Subscribes to the event stream: every event from now on.
    pub async fn events(&self) -> Result<EventStream, ClientError> {
        let bytes = self
            .byte_stream(Method::GET, banger_api::paths::EVENTS)
            .await?;
        Ok(EventStream {
            bytes,
            pending: Vec::new(),
        })
    }
}

impl EventStream {
    /// The next event, or `None` when the daemon ended the stream (it is
    /// stopping, or this client fell behind: then the last event was
    /// `lagged`).
    pub async fn next_event(&mut self) -> Result<Option<DaemonEvent>, ClientError> {
        loop {
            if let Some(newline) = self.pending.iter().position(|byte| *byte == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=newline).collect();
                return serde_json::from_slice(&line).map(Some).map_err(|source| {
                    ClientError::Decode {
                        path: banger_api::paths::EVENTS.to_owned(),
                        status: hyper::StatusCode::OK,
                        source,
                    }
                });
            }
            if self.pending.len() > MAX_EVENT_LINE {
                return Err(ClientError::StreamEnded {
                    path: banger_api::paths::EVENTS.to_owned(),
                });
            }
            match self.bytes.next_chunk().await? {
                Some(chunk) => self.pending.extend_from_slice(&chunk),
                None => return Ok(None),
            }
        }
    }
}
