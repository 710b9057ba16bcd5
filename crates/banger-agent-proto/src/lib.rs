//! The protocol between the host (bangerd) and the guest agent
//! (`banger-vsock-agent`), carried over vsock.
//!
//! Framing: one JSON object per line, at most [`MAX_FRAME_BYTES`] bytes,
//! one request then one response per connection. Every request carries
//! the sender's [`PROTOCOL_VERSION`]; the agent answers a newer major
//! version with [`Response::Error`] rather than guessing. The host treats
//! everything the guest sends as untrusted input.

use serde::{Deserialize, Serialize};

/// Version of this protocol. Bump it whenever a type here changes shape.
pub const PROTOCOL_VERSION: u32 = 1;

/// The vsock port the agent listens on.
pub const AGENT_PORT: u32 = 1024;

/// Longest accepted frame (one JSON line, newline included).
pub const MAX_FRAME_BYTES: usize = 256 * 1024;

/// A request from the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    /// The sender's protocol version.
    pub version: u32,
    /// What is asked.
    pub request: Request,
}

/// What the host can ask.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Is the agent alive, and which version is it?
    Health,
}

/// What the agent answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Response {
    /// Answer to [`Request::Health`].
    Health {
        /// The agent's protocol version.
        protocol_version: u32,
        /// The agent's build version.
        agent_version: String,
        /// Seconds since the guest booted.
        uptime_secs: u64,
    },
    /// The request could not be served.
    Error {
        /// Why.
        message: String,
    },
}

/// Failures encoding or decoding a frame.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The frame is larger than [`MAX_FRAME_BYTES`].
    #[error("frame of {len} bytes exceeds the {MAX_FRAME_BYTES}-byte limit")]
    TooLarge {
        /// Its length.
        len: usize,
    },
    /// The frame is not valid JSON of the expected shape.
    #[error("malformed frame")]
    Malformed(#[source] serde_json::Error),
}

/// Encodes `value` as one newline-terminated JSON frame.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, FrameError> {
    let mut bytes = serde_json::to_vec(value).map_err(FrameError::Malformed)?;
    bytes.push(b'\n');
    if bytes.len() > MAX_FRAME_BYTES {
        return Err(FrameError::TooLarge { len: bytes.len() });
    }
    Ok(bytes)
}

/// Decodes one frame (with or without its trailing newline).
pub fn decode<'a, T: Deserialize<'a>>(frame: &'a [u8]) -> Result<T, FrameError> {
    if frame.len() > MAX_FRAME_BYTES {
        return Err(FrameError::TooLarge { len: frame.len() });
    }
    serde_json::from_slice(frame.strip_suffix(b"\n").unwrap_or(frame))
        .map_err(FrameError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let envelope = Envelope {
            version: PROTOCOL_VERSION,
            request: Request::Health,
        };
        let bytes = encode(&envelope).expect("encode");
        assert_eq!(
            bytes,
            b"{\"version\":1,\"request\":{\"type\":\"health\"}}\n"
        );
        assert_eq!(decode::<Envelope>(&bytes).expect("decode"), envelope);
    }

    #[test]
    fn oversized_and_malformed_frames_are_refused() {
        let big = vec![b' '; MAX_FRAME_BYTES + 1];
        assert!(matches!(
            decode::<Response>(&big),
            Err(FrameError::TooLarge { .. })
        ));
        assert!(matches!(
            decode::<Response>(b"{\"type\":\"health\"}"),
            Err(FrameError::Malformed(_))
        ));
        assert!(matches!(
            decode::<Response>(b"not json"),
            Err(FrameError::Malformed(_))
        ));
    }
}
