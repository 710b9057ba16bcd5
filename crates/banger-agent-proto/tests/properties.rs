//! Property tests of the agent protocol's parsers: the JSON request and
//! response frames, the binary attach framing, and the session-name rule.
//!
//! The number of cases per property is proptest's default (256), or
//! `PROPTEST_CASES=N` for a longer run (see docs/reliability.md).

use banger_agent_proto::attach::{ATTACH_HEADER_BYTES, AttachFrame, MAX_ATTACH_PAYLOAD};
use banger_agent_proto::session::{
    LogStream, MAX_SESSION_NAME_BYTES, SessionSignal, SessionSpec, StdinMode, validate_session_name,
};
use banger_agent_proto::{
    Envelope, FrameError, MAX_FRAME_BYTES, PROTOCOL_VERSION, Request, Response, decode, encode,
};
use proptest::prelude::*;

/// Any attach frame whose data fits one frame.
fn attach_frame() -> impl Strategy<Value = AttachFrame> {
    let data = || proptest::collection::vec(any::<u8>(), 0..300);
    prop_oneof![
        data().prop_map(AttachFrame::Stdin),
        data().prop_map(AttachFrame::Stdout),
        data().prop_map(AttachFrame::Stderr),
        (any::<Option<i32>>(), any::<Option<i32>>())
            .prop_map(|(code, signal)| AttachFrame::Exit { code, signal }),
        Just(AttachFrame::Detach),
    ]
}

/// Any request, with arbitrary (also invalid) strings where the wire has
/// strings: the frame layer must carry them unchanged.
fn request() -> impl Strategy<Value = Request> {
    let text = || any::<String>();
    prop_oneof![
        Just(Request::Health),
        Just(Request::ListeningPorts),
        Just(Request::Stats),
        Just(Request::SessionList),
        text().prop_map(|name| Request::SessionShow { name }),
        text().prop_map(|name| Request::SessionRemove { name }),
        text().prop_map(|name| Request::SessionAttach { name }),
        (text(), any::<bool>()).prop_map(|(name, kill)| Request::SessionSignal {
            name,
            signal: if kill {
                SessionSignal::Kill
            } else {
                SessionSignal::Terminate
            },
        }),
        (text(), any::<bool>(), any::<u64>(), any::<bool>()).prop_map(
            |(name, stderr, offset, follow)| Request::SessionLogs {
                name,
                stream: if stderr {
                    LogStream::Stderr
                } else {
                    LogStream::Stdout
                },
                offset,
                follow,
            }
        ),
        (any::<u64>(), any::<u32>())
            .prop_map(|(unix_secs, nanos)| Request::SetClock { unix_secs, nanos }),
        (
            text(),
            proptest::collection::vec(text(), 0..8),
            text(),
            any::<bool>(),
            proptest::collection::vec(text(), 0..4)
        )
            .prop_map(|(name, argv, cwd, pipe, require_commands)| {
                Request::SessionStart(SessionSpec {
                    name,
                    argv,
                    cwd,
                    stdin_mode: if pipe {
                        StdinMode::Pipe
                    } else {
                        StdinMode::Detached
                    },
                    require_commands,
                })
            }),
    ]
}

proptest! {
    /// encode → decode is the identity for any sequence of frames, however
    /// the byte stream is cut into reads.
    #[test]
    fn attach_frames_round_trip_across_any_split(
        frames in proptest::collection::vec(attach_frame(), 0..12),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
    ) {
        let mut wire = Vec::new();
        for frame in &frames {
            frame.encode(&mut wire);
        }
        let mut cut_points: Vec<usize> = cuts.iter().map(|cut| cut.index(wire.len() + 1)).collect();
        cut_points.push(wire.len());
        cut_points.sort_unstable();
        let mut buf = Vec::new();
        let mut decoded = Vec::new();
        let mut start = 0;
        for end in cut_points {
            buf.extend_from_slice(&wire[start..end]);
            start = end;
            while let Some(frame) = AttachFrame::decode(&mut buf).map_err(|e| TestCaseError::fail(e.to_string()))? {
                decoded.push(frame);
            }
        }
        prop_assert!(buf.is_empty(), "{} bytes left over", buf.len());
        prop_assert_eq!(decoded, frames);
    }

    /// A data frame of any size (also above the per-frame limit) comes back
    /// as frames of the same kind whose payloads concatenate to the input,
    /// none larger than MAX_ATTACH_PAYLOAD.
    #[test]
    fn large_stdout_is_split_and_reassembled(len in 0usize..(3 * MAX_ATTACH_PAYLOAD), byte in any::<u8>()) {
        let data = vec![byte; len];
        let mut wire = Vec::new();
        AttachFrame::Stdout(data.clone()).encode(&mut wire);
        let mut joined = Vec::new();
        let mut count = 0;
        while let Some(frame) = AttachFrame::decode(&mut wire).map_err(|e| TestCaseError::fail(e.to_string()))? {
            let AttachFrame::Stdout(chunk) = frame else {
                return Err(TestCaseError::fail(format!("not stdout: {frame:?}")));
            };
            prop_assert!(chunk.len() <= MAX_ATTACH_PAYLOAD);
            joined.extend_from_slice(&chunk);
            count += 1;
        }
        prop_assert!(wire.is_empty());
        prop_assert!(count >= 1);
        prop_assert_eq!(joined, data);
    }

    /// Arbitrary bytes never panic the decoder; `Ok(None)` and errors leave
    /// the buffer untouched, a frame consumes exactly header plus payload.
    #[test]
    fn attach_decode_of_arbitrary_bytes_is_total(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let mut buf = bytes.clone();
        match AttachFrame::decode(&mut buf) {
            Ok(None) | Err(_) => prop_assert_eq!(&buf, &bytes),
            Ok(Some(frame)) => {
                let declared = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]) as usize;
                prop_assert!(declared <= MAX_ATTACH_PAYLOAD);
                prop_assert_eq!(buf.len(), bytes.len() - ATTACH_HEADER_BYTES - declared);
                // What was decoded encodes back to the bytes it came from.
                let mut again = Vec::new();
                frame.encode(&mut again);
                if !matches!(frame, AttachFrame::Exit { code: None, .. } | AttachFrame::Exit { signal: None, .. }) {
                    prop_assert_eq!(&again[..], &bytes[..ATTACH_HEADER_BYTES + declared]);
                }
            }
        }
    }

    /// A header declaring more than the limit is refused before any payload
    /// arrives, so a hostile peer cannot make the reader buffer it.
    #[test]
    fn oversized_attach_header_is_refused_early(kind in 1u8..=3, len in (MAX_ATTACH_PAYLOAD as u32 + 1)..=u32::MAX) {
        let mut buf = vec![kind];
        buf.extend_from_slice(&len.to_be_bytes());
        prop_assert!(AttachFrame::decode(&mut buf).is_err());
    }

    /// Any request survives encode → decode inside an envelope, or is
    /// refused as too large; never anything else.
    #[test]
    fn request_frames_round_trip(request in request()) {
        let envelope = Envelope { version: PROTOCOL_VERSION, request };
        match encode(&envelope) {
            Ok(frame) => {
                prop_assert!(frame.len() <= MAX_FRAME_BYTES);
                prop_assert_eq!(frame.last(), Some(&b'\n'));
                prop_assert_eq!(frame.iter().filter(|b| **b == b'\n').count(), 1, "one line per frame");
                let back: Envelope = decode(&frame).map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(back, envelope);
            }
            Err(FrameError::TooLarge { len }) => prop_assert!(len > MAX_FRAME_BYTES),
            Err(other) => return Err(TestCaseError::fail(other.to_string())),
        }
    }

    /// Arbitrary bytes (and arbitrary JSON-looking text) never panic the
    /// frame decoder of either direction.
    #[test]
    fn frame_decode_of_arbitrary_input_is_total(
        bytes in proptest::collection::vec(any::<u8>(), 0..256),
        text in r#"\{"(version|request|type|name)":[ -~]{0,40}\}?\n?"#,
    ) {
        let _ = decode::<Envelope>(&bytes);
        let _ = decode::<Response>(&bytes);
        let _ = decode::<Envelope>(text.as_bytes());
        let _ = decode::<Response>(text.as_bytes());
    }

    /// A session name is accepted exactly when it matches
    /// `[a-z0-9][a-z0-9-]{0,62}`.
    #[test]
    fn session_names_follow_the_documented_rule(name in "[a-z0-9-]{0,70}|\\PC{0,8}") {
        let rule = !name.is_empty()
            && name.len() <= MAX_SESSION_NAME_BYTES
            && !name.starts_with('-')
            && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        prop_assert_eq!(validate_session_name(&name).is_ok(), rule, "{:?}", name);
    }
}

/// A frame one byte over the limit is refused without parsing.
#[test]
fn frame_over_the_limit_is_refused() {
    let frame = vec![b' '; MAX_FRAME_BYTES + 1];
    assert!(matches!(
        decode::<Envelope>(&frame),
        Err(FrameError::TooLarge { .. })
    ));
}
