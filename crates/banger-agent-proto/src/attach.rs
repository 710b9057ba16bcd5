//! The framed stream that follows an [`crate::Response::Attached`] reply.
//!
//! Every frame is a 5-byte header — one kind byte, then the payload length
//! as a big-endian `u32` — followed by the payload, at most
//! [`MAX_ATTACH_PAYLOAD`] bytes. Kinds:
//!
//! | byte | frame | direction | payload |
//! |---|---|---|---|
//! | 1 | [`AttachFrame::Stdin`] | host → guest | raw bytes for the session's stdin |
//! | 2 | [`AttachFrame::Stdout`] | guest → host | raw stdout bytes |
//! | 3 | [`AttachFrame::Stderr`] | guest → host | raw stderr bytes |
//! | 4 | [`AttachFrame::Exit`] | guest → host | 10 bytes: `code` then `signal`, each a presence byte (0/1) and a big-endian `i32` (0 when absent) |
//! | 5 | [`AttachFrame::Detach`] | host → guest | empty |
//!
//! A fixed binary header rather than JSON lines: output is arbitrary bytes,
//! and a length prefix lets either side skip nothing and buffer at most one
//! bounded frame.

/// Largest payload of one frame.
pub const MAX_ATTACH_PAYLOAD: usize = 64 * 1024;

/// Header size: kind byte + big-endian `u32` length.
pub const ATTACH_HEADER_BYTES: usize = 5;

const STDIN: u8 = 1;
const STDOUT: u8 = 2;
const STDERR: u8 = 3;
const EXIT: u8 = 4;
const DETACH: u8 = 5;
const EXIT_PAYLOAD_BYTES: usize = 10;

/// One frame of an attach stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttachFrame {
    /// Bytes for the session's stdin (host → guest).
    Stdin(Vec<u8>),
    /// Bytes the session wrote to stdout (guest → host).
    Stdout(Vec<u8>),
    /// Bytes the session wrote to stderr (guest → host).
    Stderr(Vec<u8>),
    /// The session exited; the agent closes the stream after this frame.
    Exit {
        /// Exit code, when it exited normally.
        code: Option<i32>,
        /// Terminating signal, when it was killed.
        signal: Option<i32>,
    },
    /// The host leaves; the session keeps running, its stdin stays open.
    Detach,
}

/// Why bytes are not a valid attach frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttachFrameError {
    /// The kind byte is not one of the known kinds.
    #[error("unknown attach frame kind {kind}")]
    UnknownKind {
        /// The kind byte.
        kind: u8,
    },
    /// The declared payload exceeds [`MAX_ATTACH_PAYLOAD`].
    #[error("attach frame of kind {kind} declares {len} bytes, more than {MAX_ATTACH_PAYLOAD}")]
    TooLarge {
        /// The kind byte.
        kind: u8,
        /// The declared length.
        len: u64,
    },
    /// An exit or detach frame with a payload of the wrong size or content.
    #[error("attach frame of kind {kind} has an invalid {len}-byte payload")]
    BadPayload {
        /// The kind byte.
        kind: u8,
        /// The payload length.
        len: usize,
    },
}

impl AttachFrame {
    /// Appends the encoded frame to `out`. A data frame longer than
    /// [`MAX_ATTACH_PAYLOAD`] is split into several frames of the same kind,
    /// so encoding never produces something [`AttachFrame::decode`] refuses.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Self::Stdin(data) => encode_data(STDIN, data, out),
            Self::Stdout(data) => encode_data(STDOUT, data, out),
            Self::Stderr(data) => encode_data(STDERR, data, out),
            Self::Exit { code, signal } => {
                let mut payload = Vec::with_capacity(EXIT_PAYLOAD_BYTES);
                for value in [code, signal] {
                    payload.push(u8::from(value.is_some()));
                    payload.extend_from_slice(&value.unwrap_or(0).to_be_bytes());
                }
                encode_one(EXIT, &payload, out);
            }
            Self::Detach => encode_one(DETACH, &[], out),
        }
    }

    /// Takes one complete frame off the front of `buf`. `Ok(None)` means more
    /// bytes are needed (nothing is consumed). An error leaves `buf` as is:
    /// the stream is unusable and should be closed.
    pub fn decode(buf: &mut Vec<u8>) -> Result<Option<AttachFrame>, AttachFrameError> {
        let Some(header) = buf.get(..ATTACH_HEADER_BYTES) else {
            return Ok(None);
        };
        let kind = header[0];
        let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
        if !(STDIN..=DETACH).contains(&kind) {
            return Err(AttachFrameError::UnknownKind { kind });
        }
        let len = match usize::try_from(len) {
            Ok(len) if len <= MAX_ATTACH_PAYLOAD => len,
            _ => {
                return Err(AttachFrameError::TooLarge {
                    kind,
                    len: u64::from(len),
                });
            }
        };
        let bad = AttachFrameError::BadPayload { kind, len };
        if (kind == EXIT && len != EXIT_PAYLOAD_BYTES) || (kind == DETACH && len != 0) {
            return Err(bad);
        }
        let Some(payload) = buf.get(ATTACH_HEADER_BYTES..ATTACH_HEADER_BYTES + len) else {
            return Ok(None);
        };
        let frame = match kind {
            STDIN => Self::Stdin(payload.to_vec()),
            STDOUT => Self::Stdout(payload.to_vec()),
            STDERR => Self::Stderr(payload.to_vec()),
            EXIT => {
                let code = exit_field(&payload[..5]).ok_or(bad.clone())?;
                let signal = exit_field(&payload[5..]).ok_or(bad)?;
                Self::Exit { code, signal }
            }
            _ => Self::Detach,
        };
        buf.drain(..ATTACH_HEADER_BYTES + len);
        Ok(Some(frame))
    }
}

/// One `(presence, i32)` field of an exit payload; `None` when the presence
/// byte is neither 0 nor 1.
fn exit_field(bytes: &[u8]) -> Option<Option<i32>> {
    let value = i32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
    match bytes[0] {
        0 => Some(None),
        1 => Some(Some(value)),
        _ => None,
    }
}

fn encode_data(kind: u8, data: &[u8], out: &mut Vec<u8>) {
    if data.is_empty() {
        encode_one(kind, data, out);
    }
    for chunk in data.chunks(MAX_ATTACH_PAYLOAD) {
        encode_one(kind, chunk, out);
    }
}

fn encode_one(kind: u8, payload: &[u8], out: &mut Vec<u8>) {
    // Callers keep payloads within MAX_ATTACH_PAYLOAD, far below u32::MAX.
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    out.push(kind);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(payload);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_frames() -> Vec<AttachFrame> {
        vec![
            AttachFrame::Stdin(b"hello\n".to_vec()),
            AttachFrame::Stdout(vec![0, 255, 27]),
            AttachFrame::Stderr(Vec::new()),
            AttachFrame::Exit {
                code: Some(-3),
                signal: None,
            },
            AttachFrame::Exit {
                code: None,
                signal: Some(9),
            },
            AttachFrame::Detach,
        ]
    }

    #[test]
    fn frames_round_trip() {
        let mut buf = Vec::new();
        for frame in all_frames() {
            frame.encode(&mut buf);
        }
        let mut decoded = Vec::new();
        while let Some(frame) = AttachFrame::decode(&mut buf).expect("valid") {
            decoded.push(frame);
        }
        assert_eq!(decoded, all_frames());
        assert!(buf.is_empty());
    }

    #[test]
    fn partial_input_waits_for_more_bytes() {
        let mut whole = Vec::new();
        AttachFrame::Stdout(b"abcdef".to_vec()).encode(&mut whole);
        let mut buf = Vec::new();
        for (index, byte) in whole.iter().enumerate() {
            assert_eq!(
                AttachFrame::decode(&mut buf),
                Ok(None),
                "after {index} bytes"
            );
            assert_eq!(buf.len(), index, "nothing consumed early");
            buf.push(*byte);
        }
        assert_eq!(
            AttachFrame::decode(&mut buf),
            Ok(Some(AttachFrame::Stdout(b"abcdef".to_vec())))
        );
    }

    #[test]
    fn large_data_is_split_into_valid_frames() {
        let data = vec![7u8; MAX_ATTACH_PAYLOAD * 2 + 1];
        let mut buf = Vec::new();
        AttachFrame::Stdin(data.clone()).encode(&mut buf);
        let mut joined = Vec::new();
        while let Some(AttachFrame::Stdin(chunk)) = AttachFrame::decode(&mut buf).expect("valid") {
            joined.extend(chunk);
        }
        assert_eq!(joined, data);
    }

    #[test]
    fn oversized_unknown_and_malformed_frames_are_refused() {
        let mut oversized = vec![STDOUT];
        oversized.extend_from_slice(&(MAX_ATTACH_PAYLOAD as u32 + 1).to_be_bytes());
        assert!(matches!(
            AttachFrame::decode(&mut oversized),
            Err(AttachFrameError::TooLarge { .. })
        ));
        let mut huge = vec![STDIN, 0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            AttachFrame::decode(&mut huge),
            Err(AttachFrameError::TooLarge { .. })
        ));
        let mut unknown = vec![9, 0, 0, 0, 0];
        assert_eq!(
            AttachFrame::decode(&mut unknown),
            Err(AttachFrameError::UnknownKind { kind: 9 })
        );
        let mut detach_with_payload = vec![DETACH, 0, 0, 0, 1, 0];
        assert!(matches!(
            AttachFrame::decode(&mut detach_with_payload),
            Err(AttachFrameError::BadPayload { .. })
        ));
        let mut bad_presence = vec![EXIT, 0, 0, 0, 10, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert!(matches!(
            AttachFrame::decode(&mut bad_presence),
            Err(AttachFrameError::BadPayload { .. })
        ));
    }
}
